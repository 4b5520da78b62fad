"""Looks as ``.cube`` 3D LUT files, the format DaVinci Resolve, Premiere, Photoshop, ffmpeg
and OBS read. Tables are histocolor's ``(S, S, S, 3)`` float32 arrays indexed ``[r, g, b]``
over sRGB-encoded values in [0, 1] (the tool's working space: apply the file to
sRGB-encoded footage).

A plain 3D table on [0, 1] (what histocolor writes, and what most tools write) is read and
written here, in numpy: colour-science takes over a second to import, which a shell loop of
``apply-lut`` would pay per file. Everything else a .cube may hold (a 1D LUT, a shaper with a
3D LUT, another domain) goes through colour-science (``colour.read_LUT``), and the tests
check the plain path against it.
"""

from pathlib import Path

import numpy as np

from histocolor.atomic import atomic_path
from histocolor.colormap import Look
from histocolor.errors import HistocolorError, first_line
from histocolor.lut import DEFAULT_LUT_SIZE, identity_lut

# A .cube that is not a 3D table on [0, 1] (a 1D LUT, a shaper plus a 3D LUT, another
# domain) is tabulated through colour-science on a grid of this size.
_RESAMPLE_SIZE = 33


def check_cube_path(path) -> Path:
    """A .cube name in a writable place (checked before any work)."""
    from histocolor.imageio import check_writable

    path = Path(path)
    if path.suffix.lower() != ".cube":
        raise HistocolorError(f"a LUT file needs the .cube extension, got '{path.name}'")
    return check_writable(path)


def write_cube(path, lut: np.ndarray, title: str = "histocolor look", overwrite: bool = True) -> Path:
    """Write ``lut`` ``(S, S, S, 3)`` as a .cube file, atomically (a temporary file, then a rename;
    without ``overwrite``, never over a file that exists).

    The rows run with red fastest, then green, then blue (the format's order), 7 decimals.
    """
    path = check_cube_path(path)
    table = np.asarray(lut, dtype=np.float64)
    if table.ndim != 4 or table.shape[-1] != 3 or len(set(table.shape[:3])) != 1:
        raise ValueError(f"expected an (S, S, S, 3) LUT, got shape {table.shape}")
    rows = table.transpose(2, 1, 0, 3).reshape(-1, 3)  # [b, g, r] in C order: red fastest
    title = title.replace('"', "'")
    with atomic_path(path, ".cube", replace=overwrite) as temporary, open(temporary, "w", encoding="utf-8") as stream:
        stream.write(f'TITLE "{title}"\nLUT_3D_SIZE {table.shape[0]}\n')
        np.savetxt(stream, rows, fmt="%.7f")
    return path


def _read_plain_cube(path: Path) -> np.ndarray | None:
    """The table of a plain 3D .cube on [0, 1], ``(S, S, S, 3)`` float64; None for any other content."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    size, start = None, len(lines)
    for index, line in enumerate(lines):
        keyword, *values = line.split()
        if keyword[0] in "0123456789+-.":
            start = index
            break
        try:
            if keyword == "LUT_3D_SIZE" and len(values) == 1:
                size = int(values[0])
            elif keyword in ("DOMAIN_MIN", "DOMAIN_MAX") and len(values) == 3:
                if [float(v) for v in values] != [float(keyword == "DOMAIN_MAX")] * 3:
                    return None
            elif keyword != "TITLE":
                return None  # a 1D table, a shaper, a keyword of another tool: colour-science's case
        except ValueError:
            return None
    if size is None or size < 2:
        return None
    try:
        values = np.array(" ".join(lines[start:]).split(), dtype=np.float64)
    except ValueError:
        return None
    if values.size != 3 * size**3:
        return None
    return values.reshape(size, size, size, 3).transpose(2, 1, 0, 3)


def read_cube(path) -> np.ndarray:
    """The 3D LUT in a .cube file as ``(S, S, S, 3)`` float32 over [0, 1], indexed [r, g, b].

    Any other content colour-science reads from a .cube (a 1D LUT, a 1D shaper with a 3D
    LUT, a domain other than [0, 1]) is tabulated on a 33^3 grid through colour-science's
    own application.

    Example:
        >>> write_cube("/tmp/identity.cube", identity_lut(3)).name
        'identity.cube'
        >>> read_cube("/tmp/identity.cube").shape
        (3, 3, 3, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise HistocolorError(f"LUT file '{path}' does not exist")
    try:
        table = _read_plain_cube(path)
        if table is None:
            import colour

            lut = colour.read_LUT(str(path))
            unit_domain = isinstance(lut, colour.LUT3D) and np.array_equal(lut.domain, [[0, 0, 0], [1, 1, 1]])
            table = lut.table if unit_domain else lut.apply(identity_lut(_RESAMPLE_SIZE).astype(np.float64))
    except Exception as error:  # colour-science raises many kinds on a malformed file
        raise HistocolorError(f"cannot read LUT '{path}': {first_line(error) or type(error).__name__}") from None
    table = np.asarray(table, dtype=np.float32)
    if table.ndim != 4 or table.shape[-1] != 3:
        raise HistocolorError(f"cannot read LUT '{path}': not a colour LUT (table shape {table.shape})")
    if not np.all(np.isfinite(table)):
        raise HistocolorError(f"LUT '{path}' holds NaN or infinite values")
    return np.clip(table, 0.0, 1.0)


def look_paths(path, look: Look) -> list[Path]:
    """Where :func:`save_look` writes ``look``: ``path`` itself for a global look; by regions
    ``NAME-region-L.cube`` per source region (labels joined by ``+``), ``NAME-rest.cube`` and
    ``NAME-labels.png``, the source's label map that says which region is where."""
    path = Path(path)
    if look.is_global:
        return [path]
    stem = path.with_suffix("")
    regions = [Path(f"{stem}-region-{'+'.join(map(str, group))}.cube") for group in look.labels]
    return [*regions, Path(f"{stem}-rest.cube"), Path(f"{stem}-labels.png")]


def save_look(path, look: Look, size: int = DEFAULT_LUT_SIZE, overwrite: bool = True) -> list[Path]:
    """Write ``look`` as .cube files (see :func:`look_paths`) and return their paths (without
    ``overwrite``, never over files that exist).

    A region that owns no pixel (and so has no colour map) gets the rest's map. The
    feathered seams are not part of a .cube: another tool blends the region LUTs through
    its own masks, made from the label map.
    """
    from histocolor.segment.base import write_labels

    paths = look_paths(path, look)
    rest = look.maps[-1]
    for target, colour_map in zip(paths, look.maps):
        write_cube(target, (colour_map or rest).to_lut(size), title=f"histocolor {Path(target).stem}",
                   overwrite=overwrite)
    if not look.is_global:
        write_labels(paths[-1], look.label_map, overwrite)
    return paths
