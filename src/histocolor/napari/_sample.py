"""Sample data: the bundled source and reference photos."""

from histocolor.imageio import read_image
from histocolor.model.io import DEFAULT_WEIGHTS

SAMPLES = DEFAULT_WEIGHTS.parents[1] / "samples"


def source_and_reference_pair():
    """Two Image layers, ``source`` and ``reference`` (see resources/samples/SOURCES.md)."""
    return [
        (read_image(SAMPLES / f"{name}.jpg").rgb, {"name": name}, "image") for name in ("source", "reference")
    ]
