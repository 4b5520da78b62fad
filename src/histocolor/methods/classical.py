"""The classical methods as transfer methods: one fit of :mod:`histocolor.classical` per region. numpy alone."""

import numpy as np

from histocolor.methods.base import TransferMethod, _pixels_of


class ClassicalMethod(TransferMethod):
    """A classical fit (``fit(source_pixels, reference_pixels) -> ColorMap``) per region."""

    def __init__(self, fit):
        self.fit = fit

    def fit_maps(self, source, reference, regions, weights, clock):
        with clock.stage("fit"):
            return [
                self.fit(_pixels_of(source, np.isin(regions.source_labels, mine)),
                         _pixels_of(reference, np.isin(regions.reference_labels, theirs)))
                for mine, theirs in regions.pairs
            ] + [self.fit(_pixels_of(source), _pixels_of(reference))]
