"""Property-based tests (hypothesis): the CSV reader, colour-coded label maps, image round trips."""

import csv
import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from histocolor.cli import read_pairs
from histocolor.imageio import read_image, write_image
from histocolor.regions import colour_labels

# Cells as users type them: any printable text (csv quoting carries commas, quotes and newlines).
_CELL = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_ROW = st.fixed_dictionaries({"source": _CELL, "reference": _CELL, "output": _CELL,
                              "source_mask": _CELL, "reference_mask": _CELL})
_PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_PROFILE
@given(rows=st.lists(_ROW, min_size=1, max_size=6))
def test_pairs_csv_reads_back_every_row_and_cell(tmp_path, rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "pairs.csv"
    path.write_text(text.getvalue(), encoding="utf-8")
    read = read_pairs(path)
    assert len(read) == len(rows)

    def cells(row) -> dict:
        return {"source": row.source, "reference": row.reference, "output": row.output,
                "source_mask": row.masks[0], "reference_mask": row.masks[1]}

    for given_row, row in zip(rows, read):
        for key, value in given_row.items():
            value = value.strip()
            assert cells(row)[key] == (tmp_path / value if value else None)  # relative to the CSV, empty is none
    # A row may not write a file an earlier row writes, nor an input of its own or an earlier row.
    written, inputs = set(), set()
    for row in read:
        inputs |= {path.resolve() for key, path in cells(row).items() if key != "output" and path}
        target = row.output and row.output.resolve()
        refused = target is not None and (target in written or target in inputs)
        assert bool(row.refused) == refused
        if target is not None and not refused:
            written.add(target)


_COLOURS = st.lists(st.tuples(*(st.integers(0, 255),) * 3), min_size=1, max_size=5, unique=True)


@_PROFILE
@given(colours=_COLOURS, seed=st.integers(0, 2**31 - 1))
def test_one_colour_has_one_label_in_both_masks(colours, seed):
    rng = np.random.default_rng(seed)
    palette = np.array(colours, np.uint8)
    first = palette[rng.integers(0, len(palette), (12, 16))]
    second = palette[rng.integers(0, len(palette), (9, 11))]
    labels = colour_labels(first, second)
    for colour in palette:
        found = [lab[(image == colour).all(-1)] for image, lab in zip((first, second), labels)]
        values = set(np.concatenate(found).tolist())
        assert len(values) <= 1  # wherever it is, in either mask
    # Colours far apart (more than twice the snap distance) that both hold a real share are different regions.
    present = [c for c in palette if (first == c).all(-1).mean() >= 0.05]
    for a in present:
        for b in present:
            if np.linalg.norm(a.astype(float) - b) > 60:
                label_a = labels[0][(first == a).all(-1)][0]
                label_b = labels[0][(first == b).all(-1)][0]
                assert label_a != label_b


@_PROFILE
@given(
    image=st.one_of(
        arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([3, 4]))),
        arrays(np.uint16, st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([3, 4]))),
    ),
    extension=st.sampled_from([".png", ".tif"]),
)
def test_lossless_images_round_trip_exactly(tmp_path, image, extension):
    path = tmp_path / f"image{extension}"
    alpha = image[..., 3] if image.shape[-1] == 4 else None
    write_image(path, np.ascontiguousarray(image[..., :3]), None if alpha is None else np.ascontiguousarray(alpha))
    read = read_image(path)
    assert read.rgb.dtype == image.dtype and np.array_equal(read.rgb, image[..., :3])
    if alpha is None:
        assert read.alpha is None
    else:
        assert np.array_equal(read.alpha, alpha)
