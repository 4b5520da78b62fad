"""Tests for histocolor.imageio: formats, modes, 16 bits, orientation, ICC, errors, atomic writes.

All fixtures are generated in tmp_path with Pillow, pypng and tifffile.
"""

import io
import os
import struct
import warnings
import zlib

import numpy as np
import png
import pytest
import tifffile
from PIL import Image, ImageCms, ImageFile

from histocolor import atomic, imageio
from histocolor.dtypes import to_uint
from histocolor.errors import HistocolorError
from histocolor.imageio import (
    WRITE_EXTENSIONS,
    LoadedImage,
    check_output_path,
    read_image,
    write_image,
)

RNG = np.random.default_rng(1234)


def noise(h=12, w=17, channels=3, dtype=np.uint8):
    high = np.iinfo(dtype).max + 1
    return RNG.integers(0, high, (h, w, channels), dtype=dtype)


def smooth(h=32, w=48):
    """A gradient image, which lossy codecs reproduce closely."""
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)]
                     ).astype(np.uint8)


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload))


def insert_chunk(png_bytes: bytes, kind: bytes, payload: bytes) -> bytes:
    """Insert a chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return png_bytes[:33] + chunk(kind, payload) + png_bytes[33:]


def write_png16(path, pixels, *, greyscale=False, alpha=False):
    h, w = pixels.shape[:2]
    writer = png.Writer(w, h, greyscale=greyscale, alpha=alpha, bitdepth=16)
    if isinstance(path, io.IOBase):
        writer.write(path, pixels.reshape(h, -1).tolist())
        return
    with open(path, "wb") as f:
        writer.write(f, pixels.reshape(h, -1).tolist())


def assert_user_error(excinfo, path, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message.lower()


def exif_bytes(orientation):
    exif = Image.Exif()
    exif[274] = orientation
    return exif.tobytes()


# ------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff", ".bmp", ".PNG", ".Tif"])
def test_lossless_8bit_round_trip(tmp_path, ext):
    rgb = noise()
    path = tmp_path / f"out{ext}"
    write_image(path, rgb)
    loaded = read_image(path)
    assert loaded.rgb.dtype == np.uint8 and loaded.bit_depth == 8
    np.testing.assert_array_equal(loaded.rgb, rgb)
    assert loaded.alpha is None and not loaded.was_grayscale
    assert loaded.rgb.flags.c_contiguous


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".JPG", ".webp"])
def test_lossy_round_trip_is_close(tmp_path, ext):
    rgb = smooth()
    path = tmp_path / f"out{ext}"
    write_image(path, rgb, quality=95)
    loaded = read_image(path)
    assert loaded.rgb.shape == rgb.shape and loaded.rgb.dtype == np.uint8
    assert np.abs(loaded.rgb.astype(int) - rgb).mean() < 3


def test_quality_changes_jpeg_size(tmp_path):
    rgb = noise(64, 64)
    write_image(tmp_path / "hi.jpg", rgb, quality=95)
    write_image(tmp_path / "lo.jpg", rgb, quality=20)
    assert (tmp_path / "lo.jpg").stat().st_size < (tmp_path / "hi.jpg").stat().st_size


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_round_trip_exact(tmp_path, ext):
    rgb = noise(dtype=np.uint16)
    rgb[0, 0] = (65535, 256, 1000)
    path = tmp_path / f"out{ext}"
    write_image(path, rgb)
    loaded = read_image(path)
    assert loaded.rgb.dtype == np.uint16 and loaded.bit_depth == 16
    np.testing.assert_array_equal(loaded.rgb, rgb)
    assert loaded.alpha is None and not loaded.was_grayscale


@pytest.mark.parametrize("ext,dtype", [(".png", np.uint8), (".png", np.uint16),
                                       (".tif", np.uint8), (".tif", np.uint16),
                                       (".webp", np.uint8)])
def test_alpha_round_trip_exact(tmp_path, ext, dtype):
    rgb = smooth().astype(dtype) * (257 if dtype == np.uint16 else 1)
    alpha = noise(*rgb.shape[:2], 1, dtype)[..., 0]
    path = tmp_path / f"out{ext}"
    write_image(path, rgb, alpha)
    loaded = read_image(path)
    assert loaded.alpha is not None and loaded.alpha.dtype == dtype
    np.testing.assert_array_equal(loaded.alpha, alpha)
    if ext != ".webp":
        np.testing.assert_array_equal(loaded.rgb, rgb)


def test_bmp_drops_alpha_with_warning(tmp_path):
    # A 32-bit BMP's fourth byte is "reserved": readers (histocolor's, Pillow's) show no alpha in it.
    rgb, alpha = noise(), noise(channels=1)[..., 0]
    path = tmp_path / "out.bmp"
    with pytest.warns(UserWarning, match="BMP has no alpha"):
        write_image(path, rgb, alpha)
    assert struct.unpack("<H", path.read_bytes()[28:30])[0] == 24  # bits per pixel
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.rgb, rgb)
    assert loaded.alpha is None


def test_jpeg_drops_alpha_with_warning(tmp_path):
    path = tmp_path / "out.jpg"
    with pytest.warns(UserWarning, match="alpha"):
        write_image(path, smooth(), np.full((32, 48), 7, np.uint8))
    assert read_image(path).alpha is None


@pytest.mark.parametrize("ext", [".jpg", ".webp", ".bmp"])
def test_16bit_to_8bit_only_format_warns_and_scales(tmp_path, ext):
    rgb16 = smooth().astype(np.uint16) * 257
    path = tmp_path / f"out{ext}"
    with pytest.warns(UserWarning, match="16 bits"):
        write_image(path, rgb16)
    loaded = read_image(path)
    assert loaded.rgb.dtype == np.uint8
    assert np.abs(loaded.rgb.astype(int) - smooth()).mean() < 3


def test_write_creates_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "out.png"
    write_image(path, noise())
    assert path.is_file()


def test_written_file_gets_normal_permissions(tmp_path):
    path = tmp_path / "out.png"
    write_image(path, noise())
    assert path.stat().st_mode & 0o777 == 0o666 & ~atomic._UMASK
    path.chmod(0o640)
    write_image(path, noise())
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("rgb,alpha", [
    (np.zeros((4, 4), np.uint8), None),
    (np.zeros((4, 4, 4), np.uint8), None),
    (np.zeros((4, 4, 3), np.float32), None),
    (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8)),
    (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint16)),
])
def test_write_rejects_bad_arrays_with_value_error(tmp_path, rgb, alpha):
    with pytest.raises(ValueError):
        write_image(tmp_path / "out.png", rgb, alpha)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ pixel modes


def test_gray_png_replicated(tmp_path):
    gray = noise(channels=1)[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    loaded = read_image(tmp_path / "g.png")
    assert loaded.was_grayscale and loaded.alpha is None
    assert loaded.rgb.shape == gray.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(loaded.rgb[..., c], gray)


def test_gray_alpha_png(tmp_path):
    la = noise(channels=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    loaded = read_image(tmp_path / "la.png")
    assert loaded.was_grayscale
    np.testing.assert_array_equal(loaded.rgb, np.repeat(la[..., :1], 3, axis=2))
    np.testing.assert_array_equal(loaded.alpha, la[..., 1])


def test_bilevel_image(tmp_path):
    Image.fromarray(np.array([[0, 1], [1, 0]], bool)).save(tmp_path / "b.png")
    loaded = read_image(tmp_path / "b.png")
    assert loaded.was_grayscale
    np.testing.assert_array_equal(loaded.rgb[..., 0], [[0, 255], [255, 0]])


def test_palette_png(tmp_path):
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    im.putdata([0, 1, 2])
    im.save(tmp_path / "p.png")
    loaded = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(loaded.rgb[0], [[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    assert loaded.alpha is None


def test_palette_png_with_transparency_gets_alpha(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([10, 20, 30, 40, 50, 60])
    im.putdata([0, 1])
    im.save(tmp_path / "pt.png", transparency=0)
    loaded = read_image(tmp_path / "pt.png")
    np.testing.assert_array_equal(loaded.alpha, [[0, 255]])
    np.testing.assert_array_equal(loaded.rgb[0, 1], [40, 50, 60])


def test_color_key_transparency_becomes_alpha(tmp_path):
    Image.fromarray(np.array([[0, 50, 100]], np.uint8), "L").save(tmp_path / "g.png",
                                                                  transparency=50)
    gray = read_image(tmp_path / "g.png")
    assert gray.was_grayscale
    np.testing.assert_array_equal(gray.alpha, [[255, 0, 255]])
    np.testing.assert_array_equal(gray.rgb[0, :, 2], [0, 50, 100])

    rgb = np.array([[[0, 0, 0], [50, 60, 70]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png", transparency=(50, 60, 70))
    np.testing.assert_array_equal(read_image(tmp_path / "c.png").alpha, [[255, 0]])


def test_cmyk_jpeg_without_profile(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cyan.jpg")
    r, g, b = read_image(tmp_path / "cyan.jpg").rgb[4, 4].astype(int)
    assert r < 40 and g > 215 and b > 215


def test_cmyk_tiff(tmp_path):
    Image.new("CMYK", (4, 4), (0, 255, 0, 0)).save(tmp_path / "magenta.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "magenta.tif").rgb[0, 0], [255, 0, 255])


def test_16bit_gray_png(tmp_path):
    gray = noise(channels=1, dtype=np.uint16)
    gray[0, 0] = 60000
    write_png16(tmp_path / "g16.png", gray, greyscale=True)
    loaded = read_image(tmp_path / "g16.png")
    assert loaded.was_grayscale and loaded.rgb.dtype == np.uint16 and loaded.alpha is None
    np.testing.assert_array_equal(loaded.rgb, np.repeat(gray, 3, axis=2))


def test_16bit_gray_alpha_png(tmp_path):
    la = noise(channels=2, dtype=np.uint16)
    write_png16(tmp_path / "la16.png", la, greyscale=True, alpha=True)
    loaded = read_image(tmp_path / "la16.png")
    assert loaded.was_grayscale
    np.testing.assert_array_equal(loaded.rgb[..., 2], la[..., 0])
    np.testing.assert_array_equal(loaded.alpha, la[..., 1])


def test_16bit_png_with_sbit_is_rescaled_to_full_range(tmp_path):
    gray = np.array([[0, 4095 << 4]], np.uint16)  # 12 significant bits, left-aligned
    buffer = io.BytesIO()
    png.Writer(2, 1, greyscale=True, bitdepth=16).write(buffer, gray.tolist())
    (tmp_path / "s.png").write_bytes(insert_chunk(buffer.getvalue(), b"sBIT", b"\x0c"))
    np.testing.assert_array_equal(read_image(tmp_path / "s.png").rgb[0, :, 0], [0, 65535])


def test_16bit_netpbm_goes_through_pillow_integer_mode(tmp_path):
    values = np.array([[0, 300], [65535, 1234]], ">u2")
    (tmp_path / "g.pgm").write_bytes(b"P5 2 2 65535\n" + values.tobytes())
    loaded = read_image(tmp_path / "g.pgm")
    assert loaded.rgb.dtype == np.uint16 and loaded.was_grayscale
    np.testing.assert_array_equal(loaded.rgb[..., 1], values)


def test_16bit_tiff_gray_and_planar_rgba(tmp_path):
    gray = noise(channels=1, dtype=np.uint16)[..., 0]
    tifffile.imwrite(tmp_path / "g.tif", gray, photometric="minisblack")
    loaded = read_image(tmp_path / "g.tif")
    assert loaded.was_grayscale
    np.testing.assert_array_equal(loaded.rgb[..., 0], gray)

    rgba = noise(channels=4, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(rgba, -1, 0), photometric="rgb",
                     planarconfig="separate", extrasamples=["unassalpha"])
    loaded = read_image(tmp_path / "p.tif")
    np.testing.assert_array_equal(loaded.rgb, rgba[..., :3])
    np.testing.assert_array_equal(loaded.alpha, rgba[..., 3])
    assert loaded.rgb.flags.c_contiguous and loaded.alpha.flags.c_contiguous


def test_16bit_tiff_miniswhite_is_inverted(tmp_path):
    tifffile.imwrite(tmp_path / "w.tif", np.array([[0, 65535]], np.uint16),
                     photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "w.tif").rgb[0, :, 0], [65535, 0])


def test_16bit_tiff_premultiplied_alpha_is_undone(tmp_path):
    rgba = np.array([[[30000, 0, 65535, 32768]]], np.uint16)  # half transparent
    tifffile.imwrite(tmp_path / "pm.tif", rgba, photometric="rgb", extrasamples=["assocalpha"])
    loaded = read_image(tmp_path / "pm.tif")
    np.testing.assert_allclose(loaded.rgb[0, 0], [60000, 0, 65535], atol=2)
    assert loaded.alpha[0, 0] == 32768


def test_float_tiff_is_unsupported(tmp_path):
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.float32))
    with pytest.raises(HistocolorError) as excinfo:
        read_image(path)
    assert_user_error(excinfo, path, "unsupported")


# ------------------------------------------------------------------ orientation

# Stored 2x3 image "a b c / d e f" and what each EXIF orientation shows upright.
STORED = np.array([[1, 2, 3], [4, 5, 6]])
UPRIGHT = {
    1: [[1, 2, 3], [4, 5, 6]],
    2: [[3, 2, 1], [6, 5, 4]],
    3: [[6, 5, 4], [3, 2, 1]],
    4: [[4, 5, 6], [1, 2, 3]],
    5: [[1, 4], [2, 5], [3, 6]],
    6: [[4, 1], [5, 2], [6, 3]],
    7: [[6, 3], [5, 2], [4, 1]],
    8: [[3, 6], [2, 5], [1, 4]],
}


def labelled(scale, dtype):
    """RGB image whose channels all equal the STORED labels times ``scale`` (plus offsets)."""
    base = STORED * scale
    return np.dstack([base, base + 1, base + 2]).astype(dtype)


def labels(rgb, scale):
    assert np.all(rgb[..., 1].astype(int) == rgb[..., 0].astype(int) + 1)
    return rgb[..., 0].astype(int) // scale


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_8bit_png(tmp_path, orientation):
    path = tmp_path / "o.png"
    Image.fromarray(labelled(10, np.uint8)).save(path, exif=exif_bytes(orientation))
    np.testing.assert_array_equal(labels(read_image(path).rgb, 10), UPRIGHT[orientation])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_16bit_png(tmp_path, orientation):
    buffer = io.BytesIO()
    write_png16(buffer, labelled(1000, np.uint16))
    data = insert_chunk(buffer.getvalue(), b"eXIf", exif_bytes(orientation)[6:])
    path = tmp_path / "o16.png"
    path.write_bytes(data)
    np.testing.assert_array_equal(labels(read_image(path).rgb, 1000), UPRIGHT[orientation])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_16bit(tmp_path, orientation):
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, labelled(1000, np.uint16), photometric="rgb",
                     extratags=[(274, "H", 1, orientation, False)])
    loaded = read_image(path)
    np.testing.assert_array_equal(labels(loaded.rgb, 1000), UPRIGHT[orientation])
    assert loaded.rgb.flags.c_contiguous


def test_jpeg_orientation_6_is_rotated_clockwise(tmp_path):
    stored = np.zeros((32, 64, 3), np.uint8)  # wide: red left half, blue right half
    stored[:, :32] = (255, 0, 0)
    stored[:, 32:] = (0, 0, 255)
    path = tmp_path / "rot.jpg"
    Image.fromarray(stored).save(path, exif=exif_bytes(6), quality=95)
    rgb = read_image(path).rgb
    assert rgb.shape == (64, 32, 3)  # upright is tall
    assert rgb[8, 16, 0] > 200 and rgb[8, 16, 2] < 60  # left (red) went to the top
    assert rgb[56, 16, 2] > 200 and rgb[56, 16, 0] < 60


# --------------------------------------------------------------------------- EXIF


def tagged_exif(orientation=1):
    """EXIF with a description, an artist, a date in the Exif sub-IFD and an orientation."""
    exif = Image.Exif()
    exif[270] = "histocolor EXIF test"  # ImageDescription
    exif[315] = "A. Photographer"  # Artist
    exif[274] = orientation
    exif.get_ifd(0x8769)[36867] = "2024:05:06 07:08:09"  # DateTimeOriginal
    return exif.tobytes()


def written_exif(path):
    """Base tags and Exif sub-IFD of a file, as Pillow (like most viewers) reads them."""
    with Image.open(path) as im:
        exif = im.getexif()
        return dict(exif), exif.get_ifd(0x8769)


def exif_tags(data):
    exif = Image.Exif()
    exif.load(data)
    return dict(exif)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_exif_round_trip_keeps_tags_and_drops_orientation(tmp_path, ext):
    stored = np.zeros((32, 64, 3), np.uint8)  # wide: red left half, blue right half
    stored[:, :32] = (255, 0, 0)
    stored[:, 32:] = (0, 0, 255)
    source = tmp_path / f"source{ext}"
    Image.fromarray(stored).save(source, exif=tagged_exif(6), quality=95)
    loaded = read_image(source)
    assert loaded.rgb.shape == (64, 32, 3) and loaded.rgb[8, 16, 0] > 200  # upright: red on top
    assert loaded.exif is not None and "exif" not in repr(loaded)

    out = tmp_path / f"out{ext}"
    write_image(out, loaded.rgb, exif=loaded.exif)
    tags, sub = written_exif(out)
    assert tags[270] == "histocolor EXIF test" and tags[315] == "A. Photographer"
    assert tags.get(274, 1) == 1 and sub[36867] == "2024:05:06 07:08:09"
    again = read_image(out)  # no viewer or reader turns it a second time
    assert again.rgb.shape == (64, 32, 3) and again.rgb[8, 16, 0] > 200


def test_exif_written_to_16bit_png(tmp_path):
    rgb = noise(dtype=np.uint16)
    path = tmp_path / "deep.png"
    write_image(path, rgb, exif=tagged_exif(8)[6:])  # also accepted without the "Exif" header
    tags, sub = written_exif(path)
    assert tags[315] == "A. Photographer" and 274 not in tags and sub[36867] == "2024:05:06 07:08:09"
    loaded = read_image(path)  # pypng path: still exact, EXIF read back
    np.testing.assert_array_equal(loaded.rgb, rgb)
    assert loaded.exif.startswith(b"Exif\x00\x00")
    assert exif_tags(loaded.exif)[270] == "histocolor EXIF test"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_keeps_descriptive_text_tags_only(tmp_path, dtype):
    rgb = noise(dtype=dtype)
    path = tmp_path / "out.tif"
    write_image(path, rgb, exif=tagged_exif(6))
    tags, _ = written_exif(path)
    assert tags[270] == "histocolor EXIF test" and tags[315] == "A. Photographer"
    assert tags.get(274, 1) == 1
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.rgb, rgb)
    # Only the descriptive tags travel on, not the TIFF's own layout (size, strips...).
    kept = exif_tags(loaded.exif)
    assert kept[270] == "histocolor EXIF test" and kept[315] == "A. Photographer"
    assert not {256, 257, 258, 259, 273, 274, 279} & set(kept)


def test_no_exif_read_as_none_and_bmp_writes_none(tmp_path):
    path = tmp_path / "plain.png"
    write_image(path, noise())
    assert read_image(path).exif is None
    write_image(tmp_path / "out.bmp", noise(), exif=tagged_exif())  # BMP has no EXIF: quietly left out
    assert read_image(tmp_path / "out.bmp").exif is None


def test_unreadable_exif_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "out.jpg"
    with pytest.warns(UserWarning, match="EXIF not written"):
        write_image(path, smooth(), exif=b"Exif\x00\x00not a TIFF structure")
    assert read_image(path).exif is None


# -------------------------------------------------------------------- ICC profiles


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def swapped_primaries_icc() -> bytes:
    """A valid RGB profile unlike sRGB: sRGB with the red and green primaries swapped."""
    data = bytearray(srgb_icc())
    count = struct.unpack(">I", data[128:132])[0]
    entries = {bytes(data[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    data[red + 4:red + 8], data[green + 4:green + 8] = (data[green + 4:green + 8],
                                                        data[red + 4:red + 8])
    return bytes(data)


def test_non_srgb_icc_profile_is_converted(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[:, 0] = (255, 0, 0)
    rgb[:, 1] = (0, 255, 0)
    rgb[:, 2] = (0, 0, 255)
    path = tmp_path / "swapped.png"
    Image.fromarray(rgb).save(path, icc_profile=swapped_primaries_icc())
    out = read_image(path).rgb.astype(int)
    np.testing.assert_allclose(out[0, 0], [0, 255, 0], atol=2)  # file's red is sRGB green
    np.testing.assert_allclose(out[0, 1], [255, 0, 0], atol=2)
    np.testing.assert_allclose(out[0, 2], [0, 0, 255], atol=2)


def test_icc_conversion_keeps_alpha(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = [[0, 100], [200, 255]]
    path = tmp_path / "swapped_alpha.png"
    Image.fromarray(rgba).save(path, icc_profile=swapped_primaries_icc())
    loaded = read_image(path)
    np.testing.assert_array_equal(loaded.alpha, rgba[..., 3])
    assert loaded.rgb[0, 0, 1] > 250 and loaded.rgb[0, 0, 0] < 5


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_embedded_srgb_profile_keeps_values(tmp_path, ext):
    rgb = noise()
    path = tmp_path / f"srgb{ext}"
    Image.fromarray(rgb).save(path, icc_profile=srgb_icc())
    assert np.abs(read_image(path).rgb.astype(int) - rgb).max() <= 2


def test_unusable_icc_profile_is_ignored_with_warning(tmp_path):
    gray = noise(channels=1)[..., 0]
    path = tmp_path / "mismatch.png"
    Image.fromarray(gray, "L").save(path, icc_profile=srgb_icc())  # RGB profile on gray data
    with pytest.warns(UserWarning, match="ICC"):
        loaded = read_image(path)
    np.testing.assert_array_equal(loaded.rgb[..., 0], gray)


def test_16bit_icc_profile_is_ignored_with_warning(tmp_path):
    rgb = noise(dtype=np.uint16)
    buffer = io.BytesIO()
    write_png16(buffer, rgb)
    iccp = b"custom\x00\x00" + zlib.compress(swapped_primaries_icc())
    path = tmp_path / "icc16.png"
    path.write_bytes(insert_chunk(buffer.getvalue(), b"iCCP", iccp))
    with pytest.warns(UserWarning, match="ICC profile ignored"):
        loaded = read_image(path)
    np.testing.assert_array_equal(loaded.rgb, rgb)


# -------------------------------------------------------------------- read errors


def read_error(path, *words):
    with pytest.raises(HistocolorError) as excinfo:
        read_image(path)
    assert_user_error(excinfo, path, *words)
    return excinfo


def test_missing_file(tmp_path):
    read_error(tmp_path / "nope.png", "no such file")


def test_directory(tmp_path):
    read_error(tmp_path, "directory")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    read_error(tmp_path / "empty.png", "empty")


@pytest.mark.parametrize("name", ["text.png", "text.jpg", "text.tif"])
def test_text_file_with_image_name(tmp_path, name):
    (tmp_path / name).write_text("hello, this is not an image\n" * 3)
    read_error(tmp_path / name)


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(noise(64, 64)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    read_error(path, "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_truncated_png(tmp_path, dtype):
    path = tmp_path / "cut.png"
    write_image(path, noise(64, 64, dtype=dtype))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    read_error(path, "truncated")


def test_truncated_16bit_tiff(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, noise(64, 64, dtype=np.uint16), photometric="rgb")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    read_error(path)


def test_png_header_bomb_refused_before_decoding(tmp_path):
    data = bytearray((lambda b: (Image.fromarray(noise(2, 2)).save(b, "PNG"), b)[1])(
        io.BytesIO()).getvalue())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(data))
    read_error(path, "100000x100000", "limit")


def test_monkeypatched_limit_applies_to_every_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100)
    paths = [tmp_path / "a.jpg", tmp_path / "b.png", tmp_path / "c.tif"]
    Image.fromarray(noise(11, 11)).save(paths[0])
    write_png16(paths[1], noise(11, 11, dtype=np.uint16))
    tifffile.imwrite(paths[2], noise(11, 11, dtype=np.uint16), photometric="rgb")
    for path in paths:
        read_error(path, "11x11", "limit")
    monkeypatch.setattr(imageio, "MAX_PIXELS", 121)
    assert all(read_image(p).rgb.shape == (11, 11, 3) for p in paths)


def test_pillow_bomb_guard_neither_refuses_nor_warns_below_our_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    path = tmp_path / "ok.jpg"
    Image.fromarray(smooth()).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path).rgb.shape == (32, 48, 3)


def test_pillow_bomb_error_becomes_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 5)
    path = tmp_path / "big.jpg"
    Image.fromarray(smooth()).save(path)
    read_error(path, "pixels")


def test_loaded_image_bit_depth():
    assert LoadedImage(np.zeros((1, 1, 3), np.uint16), None, False).bit_depth == 16
    assert LoadedImage(np.zeros((1, 1, 3), np.uint8), None, False).bit_depth == 8


# ------------------------------------------------------------ write errors, atomicity


@pytest.mark.parametrize("name", ["out.gif", "out", "out.png.txt"])
def test_unknown_write_extension(tmp_path, name):
    with pytest.raises(HistocolorError) as excinfo:
        write_image(tmp_path / name, noise())
    assert_user_error(excinfo, tmp_path / name, *WRITE_EXTENSIONS)
    assert list(tmp_path.iterdir()) == []


def test_write_under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "sub" / "out.png"
    with pytest.raises(HistocolorError) as excinfo:
        write_image(target, noise())
    assert_user_error(excinfo, target, "directory")


def test_write_onto_existing_directory_leaves_no_temp_file(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(HistocolorError) as excinfo:
        write_image(tmp_path / "out.png", noise())
    assert_user_error(excinfo, tmp_path / "out.png")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_write_under_proc_fails_cleanly():
    target = "/proc/histocolor-test/out.png"
    with pytest.raises(HistocolorError) as excinfo:
        write_image(target, noise())
    assert_user_error(excinfo, target)


def failing_encoder(*args, **kwargs):
    """Write some bytes to the output, then fail like a crashing codec would."""
    for arg in list(args) + list(kwargs.values()):
        if isinstance(arg, io.IOBase):
            arg.write(b"partial data")
    raise OSError("encoder exploded\nsecond line")


@pytest.mark.parametrize("ext,dtype,target", [
    (".png", np.uint8, (Image.Image, "save")),
    (".jpg", np.uint8, (Image.Image, "save")),
    (".png", np.uint16, (png.Writer, "write_packed")),
    (".tif", np.uint16, (tifffile, "imwrite")),
])
@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_is_atomic(tmp_path, monkeypatch, ext, dtype, target, existing):
    path = tmp_path / f"out{ext}"
    if existing:
        path.write_bytes(b"previous contents")
    monkeypatch.setattr(*target, failing_encoder)
    with pytest.raises(HistocolorError) as excinfo:
        write_image(path, noise(dtype=dtype))
    assert_user_error(excinfo, path, "encoder exploded")
    if existing:
        assert path.read_bytes() == b"previous contents"
        assert [p.name for p in tmp_path.iterdir()] == [path.name]
    else:
        assert list(tmp_path.iterdir()) == []


def test_interrupted_write_removes_temp_file(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "out.png", noise())
    assert list(tmp_path.iterdir()) == []


def test_encoder_rejecting_image_is_user_error(tmp_path):
    path = tmp_path / "huge.webp"  # WebP is limited to 16383 pixels per side
    with pytest.raises(HistocolorError) as excinfo:
        write_image(path, np.zeros((1, 16400, 3), np.uint8))
    assert_user_error(excinfo, path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ check_output_path


def test_check_output_path_accepts_new_nested_path_without_creating_it(tmp_path):
    target = tmp_path / "new" / "dir" / "out.TIFF"
    assert check_output_path(str(target)) == target
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["extension", "directory", "file_parent", "proc"])
def test_check_output_path_refuses(tmp_path, case):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.png").mkdir()
    target = {
        "extension": tmp_path / "out.xyz",
        "directory": tmp_path / "dir.png",
        "file_parent": tmp_path / "file" / "out.png",
        "proc": "/proc/histocolor-test/out.png",
    }[case]
    with pytest.raises(HistocolorError) as excinfo:
        check_output_path(target)
    assert_user_error(excinfo, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "file"]


# ---------------------------------------------------------------------------- to_uint (histocolor.dtypes)


def test_to_uint_output_round_trips_through_png(tmp_path):
    rgb = to_uint(RNG.random((5, 6, 3)), np.uint16)
    write_image(tmp_path / "f.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "f.png").rgb, rgb)


def test_module_has_no_stray_environment_effects():
    # Reading must never have switched on Pillow's truncated-image tolerance.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert os.path.basename(imageio.__file__) == "imageio.py"


def test_tifffile_messages_become_one_warning_naming_the_file():
    import logging

    from histocolor.imageio import tifffile_messages_as_warnings

    with pytest.warns(UserWarning, match=r"'odd\.tif': invalid tag 12345") as caught:
        with tifffile_messages_as_warnings("odd.tif"):
            logging.getLogger("tifffile").warning("invalid tag 12345\nmore detail")
    assert len(caught) == 1 and "more detail" not in str(caught[0].message)


def test_multi_frame_inputs_say_which_frame_they_use(tmp_path):
    from PIL import Image

    from histocolor.imageio import read_image

    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="3 frames .* using the first"):
        image = read_image(tmp_path / "moving.gif")
    assert image.rgb.shape == (6, 8, 3) and image.rgb[0, 0, 0] > 200  # the first (red) frame
