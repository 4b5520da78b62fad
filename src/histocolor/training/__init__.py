"""Training the network (torch): the loop (:mod:`~histocolor.training.train`, ``histocolor train``
and the napari fine-tune widget), its losses (:mod:`~histocolor.training.losses`) and its data
(:mod:`~histocolor.training.data`: photo folders graded with random retouch styles, MIT-Adobe
FiveK, and the graded evaluation sets the benchmarks and tests build)."""
