"""Image dtypes: the value that stands for 1.0 in each, and the one rounding from floats in [0, 1]
back to integers. numpy alone; every module that scales pixels imports these two."""

import numpy as np


def full_scale(dtype) -> float:
    """The value that stands for 1.0 in an image of ``dtype``: 255 for uint8, 65535 for uint16
    (an integer type's maximum), 1.0 for floats.

    Example:
        >>> full_scale(np.uint8), full_scale(np.uint16), full_scale(np.float32)
        (255.0, 65535.0, 1.0)
    """
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def to_uint(values, dtype) -> np.ndarray:
    """Float values in [0, 1] as the integer ``dtype`` (uint8, uint16): times :func:`full_scale`,
    rounded to the nearest integer, clipped to [0, full scale]; NaN becomes 0.

    Ties round to even (``np.rint``), and the product is taken in ``values``' own precision
    (float32 stays float32): the rounding every transfer result has always had.

    Example:
        >>> to_uint(np.array([-0.1, 0.2, 0.5, 1.0, 1.7, np.nan]), np.uint8)
        array([  0,  51, 128, 255, 255,   0], dtype=uint8)
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"dtype must be an integer type such as uint8 or uint16, got {dtype}")
    scale = full_scale(dtype)
    rounded = np.nan_to_num(np.rint(np.asarray(values) * scale), copy=False, nan=0.0)
    return np.clip(rounded, 0, scale).astype(dtype)
