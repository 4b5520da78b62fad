"""Sample data: the bundled source and reference photos."""

from histocolor.imageio import read_image
from histocolor.model.io import DEFAULT_WEIGHTS

SAMPLES = DEFAULT_WEIGHTS.parents[1] / "samples"


# Between the source and the reference laid out to its right, as a share of the source's width.
GAP = 0.05


def source_and_reference_pair():
    """Two Image layers, ``source`` and ``reference`` (see resources/samples/SOURCES.md), side by
    side: the results go over the source, so the (larger) reference never peeks out under them."""
    source, reference = (read_image(SAMPLES / f"{name}.jpg").rgb for name in ("source", "reference"))
    right = source.shape[1] * (1 + GAP)
    return [(source, {"name": "source"}, "image"), (reference, {"name": "reference", "translate": (0, right)}, "image")]
