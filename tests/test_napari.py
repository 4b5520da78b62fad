"""The napari plugin in a real (offscreen, under Xvfb) viewer: sample, widgets, buttons, errors."""

import re
import time

import numpy as np
import pytest

pytest.importorskip("napari", reason="the napari extra is not installed")

from napari.layers import Image  # noqa: E402
from napari.utils.notifications import NotificationSeverity, notification_manager  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402

import torch  # noqa: E402

from histocolor.metrics import sliced_wasserstein  # noqa: E402
from histocolor.model import from_pretrained  # noqa: E402
from histocolor.napari._layers import describe  # noqa: E402
from histocolor.model.io import DEFAULT_WEIGHTS  # noqa: E402

pytestmark = pytest.mark.napari

PLUGIN = "napari-histocolor"


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "source-and-reference")
    return viewer


@pytest.fixture
def notices():
    """Notifications dispatched during the test, as (severity, message)."""
    start = len(notification_manager.records)
    return lambda: [(n.severity, str(n.message)) for n in notification_manager.records[start:]]


@pytest.fixture
def dock(qtbot):
    """Adds a plugin dock widget; at the end waits for its worker, so no thread outlives the test."""
    docked = []

    def add(viewer, title):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, title)
        docked.append(widget)
        return widget

    yield add
    for widget in docked:
        qtbot.waitUntil(lambda widget=widget: widget.worker is None and getattr(widget, "preview_worker", None) is None,
                        timeout=300_000)


def _wait_idle(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_sample_opens_source_and_reference(viewer):
    assert [layer.name for layer in viewer.layers] == ["source", "reference"]
    source, reference = viewer.layers
    # Side by side: a result over the source is never peeked at by the (larger) reference under it.
    assert reference.extent.world[0][-1] > source.extent.world[1][-1]
    assert all(isinstance(layer, Image) and layer.rgb and layer.data.dtype == np.uint8 for layer in viewer.layers)


def test_transfer_button_adds_the_result_over_the_source(viewer, dock, qtbot):
    source, reference = viewer.layers["source"], viewer.layers["reference"]
    source.scale, source.translate = (0.5, 0.5), (10.0, -4.0)
    widget = dock(viewer, "Color transfer")
    widget.source.value, widget.reference.value = source, reference
    assert widget.method.value == "analogy"
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    result = viewer.layers["source ← reference (analogy)"]
    assert result.data.shape == source.data.shape and result.data.dtype == np.uint8
    assert tuple(result.scale) == (0.5, 0.5) and tuple(result.translate) == (10.0, -4.0)
    before = sliced_wasserstein(source.data, reference.data)
    assert sliced_wasserstein(result.data, reference.data) < 0.5 * before

    widget.method.value = "mkl"
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    mkl = viewer.layers["source ← reference (mkl)"].data
    assert sliced_wasserstein(mkl, reference.data) < before / 2
    widget.strength.value = 0.5
    qtbot.waitUntil(lambda: widget.preview_worker is None)
    widget.run_button.native.click()  # same inputs, "replace" on: the layer is updated
    _wait_idle(qtbot, widget)
    assert len(viewer.layers) == 4
    half = viewer.layers["source ← reference (mkl, 50 %)"].data  # the name carries the strength
    # Strength is a linear blend in RGB of the source and the full change (transfer._apply_mapping),
    # rounded once: halfway between the source and the strength-1 result, within one level.
    halfway = (source.data.astype(np.float64) + mkl.astype(np.float64)) / 2
    assert half.dtype == np.uint8 and np.abs(half - halfway).max() <= 1
    assert np.abs(mkl.astype(np.float64) - source.data).mean() > 10  # so that the blend is far from either end
    widget.replace.value = False
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    assert len(viewer.layers) == 5


@pytest.mark.parametrize("title", ["Color transfer", "Regions"])
def test_pickers_start_on_two_different_images(viewer, dock, title, make_napari_viewer):
    widget = dock(viewer, title)
    assert widget.source.value is viewer.layers["source"]
    assert widget.reference.value is viewer.layers["reference"]
    # A widget docked before the images are opened separates them as they arrive.
    empty = make_napari_viewer()
    later = dock(empty, title)
    empty.add_image(viewer.layers["source"].data, name="first")
    empty.add_image(viewer.layers["reference"].data, name="second")
    assert later.source.value is empty.layers["first"] and later.reference.value is empty.layers["second"]
    # A choice made afterwards stays, even the same image twice (Regions may map one region to another).
    later.reference.value = empty.layers["first"]
    empty.add_labels(np.zeros((8, 8), dtype=np.int32), name="painted")
    empty.add_image(viewer.layers["reference"].data, name="third")
    assert later.reference.value is empty.layers["first"]


def test_untouched_widget_transfers_the_reference_colours(viewer, dock, qtbot):
    """The widget as a user first sees it: no picker or setting changed, just "Transfer"."""
    widget = dock(viewer, "Color transfer")
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    source, reference = viewer.layers["source"].data, viewer.layers["reference"].data
    result = viewer.layers["source ← reference (analogy)"].data
    assert sliced_wasserstein(result, reference) < 0.5 * sliced_wasserstein(source, reference)


def test_the_widgets_network_beats_its_alignment_on_held_out_views(make_napari_viewer, dock, qtbot, held_out_views,
                                                                  alignment_alone):
    """Through the widget, the shipped network's learned part must show: the same held-out views
    transferred with its alignment alone (residual heads at zero) land further from the truth."""
    from histocolor.metrics import ciede2000

    viewer = make_napari_viewer()
    widget = dock(viewer, "Color transfer")
    widget.match.native.click()  # the views share pixels with their sources: the network alone here
    assert not widget.match.value
    scores = {}
    for weights in (DEFAULT_WEIGHTS, alignment_alone):
        widget.weights.value = weights
        errors = []
        for index, (source, reference, truth) in enumerate(held_out_views):
            widget.source.value = viewer.add_image(source, name=f"view {index}")
            widget.reference.value = viewer.add_image(reference, name=f"view {index} reference")
            widget.run_button.native.click()
            _wait_idle(qtbot, widget)
            errors.append(ciede2000(viewer.layers[-1].data, truth))
            viewer.layers.clear()
        scores[weights] = np.mean(errors)
    assert scores[DEFAULT_WEIGHTS] < 0.995 * scores[alignment_alone]


def test_the_dock_says_when_the_reference_is_an_edited_copy_and_the_match_can_be_turned_off(
        make_napari_viewer, dock, qtbot, sample_pair):
    """Issue 38: an edited copy of the source gives its exact look, and the status line says so;
    the checkbox turns the match off (the network's transfer, and the line says that too)."""
    source = sample_pair[0]
    edited = np.clip(source.astype(np.float32) * np.array([1.15, 1.0, 0.8]) + 10, 0, 255).astype(np.uint8)
    viewer = make_napari_viewer()
    widget = dock(viewer, "Color transfer")
    widget.source.value = viewer.add_image(source, name="photo")
    widget.reference.value = viewer.add_image(np.ascontiguousarray(edited[40:360, 600:60:-1]), name="edited copy")
    assert widget.match.value and widget.found.value == ""
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    assert widget.found.value.startswith("same photo: ") and "% of the source matched" in widget.found.value
    result = viewer.layers["photo ← edited copy (analogy)"].data
    assert np.abs(result.astype(int) - edited.astype(int)).mean() < 1.5
    widget.match.native.click()
    assert not widget.match.value
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    assert widget.found.value == "shared pixels not looked for"
    assert np.abs(viewer.layers["photo ← edited copy (analogy)"].data.astype(int) - edited.astype(int)).mean() > 3.0
    widget.match.native.click()
    widget.reference.value = viewer.add_image(sample_pair[1], name="rocket")
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    assert widget.found.value == "no shared pixels: the network's transfer"


def test_weights_of_a_transformer_and_attention_variant_run_in_the_widget(viewer, dock, qtbot, tmp_path):
    """Issue 13's variants load from a weights folder in the widget, and give the library's result."""
    from histocolor.model import AnalogyConfig, HistogramAnalogy
    from histocolor.model.cross_attention import CrossAttention
    from histocolor.engine import ColorTransfer

    config = AnalogyConfig(encoder="transformer", attention="bottleneck+decoder", transformer={"depth": 1, "width": 16,
                           "heads": 2}, feature_size=16, ctn_width=8, ctn_depth=2, alignment={"method": "none"})
    torch.manual_seed(0)
    model = HistogramAnalogy(config)
    with torch.no_grad():  # an untrained network changes nothing: move its heads and attention outputs
        for module in model.modules():
            if isinstance(module, CrossAttention):
                module.out.weight.normal_(std=0.1)
        for head in model.ctn.heads:
            head.weight.normal_(std=0.05)
    model.save_pretrained(tmp_path / "variant")
    widget = dock(viewer, "Color transfer")
    widget.source.value, widget.reference.value = viewer.layers["source"], viewer.layers["reference"]
    widget.weights.value = tmp_path / "variant"
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    result = viewer.layers["source ← reference (analogy)"].data
    source, reference = viewer.layers["source"].data, viewer.layers["reference"].data
    expected = ColorTransfer(weights=tmp_path / "variant", device="cpu")(source, reference).image
    assert np.array_equal(result, expected)
    assert np.abs(result.astype(int) - source).mean() > 2.0


def test_the_same_layer_twice_gives_a_notice_not_a_copy(viewer, dock, notices):
    widget = dock(viewer, "Color transfer")
    source = viewer.layers["source"]
    widget.source.value = widget.reference.value = source
    widget.run_button.native.click()
    assert widget.worker is None and len(viewer.layers) == 2
    assert any("same layer" in message for _, message in notices())


def test_pickers_follow_the_layer_list_and_take_16_bit_grayscale_and_rgba(viewer, dock, qtbot):
    widget = dock(viewer, "Color transfer")
    rng = np.random.default_rng(0)
    gray = viewer.add_image(rng.integers(0, 65536, (48, 64), dtype=np.uint16), name="gray16")
    rgba = np.dstack([viewer.layers["reference"].data, np.full(viewer.layers["reference"].data.shape[:2], 255, np.uint8)])
    reference = viewer.add_image(rgba, name="rgba", rgb=True)
    viewer.add_labels(np.zeros((8, 8), dtype=np.int32), name="not an image")
    assert [layer.name for layer in widget.source.choices] == ["source", "reference", "gray16", "rgba"]
    widget.source.value, widget.reference.value, widget.method.value = gray, reference, "reinhard"
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    result = viewer.layers["gray16 ← rgba (reinhard)"].data
    assert result.shape == (48, 64, 3) and result.dtype == np.uint16
    assert sliced_wasserstein(result, rgba[..., :3]) < sliced_wasserstein(np.dstack([gray.data] * 3), rgba[..., :3])


def test_float_and_int16_layers_come_back_in_their_own_range(viewer, dock, qtbot):
    widget = dock(viewer, "Color transfer")
    rgb = viewer.layers["source"].data.astype(np.float32)
    scaled = viewer.add_image(rgb * 4.0, name="float 0-1020", rgb=True, contrast_limits=(0, 1020))
    signed = viewer.add_image((rgb[..., 1] * 100 - 12000).astype(np.int16), name="int16", contrast_limits=(-12000, 13500))
    widget.reference.value, widget.method.value = viewer.layers["reference"], "mkl"
    for layer in (scaled, signed):
        widget.source.value = layer
        widget.run_button.native.click()
        _wait_idle(qtbot, widget)
    floats = viewer.layers["float 0-1020 ← reference (mkl)"].data
    assert floats.dtype == np.float32 and floats.max() > 300 and 0 <= floats.min() and floats.max() <= 1020
    integers = viewer.layers["int16 ← reference (mkl)"].data
    assert integers.dtype == np.int16 and integers.min() < -5000 and integers.shape == (*signed.data.shape, 3)
    # the result is the transfer of what the viewer shows: the same as the 8-bit source's
    expected = viewer.layers["source"].data.astype(np.float32)
    from histocolor.engine import transfer

    eight_bit = transfer(expected.astype(np.uint8), viewer.layers["reference"].data, "mkl").image.astype(np.float32)
    assert np.abs(floats / 4.0 - eight_bit).mean() < 1.5


def test_transfer_errors_become_notifications(viewer, dock, qtbot, notices):
    widget = dock(viewer, "Color transfer")
    labels = viewer.add_labels(np.zeros((32, 32), dtype=np.int32), name="masks")
    assert widget.transfer(labels, viewer.layers["reference"]) is None
    stack = viewer.add_image(np.zeros((5, 32, 32), dtype=np.uint8), name="stack")
    widget.source.value, widget.reference.value = stack, viewer.layers["reference"]
    widget.run_button.native.click()
    widget.weights.value = "/nonexistent/weights"
    widget.source.value = viewer.layers["source"]
    widget.run_button.native.click()  # fails in the worker: still a notification, no exception
    _wait_idle(qtbot, widget)
    if not torch.cuda.is_available():
        widget.weights.value, widget.device.value = DEFAULT_WEIGHTS, "cuda"
        widget.run_button.native.click()
        _wait_idle(qtbot, widget)
    errors = [message for severity, message in notices() if severity == NotificationSeverity.ERROR]
    assert "Labels layer" in errors[0] and "pick an Image layer" in errors[0]
    assert "3-D stack" in errors[1]
    assert "/nonexistent/weights" in errors[2] and "\n" not in errors[2]
    if torch.cuda.is_available():  # the CUDA request was not made: three errors only
        assert len(errors) == 3
    else:
        assert len(errors) == 4 and "CUDA" in errors[3]
    assert len(viewer.layers) == 4  # no result layer was added


SLOW_ENGINE_SECONDS = 1.5
MAX_UI_STALL_SECONDS = 0.5


def test_transfer_runs_off_the_ui_thread_and_keeps_the_viewer_responsive(viewer, dock, qtbot, notices, monkeypatch):
    """The transfer runs in a worker thread: the UI loop keeps ticking while a slow engine works.

    The engine the widget builds is wrapped: building it (loading the model) records its thread;
    each call records the thread it runs in, holds up for SLOW_ENGINE_SECONDS (a stand-in for a
    slow machine), then runs the real transfer. Run on the UI thread, the call would stall the
    loop for at least that long.
    """
    import threading

    from histocolor.napari import transfer_widget

    real_engine = transfer_widget.ColorTransfer
    built, calls = [], []

    class SlowEngine(real_engine):
        def __init__(self, *args, **kwargs):
            built.append(threading.get_ident())
            super().__init__(*args, **kwargs)

        def fit(self, *args, **kwargs):  # the widget fits the look, then applies it
            started = time.perf_counter()
            time.sleep(SLOW_ENGINE_SECONDS)
            calls.append((threading.get_ident(), started, time.perf_counter()))
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(transfer_widget, "ColorTransfer", SlowEngine)
    # About a megapixel: well past the network's working size, so the change is carried to full size.
    big = np.ascontiguousarray(np.repeat(np.repeat(viewer.layers["source"].data, 2, axis=0), 2, axis=1))
    source = viewer.add_image(big, name="big", rgb=True)
    widget = dock(viewer, "Color transfer")
    widget.source.value, widget.reference.value = source, viewer.layers["reference"]
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    widget.run_button.native.click()
    assert widget.worker is not None and not widget.run_button.enabled
    widget.run_button.native.click()  # a second click while running does nothing
    assert widget.transfer(source, viewer.layers["reference"]) is None
    assert any("already running" in message for _, message in notices())
    _wait_idle(qtbot, widget, timeout=300_000)  # generous: a loaded machine slows the real transfer
    timer.stop()
    assert len(built) == len(calls) == 1  # one transfer only, for the three requests
    thread, started, slept = calls[0]
    # The UI loop's longest stall while the engine held up: from its start to the first tick,
    # between ticks, and from the last tick to its end (all of it if no tick came).
    gaps = np.diff([started, *(tick for tick in ticks if started < tick < slept), slept])
    print(f"engine held up {slept - started:.2f} s; longest UI stall meanwhile {gaps.max():.3f} s")
    assert threading.get_ident() == threading.main_thread().ident
    assert thread != threading.get_ident() and built[0] != threading.get_ident()
    assert slept - started >= SLOW_ENGINE_SECONDS and gaps.max() < MAX_UI_STALL_SECONDS
    result = viewer.layers["big ← reference (analogy)"].data
    assert result.shape == big.shape and result.dtype == np.uint8
    reference = viewer.layers["reference"].data
    assert sliced_wasserstein(result, reference) < 0.5 * sliced_wasserstein(big, reference)
    assert len(viewer.layers) == 4  # one result only


def test_compare_widget_fills_metrics_and_histograms(viewer, dock, qtbot, notices):
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.metrics import peak_signal_noise_ratio

    from histocolor.training.data.retouch import RetouchStyle, apply_style
    from histocolor.napari.compare_widget import viewer_grid
    from histocolor.engine import transfer

    source, reference = viewer.layers["source"], viewer.layers["reference"]
    # The ground truth: the source under a known grade. One result aims at it (the source matched to
    # the graded colours, so close to it); the other at the unrelated reference (far from it).
    style = RetouchStyle(exposure=1.2, saturation=0.6, white_balance=(1.1, 1.0, 0.9))
    graded = apply_style(torch.from_numpy(source.data).permute(2, 0, 1).float() / 255, style)
    truth = viewer.add_image((graded.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), name="graded source")
    result = viewer.add_image(transfer(source.data, reference.data, "mkl").image, name="mkl result")
    near = viewer.add_image(transfer(source.data, truth.data, "mkl").image, name="matched to the grade")
    compared = [source, result, near]
    widget = dock(viewer, "Compare")
    from histocolor.napari.compare_widget import PLACEHOLDER

    assert widget.figure.axes[0].texts[0].get_text() == PLACEHOLDER  # not a blank box before the first run
    widget.reset_choices()
    widget.layers.value = compared
    widget.source.value, widget.reference.value, widget.truth.value = source, reference, truth
    widget.compare_button.native.click()
    assert widget.run() is None and any("already running" in message for _, message in notices())
    _wait_idle(qtbot, widget)
    table = widget.table
    assert table.rowCount() == 3
    assert [table.verticalHeaderItem(row).toolTip() for row in range(3)] == [layer.name for layer in compared]
    cell = lambda row, column: float(table.item(row, column).text())  # noqa: E731
    assert cell(1, 0) < cell(0, 0) / 2  # the MKL result is closer to the reference
    assert cell(0, 1) == 1.0 and cell(1, 1) < 1.0  # gradient SSIM to the source
    # PSNR and mean ΔE2000 against the truth, computed here with scikit-image (shown to 4 significant digits)
    for row, layer in enumerate(compared):
        expected_psnr = peak_signal_noise_ratio(truth.data, layer.data, data_range=255)
        expected_delta = deltaE_ciede2000(rgb2lab(layer.data), rgb2lab(truth.data)).mean()
        assert cell(row, 2) == pytest.approx(expected_psnr, rel=1e-3)
        assert cell(row, 3) == pytest.approx(expected_delta, rel=1e-3)
    assert cell(2, 2) > cell(0, 2) + 5 and cell(2, 2) > cell(1, 2) + 5  # matched to the grade: the closest
    assert cell(2, 3) < cell(0, 3) / 2 and cell(2, 3) < cell(1, 3) / 2
    assert len(widget.figure.axes) == 4  # the L curves and one (a, b) density per layer
    assert len(widget.figure.axes[0].lines) == 3
    assert not any(table.isColumnHidden(column) for column in range(4))
    curves = widget.figure.axes[0]
    widget.canvas.draw()
    legend = curves.get_legend().get_window_extent()
    assert legend.y1 <= curves.get_window_extent().y0  # under the curves, not over them
    densities = widget.figure.axes[1:]
    assert all(axes.get_shared_x_axes().joined(densities[0], axes) for axes in densities)  # shared axes
    assert len({round(axes.get_position().x0, 2) for axes in densities}) == 2  # two a row, not thumbnails
    assert widget.canvas.minimumHeight() >= 600  # a row of densities ~190 px high each (the dock scrolls)
    widget.grid_button.native.click()
    assert viewer_grid(viewer).enabled and not reference.visible and not truth.visible
    assert all(layer.visible for layer in compared)
    # Without a ground truth the PSNR and ΔE2000 columns are hidden, not empty.
    widget.truth.value = None
    widget.compare_button.native.click()
    _wait_idle(qtbot, widget)
    assert [table.isColumnHidden(column) for column in range(4)] == [False, False, True, True]


def test_multiscale_layers_are_transferred_at_full_resolution(viewer, dock, qtbot, notices, monkeypatch):
    from histocolor.napari import _layers, transfer_widget
    from histocolor.engine import transfer

    real_engine, received = transfer_widget.ColorTransfer, []

    class RecordingEngine(real_engine):
        def fit(self, source, reference, **options):  # the widget fits the look, then applies it
            received.append((np.shape(source), np.shape(reference)))
            return super().fit(source, reference, **options)

    monkeypatch.setattr(transfer_widget, "ColorTransfer", RecordingEngine)
    full_source, full_reference = viewer.layers["source"].data, viewer.layers["reference"].data
    pyramid = lambda image: [image, image[::2, ::2], image[::4, ::4]]  # noqa: E731
    source = viewer.add_image(pyramid(full_source), name="source pyramid", rgb=True, multiscale=True)
    reference = viewer.add_image(pyramid(full_reference), name="reference pyramid", rgb=True, multiscale=True)
    source.scale = (2.0, 2.0)
    assert source.multiscale and reference.multiscale
    widget = dock(viewer, "Color transfer")
    widget.source.value, widget.reference.value, widget.method.value = source, reference, "mkl"
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    layer = viewer.layers["source pyramid ← reference pyramid (mkl)"]
    assert not layer.multiscale and tuple(layer.scale) == (2.0, 2.0)
    assert received == [(full_source.shape, full_reference.shape)]  # both pyramids' level 0
    expected = transfer(full_source, full_reference, "mkl").image
    assert layer.data.shape == full_source.shape and np.abs(layer.data.astype(int) - expected).max() <= 1

    # past the pixel limit a multiscale layer is refused with a notice (limit lowered to 0.1 MP here)
    monkeypatch.setattr(_layers, "MAX_MULTISCALE_PIXELS", 100_000)
    widget.run_button.native.click()
    assert widget.worker is None and len(viewer.layers) == 5
    errors = [message for severity, message in notices() if severity == NotificationSeverity.ERROR]
    assert len(errors) == 1 and "source pyramid" in errors[0] and "600x400 pixels at full resolution" in errors[0]


def _photo_folder(tmp_path, viewer):
    from PIL import Image as PILImage

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("source", "reference"):
        PILImage.fromarray(viewer.layers[name].data).resize((160, 120)).save(folder / f"{name}.png")
    return folder


def _fine_tune_run(widget, qtbot, folder, weights, steps, out):
    """Fill in the Fine-tune form, press Start and wait for the run to end."""
    widget.folder.value, widget.weights.value = folder, weights
    widget.steps.value, widget.output.value = steps, out
    widget.start_button.native.click()
    _wait_idle(qtbot, widget)


@pytest.mark.train
def test_fine_tune_trains_loadable_weights_and_hands_them_to_transfer(viewer, dock, qtbot, tmp_path, tiny_weights):
    transfer_widget = dock(viewer, "Color transfer")
    widget = dock(viewer, "Fine-tune")
    _fine_tune_run(widget, qtbot, _photo_folder(tmp_path, viewer), tiny_weights, 3, tmp_path / "tuned")
    assert widget.trained == tmp_path / "tuned"
    model = from_pretrained(tmp_path / "tuned")
    assert model.config == from_pretrained(tiny_weights).config
    assert [step for step, _ in widget._losses] == [1, 2, 3] and widget.bar.value == 3
    assert len(widget.figure.axes[0].lines[0].get_xdata()) == 3
    assert widget.status.value == f"done: 3 of 3 steps; weights saved to {tmp_path / 'tuned'}"
    assert "synthetic retouches" in widget.about.value  # it says what it trains on
    widget.use_button.native.click()
    assert transfer_widget.weights.value == tmp_path / "tuned" and transfer_widget.method.value == "analogy"


@pytest.mark.train
def test_a_finished_fine_tune_says_done_even_when_its_last_step_signal_comes_late(
        viewer, dock, qtbot, tmp_path, tiny_weights):
    widget = dock(viewer, "Fine-tune")
    # The UI hears of the last step after the run's result (queued signals race the worker's end).
    widget.relay.stepped.disconnect()
    widget.relay.stepped.connect(lambda update: None if update.step == update.steps else widget._stepped(update))
    out = tmp_path / ("a-long-folder-name-" * 12)
    _fine_tune_run(widget, qtbot, _photo_folder(tmp_path, viewer), tiny_weights, 2, out)
    assert widget.status.value == f"done: 2 of 2 steps; weights saved to {out}"
    assert widget.bar.value == 2
    # The long status line wraps: it asks for no more width than the dock has.
    assert widget.status.native.minimumSizeHint().width() < 450


@pytest.mark.train
def test_a_second_fine_tune_never_replaces_the_first(viewer, dock, qtbot, tmp_path, tiny_weights, notices):
    widget = dock(viewer, "Fine-tune")
    _fine_tune_run(widget, qtbot, _photo_folder(tmp_path, viewer), tiny_weights, 1, tmp_path / "tuned")
    first = (tmp_path / "tuned" / "model.safetensors").read_bytes()
    checkpoints = sorted(path.name for path in (tmp_path / "tuned").iterdir())
    widget.start_button.native.click()  # same output folder
    _wait_idle(qtbot, widget)
    assert (tmp_path / "tuned" / "model.safetensors").read_bytes() == first
    assert sorted(path.name for path in (tmp_path / "tuned").iterdir()) == checkpoints
    assert widget.trained == tmp_path / "tuned-2" and (tmp_path / "tuned-2" / "model.safetensors").is_file()
    assert widget.status.value.endswith(f"weights saved to {tmp_path / 'tuned-2'}")
    assert any("already holds a run" in message for _, message in notices())


def test_fine_tune_lists_the_open_layers_at_once_and_says_when_there_are_none(make_napari_viewer, dock, viewer):
    widget = dock(viewer, "Fine-tune")  # the sample pair was open before the dock
    assert list(widget.layers.choices) == [viewer.layers["source"], viewer.layers["reference"]]
    assert widget.layers_hint.native.isHidden()
    empty = make_napari_viewer(show=True)
    other = dock(empty, "Fine-tune")
    assert list(other.layers.choices) == [] and not other.layers_hint.native.isHidden()
    empty.add_image(viewer.layers["source"].data, name="photo")
    assert list(other.layers.choices) == [empty.layers["photo"]] and other.layers_hint.native.isHidden()


@pytest.mark.train
def test_fine_tune_on_open_layers_stops_cleanly(viewer, dock, qtbot, tmp_path, tiny_weights, notices):
    widget = dock(viewer, "Fine-tune")
    widget.start_button.native.click()  # no photos yet
    assert any("at least two photos" in message for _, message in notices())
    widget.reset_choices()
    widget.layers.value = [viewer.layers["source"], viewer.layers["reference"]]
    widget.weights.value = tiny_weights
    widget.steps.value = 10_000
    widget.output.value = tmp_path / "stopped"
    widget.start_button.native.click()
    qtbot.waitUntil(lambda: len(widget._losses) >= 2, timeout=60_000)
    assert re.fullmatch(r"step \d+ of 10000, ~\d+ (s|min) left", widget.status.value)
    widget.stop_button.native.click()
    _wait_idle(qtbot, widget)
    steps_done = widget._losses[-1][0]
    assert steps_done < 10_000
    assert (tmp_path / "stopped" / "model.safetensors").is_file()
    assert (tmp_path / "stopped" / "latest").read_text() == f"checkpoint-{steps_done:07d}"
    assert widget.trained == tmp_path / "stopped" and widget.use_button.enabled
    assert widget.status.value == f"stopped at step {steps_done} of 10000; weights saved to {tmp_path / 'stopped'}"
    from_pretrained(tmp_path / "stopped")


def test_qt_binding_is_the_one_asked_for():
    """make test QT=pyqt6 must really run on PyQt6 (and only on it: two bindings in one process break Qt)."""
    import os
    import sys

    import qtpy
    from pytestqt.qt_compat import qt_api

    # Asked for: QT_API (make test sets it, and PYTEST_QT_API alike); else the binding pytest-qt chose.
    asked = os.environ.get("QT_API", qt_api.pytest_qt_api)
    assert qtpy.API_NAME.lower() == asked.lower() == qt_api.pytest_qt_api.lower()
    loaded = [name for name in ("PyQt5", "PyQt6", "PySide2", "PySide6") if f"{name}.QtCore" in sys.modules]
    assert loaded == [qtpy.API_NAME]


def test_out_of_memory_reads_as_advice():
    assert describe(MemoryError()).startswith("out of memory: lower the working size")
    assert describe(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")).startswith("out of memory")
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: 7 GB")
    assert describe(cpu).startswith("out of memory")
    assert describe(ValueError("first line\nsecond line")) == "ValueError: first line"


def _paint_block(layer, top, left, size, label):
    """Paint with napari's brush, stroke by stroke, as a user would."""
    layer.brush_size = 12
    layer.selected_label = label
    for y in range(top, top + size, 6):
        for x in range(left, left + size, 6):
            layer.paint((y, x), label)


@pytest.mark.parametrize("method", ["analogy", "mkl"])
def test_regions_painted_by_hand_take_their_matched_reference_colours(viewer, dock, qtbot, method, notices):
    from scipy.ndimage import binary_erosion
    from skimage.color import rgb2lab

    widget = dock(viewer, "Regions")
    source, reference = viewer.layers["source"], viewer.layers["reference"]
    widget.source.value, widget.reference.value = source, reference
    widget.empty_button.native.click()
    source_labels, reference_labels = viewer.layers["source regions"], viewer.layers["reference regions"]
    assert source_labels.data.shape == source.data.shape[:2] and widget.source_labels.value is source_labels
    _paint_block(source_labels, 20, 20, 90, label=1)
    _paint_block(reference_labels, 10, 10, 60, label=2)  # the reference's dark blue sky, top left
    _paint_block(reference_labels, reference.data.shape[0] - 70, reference.data.shape[1] // 2 - 30, 60, label=1)
    widget.refresh_button.native.click()
    assert widget.table.rowCount() == 1 and widget.target_choices(1).currentText() == "1"  # same label by default
    widget.set_targets(1, [2])  # edit the table: source region 1 takes the sky's colours
    assert widget.region_map() == {0: [], 1: [2]}
    widget.method.value = method
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    result = viewer.layers[f"source ← reference ({method}, regions)"].data
    painted = source_labels.data == 1
    sky = reference_labels.data == 2
    lab_result, lab_source, lab_reference = (rgb2lab(image) for image in (result, source.data, reference.data))
    inside = binary_erosion(painted, iterations=10)  # away from the feathered seam, blended with the rest
    region_mean = lab_result[inside].mean(0)
    assert np.linalg.norm(region_mean - lab_reference[sky].mean(0)) < 5  # took the sky's colours
    assert np.linalg.norm(lab_source[painted].mean(0) - lab_reference[sky].mean(0)) > 25  # far from them before
    from histocolor.engine import transfer

    far = np.zeros_like(painted)
    far[:, 200:] = True  # well away from the painted block and its feathered seam
    overall = transfer(source.data, reference.data, method).image
    assert np.abs(result[far].astype(int) - overall[far]).mean() < 2  # the rest follows the global transfer
    # A reference label the reference does not have is a notification, not a silent global transfer.
    widget.set_targets(1, [99])
    before = result.copy()
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    errors = [message for severity, message in notices() if severity == NotificationSeverity.ERROR]
    assert errors and "99" in errors[-1] and "do not have" in errors[-1]
    assert np.array_equal(viewer.layers[f"source ← reference ({method}, regions)"].data, before)


def test_regions_segment_both_and_errors(viewer, dock, qtbot, notices):
    widget = dock(viewer, "Regions")
    widget.source.value, widget.reference.value = viewer.layers["source"], viewer.layers["reference"]
    widget.segment_button.native.click()
    _wait_idle(qtbot, widget)
    source_labels = viewer.layers["source regions"]
    assert source_labels.data.min() >= 1 and widget.table.rowCount() >= 2  # slic regions, 0 left for erasing
    assert all(widget.table.item(row, 1).text() for row in range(widget.table.rowCount()))
    widget.other_segmenter.value = "deeplab"
    widget.segment_button.native.click()
    _wait_idle(qtbot, widget)
    widget.other_segmenter.value = ""
    viewer.layers["reference regions"].data = np.zeros((10, 10), np.int32)  # not the reference's size
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    errors = [message for severity, message in notices() if severity == NotificationSeverity.ERROR]
    assert "unknown segmenter 'deeplab'" in errors[0]
    assert "masks must match their image's size" in errors[1]
    assert not any("regions)" in layer.name for layer in viewer.layers)


def test_export_lut_saves_the_look_of_the_last_result(viewer, dock, qtbot, tmp_path, notices):
    from histocolor.cube import read_cube
    from histocolor.lut import apply_lut

    widget = dock(viewer, "Color transfer")
    assert not widget.export_button.enabled  # nothing to export before a transfer
    widget.method.value, widget.strength.value = "mkl", 0.6
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    assert widget.export_button.enabled
    written = widget.export_lut(tmp_path / "look")  # the extension is added
    assert written == [tmp_path / "look.cube"]
    result = viewer.layers["source ← reference (mkl, 60 %)"].data
    recoloured = apply_lut(viewer.layers["source"].data, read_cube(written[0]))
    assert np.abs(recoloured.astype(int) - result).mean() < 1.0  # strength included; 17^3 tabulation error only
    assert any("look saved" in message for _, message in notices())
    # An unwritable place is a notification, not a crash.
    assert widget.export_lut("/proc/look.cube") is None
    assert notices()[-1][0] == NotificationSeverity.ERROR


def test_a_time_stack_gets_one_look_for_all_its_frames(viewer, dock, qtbot):
    from histocolor.engine import ColorTransfer
    from histocolor.video import shot_look

    frames = np.stack([np.roll(viewer.layers["source"].data, 40 * index, axis=1) for index in range(4)])
    frames[2, :, :100] = (255, 30, 30)  # one frame differs a lot: a per-frame look would jump there
    stack = viewer.add_image(frames, name="clip", rgb=True)
    widget = dock(viewer, "Color transfer")
    widget.method.value = "mkl"
    widget.transfer(stack, viewer.layers["reference"])
    _wait_idle(qtbot, widget)
    result = viewer.layers["clip ← reference (mkl)"]
    assert result.rgb and result.data.shape == frames.shape
    look = shot_look(ColorTransfer("mkl"), iter(frames), viewer.layers["reference"].data)
    assert all(np.array_equal(result.data[index], look.apply(frames[index])) for index in range(4))
    own = ColorTransfer("mkl")(frames[0], viewer.layers["reference"].data).image
    assert not np.array_equal(result.data[0], own)  # not frame by frame


def test_the_strength_slider_previews_live_without_the_network(viewer, dock, qtbot, monkeypatch):
    """Issue 16: moving the slider re-applies the fitted look (a spy sees no network call), the name
    carries the strength, Before/after hides and shows the result, and Undo brings a replaced one back."""
    from histocolor.model.analogy import HistogramAnalogy

    widget = dock(viewer, "Color transfer")
    widget.run_button.native.click()  # the shipped network, strength 1
    _wait_idle(qtbot, widget)
    full = viewer.layers["source ← reference (analogy)"]
    first = full.data.copy()
    calls = []
    real_forward = HistogramAnalogy.forward
    monkeypatch.setattr(HistogramAnalogy, "forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    widget.strength.value = 0.4
    qtbot.waitUntil(lambda: full.name == "source ← reference (analogy, 40 %)", timeout=30_000)
    qtbot.waitUntil(lambda: widget.preview_worker is None)
    source = viewer.layers["source"].data.astype(float)
    assert calls == []  # no network call: the look was re-applied
    expected = source + 0.4 * (first.astype(float) - source)
    assert np.abs(full.data - expected).max() <= 1.5 and np.abs(full.data.astype(float) - first).mean() > 3
    # Before/after, by the button and by the shortcut.
    widget.before_after_button.native.click()
    assert not full.visible
    widget.before_after_button.native.click()
    assert full.visible
    shortcuts = {str(key): action for key, action in viewer.keymap.items()}
    before_after = next(action for key, action in shortcuts.items() if "B" in key and "Shift" in key)
    before_after(viewer)  # what pressing Shift-B calls
    assert not full.visible
    before_after(viewer)
    # Back at full strength the preview is the result itself; a new run replacing it can be undone.
    widget.strength.value = 1.0
    qtbot.waitUntil(lambda: widget.preview_worker is None and full.name == "source ← reference (analogy)")
    assert np.array_equal(full.data, first)
    widget.working_size.value = 128  # another result under the same name
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    assert calls  # the spy does see the network when it runs
    assert len([layer for layer in viewer.layers if "(analogy" in layer.name]) == 1  # replaced in place
    assert not np.array_equal(full.data, first) and widget.undo_button.enabled
    widget.undo_button.native.click()
    assert np.array_equal(full.data, first) and full.name == "source ← reference (analogy)"
    assert not widget.undo_button.enabled


def test_fine_tune_progress_reads_as_steps_and_time_left():
    from histocolor.napari.finetune_widget import DEFAULT_STEPS, progress_text

    assert progress_text(10, 40, 20.0) == "step 10 of 40, ~60 s left"
    assert progress_text(4, 40, 60.0) == "step 4 of 40, ~9 min left"
    assert progress_text(40, 40, 200.0) == "step 40 of 40"
    assert DEFAULT_STEPS * 5 <= 240  # the default run takes minutes, not a quarter of an hour (5 s a step)


# ---------------------------------------------------------------------- issue 16: the workflow


def _click_layer(qtbot, viewer, layer, control=False):
    """Click ``layer``'s row in napari's layer list (with Ctrl: add it to the selection)."""
    from napari._qt.containers._base_item_view import index_of
    from qtpy.QtCore import Qt

    view = viewer.window._qt_viewer.layers
    rect = view.visualRect(index_of(view.model(), layer))
    modifier = Qt.KeyboardModifier.ControlModifier if control else Qt.KeyboardModifier.NoModifier
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def test_pickers_follow_the_layer_selection(make_napari_viewer, dock, qtbot):
    viewer = make_napari_viewer(show=True)  # a layer list to click in
    viewer.open_sample(PLUGIN, "source-and-reference")
    transfer, regions = dock(viewer, "Color transfer"), dock(viewer, "Regions")
    source, reference = viewer.layers["source"], viewer.layers["reference"]
    third = viewer.add_image(np.ascontiguousarray(reference.data[:, ::-1]), name="third")
    widgets = (transfer, regions)
    pairs = lambda: [(widget.source.value, widget.reference.value) for widget in widgets]  # noqa: E731
    assert pairs() == [(source, reference)] * 2  # napari selects a layer it adds: that is not a choice
    _click_layer(qtbot, viewer, source)
    assert pairs() == [(source, reference)] * 2
    _click_layer(qtbot, viewer, third)
    assert pairs() == [(third, reference)] * 2  # one image clicked: the source
    _click_layer(qtbot, viewer, reference)
    assert pairs() == [(reference, third)] * 2  # the reference clicked: the two swap
    _click_layer(qtbot, viewer, source)
    _click_layer(qtbot, viewer, third, control=True)
    assert pairs() == [(source, third)] * 2  # two selected: the one clicked last is the reference
    # Results are not picked by a click (looking at a result does not make it the next source).
    transfer.method.value = "mkl"
    transfer.run_button.native.click()
    _wait_idle(qtbot, transfer)
    result = viewer.layers["source ← third (mkl)"]
    _click_layer(qtbot, viewer, result)
    assert pairs() == [(source, third)] * 2


def test_compare_starts_with_the_source_reference_and_results_and_shows_progress(viewer, dock, qtbot, notices):
    source, reference = viewer.layers["source"], viewer.layers["reference"]
    compare = dock(viewer, "Compare")
    assert list(compare.layers.value) == [source, reference]  # before any result: the first two images
    assert (compare.source.value, compare.reference.value, compare.truth.value) == (source, reference, None)
    transfer = dock(viewer, "Color transfer")
    for method in ("mkl", "reinhard"):
        transfer.method.value = method
        transfer.run_button.native.click()
        _wait_idle(qtbot, transfer)
    results = [viewer.layers["source ← reference (mkl)"], viewer.layers["source ← reference (reinhard)"]]
    assert list(compare.layers.value) == [source, reference, *results]  # filled in as results come
    compare.compare_button.native.click()
    worker = compare.worker
    assert worker.pbar.total == 4  # determinate: one step per layer
    _wait_idle(qtbot, compare)
    assert worker.pbar.n == 4
    assert compare.table.rowCount() == 4 and not any("rror" in message for _, message in notices())
    # No ground truth: no empty PSNR / ΔE2000 columns; one (a, b) density per layer.
    assert [compare.table.isColumnHidden(column) for column in range(4)] == [False, False, True, True]
    assert len(compare.figure.axes) == 5


def test_compare_keeps_a_result_renamed_by_the_strength(viewer, dock, qtbot):
    source, reference = viewer.layers["source"], viewer.layers["reference"]
    compare = dock(viewer, "Compare")
    transfer = dock(viewer, "Color transfer")
    transfer.method.value = "mkl"
    transfer.run_button.native.click()
    _wait_idle(qtbot, transfer)
    result = viewer.layers["source ← reference (mkl)"]
    transfer.strength.value = 0.6
    qtbot.waitUntil(lambda: result.name == "source ← reference (mkl, 60 %)", timeout=30_000)
    qtbot.waitUntil(lambda: transfer.preview_worker is None)
    assert list(compare.layers.value) == [source, reference, result]
    compare.compare_button.native.click()
    _wait_idle(qtbot, compare)
    assert [compare.table.verticalHeaderItem(row).toolTip() for row in range(3)] == [
        "source", "reference", "source ← reference (mkl, 60 %)"]


def test_the_compare_table_is_readable_and_the_plots_stay_in_sight(make_napari_viewer, dock, qtbot):
    """Compare alone in a 1280x800 window, six layers with long names: the names are elided in the
    middle (full name as tooltip), every metric header is whole, and the plots start on screen."""
    from qtpy.QtCore import QPoint

    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "source-and-reference")
    data = viewer.layers["source"].data
    long_names = [f"a rather long layer name for result number {index} of this pair" for index in range(4)]
    for index, name in enumerate(long_names):
        viewer.add_image(np.ascontiguousarray(np.clip(data.astype(int) + 10 * index, 0, 255).astype(np.uint8)), name=name)
    compare = dock(viewer, "Compare")
    viewer.window._qt_window.resize(1280, 800)
    compare.reset_choices()
    compare.layers.value = list(viewer.layers)
    compare.truth.value = viewer.layers[long_names[0]]
    compare.compare_button.native.click()
    _wait_idle(qtbot, compare)
    qtbot.wait(100)
    table = compare.table
    names = [table.verticalHeaderItem(row) for row in range(table.rowCount())]
    assert [item.toolTip() for item in names] == [layer.name for layer in viewer.layers]
    assert all("…" in item.text() and item.text().startswith("a rather") for item in names[2:])  # middle elided
    assert table.verticalHeader().width() <= 0.4 * table.width()
    header = table.horizontalHeader()
    for column in range(table.columnCount()):
        label = table.horizontalHeaderItem(column).text()
        assert header.sectionSize(column) >= header.fontMetrics().horizontalAdvance(label) + 6, label
    viewport = compare.native.viewport()
    assert compare.canvas.mapTo(viewport, QPoint(0, 0)).y() <= viewport.height() - 200  # the plots are in sight


def test_silent_cases_get_a_notice_or_the_usual_rule(viewer, dock, qtbot, notices):
    source, reference = viewer.layers["source"], viewer.layers["reference"]
    transfer = dock(viewer, "Color transfer")
    transfer.method.value = "mkl"
    tiny = viewer.add_image(reference.data[:1, :1].copy(), name="tiny", rgb=True)
    transfer.reset_choices()
    transfer.source.value, transfer.reference.value = source, tiny
    transfer.run_button.native.click()
    _wait_idle(qtbot, transfer)
    assert any(severity == NotificationSeverity.WARNING and "only 1x1 pixels" in message
               for severity, message in notices())
    # Reopening Color transfer still replaces the earlier result of the same pair.
    transfer.reference.value = reference
    transfer.run_button.native.click()
    _wait_idle(qtbot, transfer)
    first = viewer.layers["source ← reference (mkl)"]
    viewer.window.remove_dock_widget(viewer.window._wrapped_dock_widgets[f"Color transfer ({PLUGIN})"])
    reopened = dock(viewer, "Color transfer")
    assert reopened is not transfer
    reopened.method.value = "mkl"
    reopened.strength.value = 0.5
    reopened.run_button.native.click()
    _wait_idle(qtbot, reopened)
    names = [layer.name for layer in viewer.layers]
    assert names.count("source ← reference (mkl, 50 %)") == 1 and not any("[1]" in name for name in names)
    assert viewer.layers["source ← reference (mkl, 50 %)"] is first  # updated, not added
    # Empty labels with the same layer as source and reference: one Labels layer, and a notice saying so.
    regions = dock(viewer, "Regions")
    regions.source.value = regions.reference.value = source
    regions.empty_button.native.click()
    assert [layer.name for layer in viewer.layers].count("source regions") == 1
    assert any("same layer" in message and "one Labels layer" in message for _, message in notices())


def test_a_much_larger_image_refits_the_view(make_napari_viewer, dock, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "source-and-reference")
    dock(viewer, "Color transfer")
    viewer.reset_view()
    zoom = viewer.camera.zoom
    viewer.add_image(np.zeros((8, 16, 3), np.uint8), name="small")  # inside the others: the view stays
    assert viewer.camera.zoom == zoom
    large = viewer.layers["source"].data.repeat(6, 0).repeat(6, 1)
    viewer.add_image(large, name="large")
    assert viewer.camera.zoom < 0.5 * zoom  # the view fits the new photo too


def test_compare_fills_itself_in_again_after_layers_are_removed(viewer, dock, qtbot, notices):
    compare = dock(viewer, "Compare")
    transfer = dock(viewer, "Color transfer")
    transfer.method.value = "mkl"
    transfer.run_button.native.click()
    _wait_idle(qtbot, transfer)
    data = viewer.layers["source"].data
    viewer.layers.clear()  # all of the first pair's layers
    source = viewer.add_image(np.ascontiguousarray(data[::-1]), name="second source")
    reference = viewer.add_image(np.ascontiguousarray(data[:, ::-1] // 2), name="second reference")
    transfer.reset_choices()
    transfer.source.value, transfer.reference.value = source, reference
    transfer.run_button.native.click()
    _wait_idle(qtbot, transfer)
    result = viewer.layers["second source ← second reference (mkl)"]
    assert list(compare.layers.value) == [source, reference, result]
    assert (compare.source.value, compare.reference.value) == (source, reference)
    compare.compare_button.native.click()
    _wait_idle(qtbot, compare)
    assert compare.table.rowCount() == 3 and not any("pick at least" in message for _, message in notices())


def test_apply_to_all_open_images_with_progress_and_cancel(viewer, dock, qtbot, notices, monkeypatch):
    source, reference = viewer.layers["source"], viewer.layers["reference"]
    second = viewer.add_image(np.ascontiguousarray(source.data[::-1]), name="second")
    third = viewer.add_image(np.ascontiguousarray(source.data[:, ::-1]), name="third")
    viewer.add_image(np.zeros((3, 16, 16), np.float32), name="volume")  # a grey 3-D stack: skipped, said so
    widget = dock(viewer, "Color transfer")
    widget.batch_button.native.click()
    worker = widget.worker
    assert worker.pbar.total == 3 and widget.cancel_button.enabled
    assert not widget.run_button.enabled  # one run at a time
    _wait_idle(qtbot, widget)
    assert worker.pbar.n == 3 and not widget.cancel_button.enabled and widget.run_button.enabled
    assert any("skipped" in message and "volume" in message for _, message in notices())
    for layer in (source, second, third):  # every image but the reference, each moved toward it
        result = viewer.layers[f"{layer.name} ← reference (analogy)"]
        assert result.data.shape == layer.data.shape
        assert sliced_wasserstein(result.data, reference.data) < 0.5 * sliced_wasserstein(layer.data, reference.data)
    # Again, adding layers this time: the results are not sources; Cancel after the first image stops it early.
    widget.replace.value = False
    from histocolor.napari.transfer_widget import _LayerSink

    finish = _LayerSink.finish  # each image takes a second longer, so that Cancel lands while one runs

    def slow_finish(*args):
        time.sleep(1.0)
        return finish(*args)

    monkeypatch.setattr(_LayerSink, "finish", slow_finish)
    widget.batch_button.native.click()
    worker = widget.worker
    worker.yielded.connect(lambda _: widget.cancel_button.native.click())
    _wait_idle(qtbot, widget)
    added = len(viewer.layers) - 8  # 5 images and 3 results before
    assert 1 <= added < 3 and worker.pbar.n == added
    assert any(f"cancelled: {added} of 3 images done" in message for _, message in notices())
    assert not widget.cancel_button.enabled and widget.batch_button.enabled


def _colour_mask(shape, split, top, bottom):
    """A colour-coded mask: ``top`` above row ``split``, ``bottom`` below, with an antialiased seam."""
    mask = np.empty((*shape, 3), np.uint8)
    mask[:split], mask[split:] = top, bottom
    mask[split] = (np.asarray(top, float) + bottom) / 2  # a seam colour no region has
    return mask


def test_colour_coded_masks_load_as_2d_labels_with_named_classes(viewer, dock, qtbot, tmp_path, monkeypatch, notices):
    from PIL import Image as PILImage
    from qtpy.QtWidgets import QFileDialog

    source, reference = viewer.layers["source"], viewer.layers["reference"]
    blue, green, orange = (0, 0, 255), (0, 255, 0), (250, 140, 20)
    files = {"source": tmp_path / "source-mask.png", "reference": tmp_path / "reference-mask.png"}
    PILImage.fromarray(_colour_mask(source.data.shape[:2], 150, blue, orange)).save(files["source"])
    PILImage.fromarray(_colour_mask(reference.data.shape[:2], 100, blue, green)).save(files["reference"])
    widget = dock(viewer, "Regions")
    for role, button in (("source", widget.load_source_button), ("reference", widget.load_reference_button)):
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, role=role, **k: (str(files[role]), ""))
        button.native.click()
    source_labels, reference_labels = viewer.layers["source regions"], viewer.layers["reference regions"]
    for labels, image in ((source_labels, source), (reference_labels, reference)):
        assert labels.ndim == 2 and labels.data.shape == image.data.shape[:2] and labels.data.dtype == np.int32
    # The palette's blue is one label in both (1, off napari's background 0), the seam joins a region.
    assert set(np.unique(source_labels.data)) == {1, 10} and set(np.unique(reference_labels.data)) == {1, 2}
    assert (source_labels.data[:150] == 1).all() and (reference_labels.data[:100] == 1).all()
    assert widget.class_names[1] == "blue" and widget.class_names[2] == "green"
    assert widget.class_names[10] == "#fa8c14"
    assert [widget.table.item(row, 1).text() for row in range(2)] == ["blue", "#fa8c14"]
    choices = widget.target_choices(1)
    assert [choices.itemText(i) for i in range(choices.count())] == ["", "1 blue", "2 green"]
    assert not choices.itemIcon(1).isNull()  # each class shows its colour
    # Name and colour agree: the swatches and the Labels layers show the mask's own colours.
    for index, colour in ((1, blue), (2, green)):
        swatch = choices.itemIcon(index).pixmap(12, 12).toImage().pixelColor(6, 6)
        assert (swatch.red(), swatch.green(), swatch.blue()) == colour
    for labels, label, colour in ((source_labels, 1, blue), (source_labels, 10, orange), (reference_labels, 2, green)):
        assert tuple((np.asarray(labels.get_color(label))[:3] * 255).round().astype(int)) == colour
    assert choices.currentText() == "1 blue" and widget.target_choices(10).currentText() == ""
    widget.target_choices(10).setCurrentIndex(2)  # the orange ground takes the reference's green
    assert widget.region_map() == {0: [], 1: [1], 10: [2]}
    # A mask of another size, and a file that is no mask, are notifications.
    PILImage.fromarray(np.zeros((10, 30), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "text.png").write_text("not an image")
    assert widget.load_mask(tmp_path / "small.png", "source") is None
    assert widget.load_mask(tmp_path / "text.png", "reference") is None
    errors = [message for severity, message in notices() if severity == NotificationSeverity.ERROR]
    assert "masks must match their image's size" in errors[0] and "cannot read mask" in errors[1]
    assert set(np.unique(source_labels.data)) == {1, 10}  # nothing lost


class _Mouse:
    """A mouse event as napari's drag callbacks read it; later events replace what it wraps."""

    def __init__(self, **fields):
        from types import SimpleNamespace

        self.__wrapped__ = SimpleNamespace(**fields)

    def __getattr__(self, name):
        return getattr(self.__wrapped__, name)


def _brush_stroke(layer, world_points, label):
    """Paint a stroke through ``world_points`` with the labels layer's brush, through napari's mouse bindings."""
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    layer.mode, layer.brush_size, layer.selected_label = "paint", 30, label
    fields = dict(button=1, modifiers=[], view_direction=None, dims_displayed=[0, 1], handled=False)
    mouse_press_callbacks(layer, _Mouse(type="mouse_press", position=world_points[0], is_dragging=False, **fields))
    for point in world_points[1:]:
        mouse_move_callbacks(layer, _Mouse(type="mouse_move", position=point, is_dragging=True, **fields))
    mouse_release_callbacks(layer, _Mouse(type="mouse_release", position=world_points[-1], is_dragging=False, **fields))


def test_side_by_side_regions_painted_on_both_images_then_transferred(viewer, dock, qtbot, notices):
    from skimage.color import rgb2lab

    source, reference = viewer.layers["source"], viewer.layers["reference"]
    reference.translate = source.translate  # opened over each other, as File > Open places two photos
    widget = dock(viewer, "Regions")
    widget.empty_button.native.click()
    source_labels, reference_labels = viewer.layers["source regions"], viewer.layers["reference regions"]
    # The reference and its labels lie to the right of the source, apart: both can be painted at once.
    source_right = source.extent.world[1][-1]
    assert reference.extent.world[0][-1] > source_right and reference_labels.extent.world[0][-1] > source_right
    assert tuple(reference_labels.translate) == tuple(reference.translate)
    height, width = reference.data.shape[:2]
    right = reference.translate[-1]
    # One stroke on the source (its top-left block) and two on the reference, in world coordinates.
    _brush_stroke(source_labels, [(y, x) for y in range(30, 120, 12) for x in (30, 75, 120)], label=1)
    _brush_stroke(reference_labels, [(y, right + x) for y in range(15, 60, 12) for x in (15, 45, 75)], label=2)
    _brush_stroke(reference_labels, [(y, right + x) for y in range(height - 60, height - 15, 12)
                                     for x in (width // 2 - 20, width // 2 + 20)], label=1)
    assert (source_labels.data[40:110, 40:110] == 1).all() and (reference_labels.data[20:50, 20:70] == 2).all()
    assert not (source_labels.data == 2).any()  # the reference's strokes landed on the reference only
    widget.refresh_button.native.click()
    choices = widget.target_choices(1)
    choices.setCurrentIndex(choices.findText("2"))  # source region 1 takes the reference's dark sky (2)
    widget.run_button.native.click()
    _wait_idle(qtbot, widget)
    result = viewer.layers["source ← reference (analogy, regions)"]
    assert tuple(result.translate) == tuple(source.translate)  # over the source, not the moved reference
    lab_result, lab_reference = rgb2lab(result.data), rgb2lab(reference.data)
    sky = lab_reference[reference_labels.data == 2].mean(0)
    assert np.linalg.norm(lab_result[50:100, 50:100].mean((0, 1)) - sky) < 6
    # Unticking the layout puts the reference back over the source.
    widget.side_by_side.value = False
    assert tuple(reference.translate) == tuple(source.translate) == tuple(reference_labels.translate)
    assert not [message for severity, message in notices() if severity == NotificationSeverity.ERROR]


def test_every_dock_is_usable_on_a_1280x800_screen(make_napari_viewer, dock, qtbot):
    """All four docks open at once in a 1280x800 window: they join as tabs, and in each one the
    main controls are on screen without scrolling."""
    from qtpy.QtCore import QPoint

    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "source-and-reference")
    window = viewer.window._qt_window
    titles = ("Color transfer", "Regions", "Compare", "Fine-tune")
    widgets = [dock(viewer, title) for title in titles]
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.height() <= 800, timeout=5_000)
    qtbot.wait(100)
    assert window.minimumSizeHint().height() <= 800 and window.height() <= 800 and window.width() <= 1280
    docks = [viewer.window._wrapped_dock_widgets[f"{title} ({PLUGIN})"] for title in titles]
    assert set(window.tabifiedDockWidgets(docks[0])) == set(docks[1:])
    controls = (
        [widgets[0].source, widgets[0].reference, widgets[0].method, widgets[0].strength, widgets[0].run_button,
         widgets[0].export_button, widgets[0].cancel_button],
        [widgets[1].segment_button, widgets[1].run_button, widgets[1].table],
        [widgets[2].layers, widgets[2].compare_button, widgets[2].canvas],
        [widgets[3].folder, widgets[3].start_button, widgets[3].stop_button, widgets[3].bar, widgets[3].status],
    )
    for title, dock_widget, widget, shown in zip(titles, docks, widgets, controls):
        dock_widget.raise_()
        qtbot.waitUntil(lambda widget=widget: widget.native.isVisible(), timeout=5_000)
        viewport = widget.native.viewport()
        assert viewport.height() >= 500, title  # a whole column, not a sliver
        for control in shown:
            native = getattr(control, "native", control)
            top = native.mapTo(viewport, QPoint(0, 0)).y()
            assert native.isVisible() and 0 <= top, (title, control)
            # A control is on screen; a tall plot or table at least shows its first 150 px.
            assert top + min(native.height(), 150) <= viewport.height(), (title, control, top)
    assert widgets[1].table.height() >= 150  # the Regions table keeps a few rows


def test_a_colour_mask_opened_as_labels_is_refused_with_the_way_to_load_it(viewer, dock, qtbot, notices):
    """File > Open of a colour-coded mask as labels gives a (H, W, 3) Labels layer: not 255 regions."""
    widget = dock(viewer, "Regions")
    widget.empty_button.native.click()
    _paint_block(viewer.layers["source regions"], 20, 20, 60, label=1)
    widget.refresh_button.native.click()
    assert widget.table.rowCount() == 1
    source = viewer.layers["source"]
    opened = viewer.add_labels(_colour_mask(source.data.shape[:2], 150, (0, 0, 255), (0, 255, 0)), name="mask.png")
    widget.reset_choices()
    widget.source_labels.value = opened
    widget.refresh_button.native.click()
    widget.run_button.native.click()
    errors = [message for severity, message in notices() if severity == NotificationSeverity.ERROR]
    assert len(errors) == 2 and all("not a 2-D label map" in error and "Load source mask" in error for error in errors)
    assert widget.table.rowCount() == 1 and widget.worker is None  # not 255 meaningless regions


def test_selection_swaps_regions_labels_with_their_images_and_compare_keeps_hand_choices(
        make_napari_viewer, dock, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, "source-and-reference")
    source, reference = viewer.layers["source"], viewer.layers["reference"]
    reference.translate = source.translate  # opened over each other, as File > Open places two photos
    regions = dock(viewer, "Regions")
    regions.empty_button.native.click()
    source_labels, reference_labels = viewer.layers["source regions"], viewer.layers["reference regions"]
    home = tuple(source.translate)
    _click_layer(qtbot, viewer, source)
    _click_layer(qtbot, viewer, reference)  # the reference becomes the source: its labels follow it
    assert (regions.source.value, regions.reference.value) == (reference, source)
    assert (regions.source_labels.value, regions.reference_labels.value) == (reference_labels, source_labels)
    # The new reference (and its labels) moved to the right of the new source, which is back home.
    assert tuple(reference.translate) == home and tuple(reference_labels.translate) == home
    assert source.extent.world[0][-1] > reference.extent.world[1][-1]
    assert tuple(source_labels.translate) == tuple(source.translate)
    regions.side_by_side.value = False
    assert all(tuple(layer.translate) == home for layer in (source, reference, source_labels, reference_labels))
    # Compare keeps a choice made by hand when a new result comes.
    compare = dock(viewer, "Compare")
    compare.layers.value = [source]
    transfer = dock(viewer, "Color transfer")
    transfer.method.value = "mkl"
    transfer.run_button.native.click()
    _wait_idle(qtbot, transfer)
    assert list(compare.layers.value) == [source]


def test_apply_to_folder_writes_every_photo_and_names_the_one_that_fails(viewer, dock, qtbot, tmp_path, monkeypatch,
                                                                          notices):
    from PIL import Image as PILImage
    from qtpy.QtWidgets import QFileDialog

    from histocolor.imageio import read_image

    source, reference = viewer.layers["source"], viewer.layers["reference"]
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir(), out.mkdir()
    for name, pixels in (("a.png", source.data), ("b.jpg", source.data[::-1]), ("c.png", source.data[:200, :300])):
        PILImage.fromarray(np.ascontiguousarray(pixels)).save(photos / name)
    (photos / "broken.png").write_bytes(b"not a png")
    (photos / "notes.txt").write_text("not a photo")
    widget = dock(viewer, "Color transfer")
    folders = iter([str(photos), str(out)])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: next(folders))
    widget.folder_button.native.click()
    worker = widget.worker
    assert worker.pbar.total == 4 and not widget.run_button.enabled and widget.cancel_button.enabled
    _wait_idle(qtbot, widget)
    assert sorted(path.name for path in out.iterdir()) == ["a.png", "b.jpg", "c.png"]  # no temporary file left
    for name in ("a.png", "b.jpg", "c.png"):
        before, after = read_image(photos / name).rgb, read_image(out / name).rgb
        assert after.shape == before.shape
        assert sliced_wasserstein(after, reference.data) < 0.5 * sliced_wasserstein(before, reference.data)
    errors = [message for severity, message in notices() if severity == NotificationSeverity.ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"3 of 4 photos written to {out}; failed: broken.png (")
    # Again into the same folder: refused before any work, nothing overwritten.
    written = (out / "a.png").stat().st_mtime_ns
    assert widget.transfer_folder(photos, out, reference) is None and widget.worker is None
    assert "already holds 3 of the results' names" in notices()[-1][1]
    assert widget.transfer_folder(photos, photos, reference) is None  # over the inputs: refused too
    assert (out / "a.png").stat().st_mtime_ns == written
