"""Reading and writing image files for color transfer.

Color transfer works on sRGB pixel values, so everything read here comes out as
upright sRGB with an optional separate alpha channel, whatever the file held:
gray, palette, CMYK, an embedded ICC profile or an EXIF orientation. Pillow alone
silently drops the low byte of 16-bit RGB PNGs and cannot read most 16-bit TIFFs,
so those go through pypng and tifffile to keep their full precision.

The source's EXIF is kept (as bytes, Orientation removed since the pixels are
upright) so that :func:`write_image` can carry it over to a result.

Files are untrusted input: every problem a user can fix (missing, empty, truncated,
huge or unsupported files, unwritable destinations) becomes a one-line
:class:`~histocolor.errors.HistocolorError` naming the file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import pathlib
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import png
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from histocolor.atomic import atomic_write
from histocolor.errors import HistocolorError, first_line

__all__ = [
    "MAX_PIXELS",
    "WRITE_EXTENSIONS",
    "LoadedImage",
    "check_output_path",
    "probe_image",
    "read_image",
    "write_image",
]

#: Largest image (width * height) that will be decoded; a guard against
#: decompression bombs. Read at call time, so it can be changed at run time.
MAX_PIXELS: int = 250_000_000

#: Output extensions :func:`write_image` understands (compared case-insensitively).
WRITE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")

_EIGHT_BIT_ONLY = (".jpg", ".jpeg", ".webp", ".bmp")
_NO_ALPHA = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}  # formats whose readers ignore alpha
_PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF",
                   ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP"}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ORIENTATION_TAG = 274
_ICC_TAG = 34675
# Descriptive text tags of a first IFD: DocumentName, ImageDescription, Make, Model,
# Software, DateTime, Artist, HostComputer, Copyright. A TIFF's first IFD also lays
# out its own pixels, so only these and the Exif and GPS sub-IFDs are taken from a
# TIFF source, and only these text tags are written to a TIFF (Pillow's libtiff
# writer and tifffile cannot write EXIF sub-IFDs).
_TEXT_TAGS = (269, 270, 271, 272, 305, 306, 315, 316, 33432)
_SUB_IFDS = (0x8769, 0x8825)  # Exif, GPS
_JPEG_MAX_EXIF = 65533  # one APP1 segment, "Exif\0\0" header included
# What decoders raise on corrupt or truncated data (Pillow uses SyntaxError for
# some broken PNG chunks; pypng has its own error type, tifffile's TiffFileError is a
# ValueError). tifffile itself is imported by the TIFF paths only.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error,
                  zlib.error, MemoryError, png.Error)
# EXIF is metadata: damaged values that Pillow trips over are dropped, never fatal.
_EXIF_ERRORS = (*_DECODE_ERRORS, TypeError, AttributeError, KeyError)


@dataclass
class LoadedImage:
    """An image as color transfer wants it: upright sRGB plus optional alpha.

    ``rgb`` is (H, W, 3) and C-contiguous, uint8 or uint16; ``alpha`` is (H, W) of
    the same dtype or None. ``was_grayscale`` records that the file was gray (then
    the three channels are equal), so a front end can offer to save gray again.
    ``exif`` is the file's EXIF block ("Exif\\0\\0" + TIFF structure, as Pillow's
    ``Image.Exif.tobytes`` gives it) without the Orientation tag, or None; pass it
    to :func:`write_image` to keep the metadata.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    was_grayscale: bool
    exif: bytes | None = field(default=None, repr=False)

    @property
    def bit_depth(self) -> int:
        """Bits per channel: 8 or 16."""
        return 16 if self.rgb.dtype == np.uint16 else 8


# ---------------------------------------------------------------------- reading


def read_image(path) -> LoadedImage:
    """Decode an image file fully into an upright sRGB :class:`LoadedImage`.

    Raises HistocolorError (one line, naming the file) for anything wrong with the
    file itself.
    """
    path = pathlib.Path(path)
    head = _read_head(path)
    if head.startswith(_PNG_MAGIC) and _png_bit_depth(path, head) == 16:
        return _read_png16(path)
    if head[:4] in _TIFF_MAGIC:
        loaded = _read_tiff_wide(path)
        if loaded is not None:
            return loaded
    return _read_with_pillow(path)


def probe_image(path) -> None:
    """Fail as :func:`read_image` would on a missing, empty or unidentifiable file, or one over
    MAX_PIXELS, reading the header alone (a millisecond, where decoding takes a while)."""
    path = pathlib.Path(path)
    if _read_head(path)[:4] not in _TIFF_MAGIC:  # tifffile reads TIFFs that Pillow cannot open
        open_image(path).close()


def as_image(image) -> LoadedImage:
    """Accept a path or an array ``(H, W)``, ``(H, W, 1|3|4)`` of uint8, uint16 or float in [0, 1].

    Example:
        >>> as_image(np.zeros((2, 3), np.uint8)).rgb.shape
        (2, 3, 3)
    """
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, (str, pathlib.Path)):
        return read_image(image)
    array = np.asarray(image)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise HistocolorError("the image holds NaN or infinite values")
        array = np.clip(array, 0.0, 1.0).astype(np.float32)
    elif array.dtype not in (np.uint8, np.uint16):
        raise HistocolorError(f"unsupported image dtype {array.dtype}: use uint8, uint16 or float in [0, 1]")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim in (2, 3) and min(array.shape[:2]) < 1:
        raise HistocolorError("the image has no pixels")
    if array.ndim == 2:
        return LoadedImage(np.ascontiguousarray(np.repeat(array[..., None], 3, axis=-1)), None, True)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise HistocolorError(f"expected a 2-D grayscale, RGB or RGBA image, got an array of shape {array.shape}")
    alpha = array[..., 3].copy() if array.shape[-1] == 4 else None
    return LoadedImage(np.ascontiguousarray(array[..., :3]), alpha, False)


def _fail(path, reason: str) -> HistocolorError:
    """Build the one-line user error for an unreadable file."""
    return HistocolorError(f"cannot read '{path}': {reason}")


def _one_line(exc: BaseException) -> str:
    """Squash an exception's message to one line (decoders sometimes use several)."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _read_head(path: pathlib.Path) -> bytes:
    """Check the path is a non-empty readable file and return its first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "it is a directory") from None
    except OSError as exc:
        raise _fail(path, _one_line(exc)) from None
    if not head:
        raise _fail(path, "file is empty")
    return head


def _check_size(path, width: int, height: int) -> None:
    """Refuse images over MAX_PIXELS before any pixel data is decoded."""
    if width * height > MAX_PIXELS:
        raise _fail(path, f"image is {width}x{height} = {width * height} pixels, more than "
                          f"the limit of {MAX_PIXELS} (histocolor.imageio.MAX_PIXELS)")


def _png_bit_depth(path, head: bytes) -> int:
    """Bit depth from the PNG IHDR chunk (Pillow hides it for 16-bit RGB)."""
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise _fail(path, "not a valid PNG file (no IHDR header)")
    width, height, depth = struct.unpack(">IIB", head[16:25])
    _check_size(path, width, height)
    return depth


def _warn_icc_ignored(path) -> None:
    warnings.warn(f"'{path}': embedded ICC profile ignored for a 16-bit image; "
                  "values are used as if they were sRGB", stacklevel=4)


def _read_png16(path: pathlib.Path) -> LoadedImage:
    """Read a 16-bit PNG with pypng, which keeps all 16 bits (Pillow does not)."""
    # Pillow still parses the chunks before IDAT well: orientation and profile.
    # (im.getexif() would decode the whole image looking for a late eXIf chunk.)
    with open_image(path) as im:
        exif = Image.Exif()
        if im.info.get("exif"):
            try:
                exif.load(im.info["exif"])
            except _EXIF_ERRORS:  # damaged metadata: the pixels are still read, unrotated
                exif = Image.Exif()
        orientation = exif.get(_ORIENTATION_TAG, 1)
        has_icc = bool(im.info.get("icc_profile"))
    kept_exif = _kept_exif(exif)
    try:
        with open(path, "rb") as f:  # png.Reader(filename=...) would leak the handle
            width, height, rows, info = png.Reader(file=f).asDirect()
            planes = info["planes"]
            data = np.empty((height, width * planes), np.uint16)
            count = 0
            for count, row in enumerate(rows, start=1):
                data[count - 1] = row
        if count != height:
            raise EOFError(f"{height - count} rows missing")
    except _DECODE_ERRORS as exc:
        raise _fail(path, f"corrupt or truncated PNG ({_one_line(exc)})") from None
    if info["bitdepth"] != 16:  # asDirect() shifted values down to the sBIT depth
        data = _rescale(data, info["bitdepth"])
    if has_icc:
        _warn_icc_ignored(path)
    data = _orient(data.reshape(height, width, planes), orientation)
    return _split_planes(data, gray=info["greyscale"], alpha=info["alpha"], exif=kept_exif)


def _rescale(data: np.ndarray, bits: int) -> np.ndarray:
    """Stretch values of a lower significant bit depth back to the full uint16 range."""
    scaled = data.astype(np.float64) * (65535 / (2**bits - 1))
    return np.floor(scaled + 0.5).astype(np.uint16)


@contextlib.contextmanager
def tifffile_messages_as_warnings(path):
    """tifffile logs what it finds odd in a file (on stderr, unformatted); make each message a
    warning naming the file instead, so that front ends show it as one line of their own."""

    class Forward(logging.Handler):
        def emit(self, record):
            warnings.warn(f"'{path}': {first_line(Exception(record.getMessage()))}", stacklevel=2)

    logger = logging.getLogger("tifffile")
    handler, propagate = Forward(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _read_tiff_wide(path: pathlib.Path) -> LoadedImage | None:
    """Read a 16-bit TIFF with tifffile; return None for 8-bit ones Pillow handles."""
    import tifffile

    try:
        with tifffile_messages_as_warnings(path), tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if len(tif.pages) > 1:
                warnings.warn(f"'{path}' holds {len(tif.pages)} pages: using the first", stacklevel=2)
            dtype = page.dtype
            if dtype is None or dtype.itemsize == 1 or dtype == np.bool_:
                return None
            if dtype != np.uint16:
                raise _fail(path, f"unsupported TIFF sample type {dtype} "
                                  "(only 8- and 16-bit unsigned integers)")
            _check_size(path, page.imagewidth, page.imagelength)
            photometric = int(page.photometric)
            if photometric not in (0, 1, 2):  # MINISWHITE, MINISBLACK, RGB
                raise _fail(path, f"unsupported 16-bit TIFF color space "
                                  f"{page.photometric.name}")
            if page.axes not in ("YX", "YXS", "SYX"):
                raise _fail(path, f"unsupported TIFF layout {page.axes!r} (not a 2-D image)")
            tag = page.tags.get(_ORIENTATION_TAG)
            orientation = int(tag.value) if tag is not None else 1
            has_icc = _ICC_TAG in page.tags
            extrasamples = tuple(page.extrasamples)
            data = page.asarray()
    except HistocolorError:
        raise
    except _DECODE_ERRORS as exc:
        raise _fail(path, f"corrupt or truncated TIFF ({_one_line(exc)})") from None
    if page.axes == "SYX":  # planar configuration "separate"
        data = np.moveaxis(data, 0, -1)
    elif page.axes == "YX":
        data = data[..., None]
    gray = photometric in (0, 1)
    if photometric == 0:
        data = data.copy()
        data[..., :1] = 65535 - data[..., :1]
    color_planes = 1 if gray else 3
    alpha = int(data.shape[2] > color_planes)
    if alpha and extrasamples[:1] == (1,):  # associated (premultiplied) alpha
        data = _unpremultiply(data, color_planes)
    if has_icc:
        _warn_icc_ignored(path)
    return _split_planes(_orient(data[..., :color_planes + alpha], orientation),
                         gray=gray, alpha=bool(alpha), exif=_tiff_exif(path))


def _tiff_exif(path: pathlib.Path) -> bytes | None:
    """The EXIF of a TIFF that tifffile decoded, read from its header by Pillow."""
    try:
        with open_image(path) as im:
            return _kept_exif(im.getexif(), tiff=True)
    except (HistocolorError, *_EXIF_ERRORS):
        return None


def _kept_exif(exif: Image.Exif, *, tiff: bool = False) -> bytes | None:
    """EXIF worth carrying over, as bytes without Orientation (pixels are upright), or None.

    For a TIFF (whose first IFD is its "EXIF") only the descriptive text tags and
    the Exif and GPS sub-IFDs are kept. Unreadable EXIF is quietly dropped.
    """
    try:
        for tag in [tag for tag in exif if tiff and tag not in _TEXT_TAGS + _SUB_IFDS]:
            del exif[tag]
        exif.pop(_ORIENTATION_TAG, None)
        return exif.tobytes() if len(exif) else None
    except _EXIF_ERRORS:
        return None


def _unpremultiply(data: np.ndarray, color_planes: int) -> np.ndarray:
    """Undo premultiplied alpha so color values mean the same as in other files."""
    alpha = data[..., color_planes:color_planes + 1].astype(np.float64)
    color = data[..., :color_planes] * (65535 / np.maximum(alpha, 1))
    out = data.copy()
    out[..., :color_planes] = np.clip(np.floor(color + 0.5), 0, 65535)
    return out


def _orient(data: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF/TIFF orientation (1-8) to an (H, W, C) array, like exif_transpose."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return transforms.get(orientation, lambda a: a)(data)


def _split_planes(data: np.ndarray, *, gray: bool, alpha: bool,
                  exif: bytes | None = None) -> LoadedImage:
    """Turn (H, W, planes) into a LoadedImage, replicating gray to three channels."""
    color = data[..., :1] if gray else data[..., :3]
    if gray:
        color = np.repeat(color, 3, axis=2)
    return LoadedImage(
        rgb=np.ascontiguousarray(color),
        alpha=np.ascontiguousarray(data[..., -1]) if alpha else None,
        was_grayscale=gray,
        exif=exif,
    )


def open_image(path) -> Image.Image:
    """Open lazily (header only) with Pillow and apply our pixel limit (images and masks alike)."""
    # Pillow's own bomb guard must never refuse what MAX_PIXELS allows, and its
    # warning is redundant with our check, so keep it quiet.
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise _fail(path, f"image has more than {MAX_PIXELS} pixels "
                          "(histocolor.imageio.MAX_PIXELS)") from None
    except UnidentifiedImageError:
        raise _fail(path, "not an image file or an unsupported format") from None
    except _DECODE_ERRORS as exc:
        raise _fail(path, _one_line(exc)) from None
    try:
        _check_size(path, im.width, im.height)
    except HistocolorError:
        im.close()
        raise
    return im


def _read_with_pillow(path: pathlib.Path) -> LoadedImage:
    """Decode with Pillow and normalize mode, color profile and orientation."""
    with open_image(path) as im:
        try:
            im.load()  # full decode now, so truncation is an error here, not later
        except _DECODE_ERRORS as exc:
            raise _fail(path, f"corrupt or truncated {im.format or 'image'} file "
                              f"({_one_line(exc)})") from None
        if getattr(im, "n_frames", 1) > 1 and im.format != "MPO":  # MPO: a camera JPEG with its preview
            warnings.warn(f"'{path}' holds {im.n_frames} frames (an animation or a multi-page file): "
                          "using the first", stacklevel=2)
        icc = im.info.get("icc_profile")
        # In place and inside the block: no copy of the decoded pixels (im closes on exit).
        ImageOps.exif_transpose(im, in_place=True)
        exif = _kept_exif(im.getexif(), tiff=im.format == "TIFF")
        loaded = _normalize(path, im, icc)
        loaded.exif = exif
        return loaded


def _normalize(path, im: Image.Image, icc: bytes | None) -> LoadedImage:
    """Convert any Pillow mode to sRGB uint8 (or uint16 gray) plus alpha."""
    mode = im.mode
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        return _wide_gray(path, im, icc)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("1", "L", "RGB") and "transparency" in im.info:
        im = im.convert("LA" if mode != "RGB" else "RGBA")
    elif mode in ("1", "La", "PA", "RGBa", "RGBX", "YCbCr", "HSV"):
        im = im.convert({"1": "L", "La": "LA", "PA": "RGBA", "RGBa": "RGBA"}.get(mode, "RGB"))
    if im.mode not in ("L", "LA", "RGB", "RGBA", "CMYK"):
        raise _fail(path, f"unsupported pixel format {im.mode!r}")

    alpha = None
    if im.mode in ("LA", "RGBA"):
        alpha = np.array(im.getchannel("A"))
        im = im.convert(im.mode[:-1])
    gray = im.mode == "L"
    if icc:
        converted = _icc_to_srgb(path, im, icc)
        if converted is not None:
            rgb = np.array(converted)
            if gray:  # a gray profile maps to neutral sRGB; keep channels exactly equal
                rgb = np.repeat(rgb[..., 1:2], 3, axis=2)
            return LoadedImage(np.ascontiguousarray(rgb), alpha, gray)
    if gray:
        rgb = np.repeat(np.array(im)[..., None], 3, axis=2)
    else:
        rgb = np.array(im if im.mode == "RGB" else im.convert("RGB"))  # no copy of an RGB image first
    return LoadedImage(np.ascontiguousarray(rgb), alpha, gray)


def _wide_gray(path, im: Image.Image, icc: bytes | None) -> LoadedImage:
    """Pillow's 16/32-bit integer gray modes -> uint16, if the values fit."""
    values = np.array(im)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise _fail(path, f"unsupported pixel format {im.mode!r} "
                          "(values outside the 16-bit range)")
    if icc:
        _warn_icc_ignored(path)
    return _split_planes(values.astype(np.uint16)[..., None], gray=True, alpha=False)


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _icc_to_srgb(path, im: Image.Image, icc: bytes) -> Image.Image | None:
    """Convert through the embedded profile to sRGB; warn and give None if unusable."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(im, source, _srgb_profile(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        warnings.warn(f"'{path}': embedded ICC profile ignored ({_one_line(exc)})",
                      stacklevel=5)
        return None


# ---------------------------------------------------------------------- writing


def _extension(path: pathlib.Path) -> str:
    """The lower-case output extension, or a HistocolorError listing supported ones."""
    ext = path.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise HistocolorError(f"cannot write '{path}': unsupported extension "
                              f"{path.suffix or '(none)'!r}; use one of "
                              f"{', '.join(WRITE_EXTENSIONS)}")
    return ext


def check_output_path(path) -> pathlib.Path:
    """Check, before any expensive work, that :func:`write_image` can write ``path``.

    Nothing is created: the nearest existing ancestor of the target must be a
    writable directory (so missing parents can be made later). Writability is
    proven by creating and removing a temporary file there, because
    ``os.access`` says yes to root even on /proc or read-only mounts.
    """
    path = pathlib.Path(path)
    _extension(path)
    return check_writable(path)


def check_writable(path) -> pathlib.Path:
    """:func:`check_output_path` without the image-format check (for LUT and video files)."""
    path = pathlib.Path(path)
    if len(os.fsencode(path.name)) > 255:
        raise HistocolorError(f"cannot write '{path.name[:40]}...': the file name is longer than 255 bytes")
    if path.is_dir():
        raise HistocolorError(f"cannot write '{path}': it is a directory")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise HistocolorError(f"cannot write '{path}': '{ancestor}' is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise HistocolorError(f"cannot write '{path}': directory '{ancestor}' is not writable")
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".histocolor-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise HistocolorError(f"cannot write '{path}': directory '{ancestor}' is not "
                              f"writable ({_one_line(exc)})") from None
    return path


def write_image(path, rgb: np.ndarray, alpha: np.ndarray | None = None, *,
                quality: int = 95, exif: bytes | None = None, overwrite: bool = True) -> None:
    """Write an (H, W, 3) uint8/uint16 image atomically, format from the extension.

    The file is written to a temporary name in the target directory and renamed
    over the target only once complete, so a failure never leaves a partial file
    or destroys an existing one. Without ``overwrite`` an existing target, even one
    that another process wrote meanwhile, is kept (:class:`~histocolor.atomic.OutputExists`).
    Formats that cannot hold 16 bits (JPEG, WebP, BMP) get an 8-bit copy, and JPEG
    and BMP drop alpha; both with a warning.

    ``exif`` (EXIF bytes such as :attr:`LoadedImage.exif`, with or without the
    "Exif\\0\\0" header) is written without its Orientation tag, since ``rgb`` is
    taken as upright. JPEG, WebP and PNG (8- and 16-bit) keep all of it; TIFF (8-
    and 16-bit) keeps only the descriptive text tags (description, make, model,
    software, date, artist, host computer, copyright, document name), as ASCII;
    BMP keeps none. EXIF that cannot be written is dropped with a warning.
    """
    _validate(rgb, alpha)
    path = pathlib.Path(path)
    ext = _extension(path)
    exif = _exif_for(path, ext, exif) if exif else None
    if rgb.dtype == np.uint16 and ext in _EIGHT_BIT_ONLY:
        warnings.warn(f"'{path}': {ext} cannot hold 16 bits per channel; writing 8 bits",
                      stacklevel=2)
        rgb = _to_eight_bit(rgb)
        alpha = None if alpha is None else _to_eight_bit(alpha)
    if alpha is not None and ext in _NO_ALPHA:
        warnings.warn(f"'{path}': {_NO_ALPHA[ext]} has no alpha channel; transparency dropped",
                      stacklevel=2)
        alpha = None
    try:
        with atomic_write(path, suffix=ext, replace=overwrite) as stream:
            _encode(stream, ext, rgb, alpha, quality, exif)
    except HistocolorError:
        raise
    except Exception as exc:
        raise HistocolorError(f"cannot write '{path}': {_one_line(exc)}") from exc


def _validate(rgb, alpha) -> None:
    """Catch programming errors (wrong shapes or dtypes) early, as ValueError."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be an (H, W, 3) array, got {getattr(rgb, 'shape', rgb)!r}")
    if rgb.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"rgb must be uint8 or uint16, got {rgb.dtype}")
    if alpha is not None:
        if not isinstance(alpha, np.ndarray) or alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha must be an {rgb.shape[:2]} array, "
                             f"got {getattr(alpha, 'shape', alpha)!r}")
        if alpha.dtype != rgb.dtype:
            raise ValueError(f"alpha dtype {alpha.dtype} differs from rgb dtype {rgb.dtype}")


def _exif_for(path: pathlib.Path, ext: str, exif: bytes) -> bytes | dict[int, str] | None:
    """What of ``exif`` the format holds: EXIF bytes, TIFF text tags, or None."""
    if ext == ".bmp":
        return None
    parsed = Image.Exif()
    try:
        parsed.load(exif)
        parsed.pop(_ORIENTATION_TAG, None)
        if ext in (".tif", ".tiff"):
            return {tag: parsed[tag].encode("ascii", "replace").decode()
                    for tag in _TEXT_TAGS if isinstance(parsed.get(tag), str)} or None
        data = parsed.tobytes() if len(parsed) else None
    except _EXIF_ERRORS as exc:
        warnings.warn(f"'{path}': EXIF not written, it is unreadable ({_one_line(exc)})",
                      stacklevel=3)
        return None
    if data and ext in (".jpg", ".jpeg") and len(data) > _JPEG_MAX_EXIF:
        warnings.warn(f"'{path}': EXIF not written, {len(data)} bytes is more than JPEG "
                      f"holds ({_JPEG_MAX_EXIF})", stacklevel=3)
        return None
    return data


class _PngWriter(png.Writer):
    """pypng's writer, plus an eXIf chunk (raw TIFF structure) before the image data."""

    exif: bytes | None = None

    def write_preamble(self, outfile):
        super().write_preamble(outfile)
        if self.exif:
            png.write_chunk(outfile, b"eXIf", self.exif.removeprefix(b"Exif\x00\x00"))


def _to_eight_bit(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _encode(f, ext: str, rgb: np.ndarray, alpha: np.ndarray | None, quality: int,
            exif: bytes | dict[int, str] | None = None) -> None:
    """Encode into the open file ``f``: pypng/tifffile for 16 bits, else Pillow.

    ``exif`` comes from :func:`_exif_for`: bytes, or text tags for TIFF.
    """
    pixels = rgb if alpha is None else np.dstack([rgb, alpha])
    height, width, planes = pixels.shape
    if rgb.dtype == np.uint16 and ext == ".png":
        writer = _PngWriter(width, height, greyscale=False, alpha=alpha is not None,
                            bitdepth=16)
        writer.exif = exif
        rows = pixels.astype(">u2").reshape(height, width * planes)
        writer.write_packed(f, (row.tobytes() for row in rows))
    elif rgb.dtype == np.uint16:  # TIFF
        import tifffile

        text = dict(exif or {})
        options = {"description": text.pop(270), "metadata": None} if 270 in text else {}
        if 305 in text:
            options["software"] = text.pop(305)
        tifffile.imwrite(f, pixels, photometric="rgb", compression="zlib",
                         extrasamples=("unassalpha",) if alpha is not None else None,
                         extratags=[(tag, "s", 0, value, True) for tag, value in text.items()],
                         **options)
    else:
        options = {"quality": quality} if ext in (".jpg", ".jpeg", ".webp") else {}
        if ext in (".tif", ".tiff"):
            options["compression"] = "tiff_adobe_deflate"
            if exif:
                options["tiffinfo"] = exif
        elif exif:
            options["exif"] = exif
        Image.fromarray(np.ascontiguousarray(pixels)).save(f, format=_PILLOW_FORMATS[ext],
                                                           **options)
