"""Segmenters: the offline TFLite models, SLIC, tiny transformers and torchvision models built from configs."""

import json
import string
import sys
import warnings

import numpy as np
import pytest

from histocolor.errors import HistocolorError
from histocolor.segment import get_segmenter

from conftest import DPST, SHARED, require

MODELS = SHARED / "models"


@pytest.fixture
def models_home(tmp_path, monkeypatch):
    """HISTOCOLOR_HOME holding the shared offline copies of the TFLite models."""
    models = tmp_path / "models"
    models.mkdir()
    for path in require(MODELS).iterdir():
        (models / path.name).symlink_to(path)
    monkeypatch.setenv("HISTOCOLOR_HOME", str(tmp_path))
    return models


def test_unknown_segmenter_names_fail_clearly():
    for name in ("deeplab", "hf:", "torchvision:", ""):
        with pytest.raises(HistocolorError, match="unknown segmenter|choose"):
            get_segmenter(name)
    with pytest.raises(HistocolorError, match="unknown torchvision segmenter"):
        get_segmenter("torchvision:resnet9000")


def test_missing_or_wrong_model_files_say_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HISTOCOLOR_HOME", str(tmp_path))
    with pytest.raises(HistocolorError, match=r"needs deeplabv3_mnv2_pascal_quant.tflite in .*models.*coral"):
        get_segmenter("voc")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ade20k_deeplabv3_mnv2.tflite").write_bytes(b"not a model")
    with pytest.raises(HistocolorError, match="not the expected model"):
        get_segmenter("ade20k")


def test_missing_optional_packages_explain_how_to_install(models_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(HistocolorError, match="pip install ai-edge-litert"):
        get_segmenter("ade20k")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(HistocolorError, match="pip install transformers"):
        get_segmenter("hf:some/model")


def test_ade20k_finds_sky_and_buildings_in_a_city(models_home):
    pytest.importorskip("ai_edge_litert")
    from histocolor.imageio import read_image

    image = read_image(require(DPST) / "input" / "in5.png").rgb
    labels, names = get_segmenter("ade20k").segment(image)
    assert labels.shape == image.shape[:2] and labels.dtype == np.int32
    assert {"sky", "building"} <= set(names.values())
    sky = [label for label, name in names.items() if name == "sky"][0]
    assert (labels[: image.shape[0] // 5] == sky).mean() > 0.5  # the sky is at the top


def test_voc_finds_the_astronaut(models_home):
    pytest.importorskip("ai_edge_litert")
    from skimage.data import astronaut

    labels, names = get_segmenter("voc").segment(astronaut())
    person = [label for label, name in names.items() if name == "person"]
    assert person and 0.1 < (labels == person[0]).mean() < 0.9


def test_slic_regions_correspond_by_tone_and_place(rng):
    def scene(top, bottom):
        image = np.empty((120, 160, 3), np.float32)
        image[:50], image[50:] = top, bottom
        return np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1).astype(np.float32)

    source, reference = scene((0.8, 0.85, 0.95), (0.2, 0.3, 0.1)), scene((0.95, 0.7, 0.4), (0.15, 0.1, 0.2))
    source_labels, reference_labels, names = get_segmenter("slic").segment_pair(source, reference)
    assert source_labels.shape == (120, 160) and reference_labels.shape == (120, 160) and reference_labels.min() >= 0
    top, bottom = np.bincount(source_labels[:40].ravel()).argmax(), np.bincount(source_labels[60:].ravel()).argmax()
    assert top != bottom and names[top].startswith("bright top")
    # The bright band is exactly the scene's top 50 rows; the ground below (L about 29) reads as dark.
    assert np.array_equal(source_labels == top, np.broadcast_to(np.arange(120)[:, None] < 50, (120, 160)))
    assert names[bottom].startswith("dark bottom")
    # Same layout, other colours: a region of the source meets its match at the same place.
    assert (source_labels == reference_labels).mean() > 0.8


LABELS = {index: f"class{index}" for index in range(4)}


def _tiny_models():
    import transformers as T

    swin = dict(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4, image_size=64,
                out_features=["stage1", "stage2", "stage3", "stage4"])
    common = dict(num_labels=4, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    yield "segformer", T.SegformerForSemanticSegmentation(T.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 1],
        decoder_hidden_size=16, patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2], **common))
    yield "beit", T.BeitForSemanticSegmentation(T.BeitConfig(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=64, patch_size=16,
        out_indices=[0, 1, 2, 3], use_auxiliary_head=False, pool_scales=[1, 2], **common))
    yield "upernet-convnext", T.UperNetForSemanticSegmentation(T.UperNetConfig(
        backbone_config=T.ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                                         out_features=["stage1", "stage2", "stage3", "stage4"]),
        hidden_size=16, use_auxiliary_head=False, pool_scales=[1, 2], **common))
    yield "upernet-swin", T.UperNetForSemanticSegmentation(T.UperNetConfig(
        backbone_config=T.SwinConfig(**swin), hidden_size=16, use_auxiliary_head=False, pool_scales=[1, 2], **common))
    yield "mask2former", T.Mask2FormerForUniversalSegmentation(T.Mask2FormerConfig(
        backbone_config=T.SwinConfig(**swin), hidden_dim=32, mask_feature_size=32, feature_size=32, num_queries=5,
        encoder_layers=1, decoder_layers=2, encoder_feedforward_dim=32, dim_feedforward=32, num_attention_heads=2,
        common_stride=4, **common))


@pytest.mark.slow
def test_transformers_segmenters_load_from_a_directory_and_segment(tmp_path):
    pytest.importorskip("transformers")
    image = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    for name, model in _tiny_models():
        model.save_pretrained(tmp_path / name)
        labels, names = get_segmenter(f"hf:{tmp_path / name}", device="cpu").segment(image)
        assert labels.shape == (70, 90) and labels.dtype == np.int32, name
        assert set(names) == set(np.unique(labels).tolist()) and set(names.values()) <= set(LABELS.values()), name


def test_oneformer_runs_with_its_task_input(tmp_path):
    T = pytest.importorskip("transformers")
    # A tokenizer of single letters stands in for CLIP's (its task text is "the task is semantic").
    letters = list(string.ascii_lowercase)
    vocab = {token: i for i, token in enumerate(["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = T.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    config = T.OneFormerConfig(
        backbone_config=T.SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                                     image_size=64, out_features=["stage1", "stage2", "stage3", "stage4"]),
        hidden_dim=32, mask_dim=32, conv_dim=32, num_queries=5, encoder_layers=1, decoder_layers=2, dim_feedforward=32,
        num_attention_heads=2, encoder_feedforward_dim=32, text_encoder_width=32, text_encoder_num_layers=1,
        text_encoder_vocab_size=len(vocab), text_encoder_context_length=16, task_seq_len=16, max_seq_len=16,
        num_labels=4, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}, is_training=False,
    )
    directory = tmp_path / "oneformer"
    T.OneFormerForUniversalSegmentation(config).save_pretrained(directory)
    with pytest.raises(HistocolorError, match="OneFormer needs its processor"):
        get_segmenter(f"hf:{directory}", device="cpu")
    processor = T.OneFormerProcessor(
        image_processor=T.OneFormerImageProcessor(num_labels=4, class_info_file=None,
                                                  size={"shortest_edge": 64, "longest_edge": 96}),
        tokenizer=tokenizer, max_seq_length=16, task_seq_length=16,
    )
    processor.save_pretrained(directory)
    labels, _ = get_segmenter(f"hf:{directory}", device="cpu").segment(np.zeros((70, 90, 3), np.uint8))
    assert labels.shape == (70, 90)


def test_a_bad_transformers_directory_is_a_clear_error(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(HistocolorError, match="cannot load segmenter 'hf:"):
        get_segmenter(f"hf:{tmp_path}")


def test_torchvision_segmenter_builds_without_downloading():
    from histocolor.segment.tv import TorchvisionSegmenter

    segmenter = TorchvisionSegmenter("lraspp_mobilenet_v3_large", device="cpu", pretrained=False)
    labels, names = segmenter.segment(np.zeros((50, 70, 3), np.uint8))
    assert labels.shape == (50, 70) and set(names) <= set(range(21))


# --- onnx: segmenters -------------------------------------------------------------------------

RGB_NAMES = ["red", "green", "blue"]


def _export_onnx(module, path, channels=3):
    """``module`` as an ONNX file with input ``pixel_values`` and output ``logits``, H and W dynamic."""
    import torch

    dynamic = {"pixel_values": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "h8", 3: "w8"}}
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and the only one that needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(1, channels, 32, 64),), str(path), input_names=["pixel_values"],
                          output_names=["logits"], dynamic_axes=dynamic, dynamo=False)
    return path


def _dominant_channel_model():
    """Scores at 1/8 resolution: each 8x8 cell's mean RGB in [0, 1] (the ImageNet normalisation undone
    by a fixed 1x1 conv), so the argmax is the image's dominant channel: 0 red, 1 green, 2 blue."""
    import torch

    convolution = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        convolution.weight.copy_(torch.diag(torch.tensor([0.229, 0.224, 0.225]))[:, :, None, None])
        convolution.bias.copy_(torch.tensor([0.485, 0.456, 0.406]))
    return torch.nn.Sequential(torch.nn.AvgPool2d(8), convolution)


def _stripes(height, width):
    """Red, green and blue vertical stripes of equal width (uint8), and their expected labels."""
    columns = np.arange(width) * 3 // width
    image = np.zeros((height, width, 3), np.uint8)
    image[:, np.arange(width), columns] = 255
    return image, np.broadcast_to(columns.astype(np.int32), (height, width))


@pytest.fixture
def tiny_onnx(tmp_path):
    """A tiny dominant-channel segmenter and its label file, found by the tail of its name ('rgb')."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")  # torch.onnx.export writes the file with it
    (tmp_path / "rgb_labels.txt").write_text("\n".join(RGB_NAMES) + "\n")
    return _export_onnx(_dominant_channel_model(), tmp_path / "tiny_seg_rgb.onnx")


def test_onnx_segmenter_gives_exact_regions_at_the_input_size(tiny_onnx):
    from histocolor.segment.onnx import OnnxSegmenter

    segmenter = get_segmenter(f"onnx:{tiny_onnx}", device="cpu")
    assert isinstance(segmenter, OnnxSegmenter) and segmenter.name == f"onnx:{tiny_onnx}"
    assert segmenter.long_side == 1024 and segmenter.multiple == 32  # the default input: long side about 1024
    # Stripes 32 pixels wide at an input size that needs no resizing: the 1/8 scores, resized
    # back, switch class exactly on the stripe edges.
    image, expected = _stripes(32, 96)
    labels, names = OnnxSegmenter(str(tiny_onnx), long_side=96, threads=1).segment(image)
    assert labels.dtype == np.int32 and np.array_equal(labels, expected)
    assert names == dict(enumerate(RGB_NAMES))


def test_onnx_segmenter_resizes_to_multiples_of_32_and_back(tiny_onnx):
    from histocolor.segment.onnx import OnnxSegmenter, input_size

    assert input_size((525, 700)) == (768, 1024) and input_size((50, 75), long_side=96) == (64, 96)
    assert input_size((4000, 10), long_side=512) == (512, 32) and input_size((9, 9), fixed=(224, 224)) == (224, 224)
    image, expected = _stripes(50, 75)  # stripes of 25 pixels, 32 at the network input
    source_labels, reference_labels, names = OnnxSegmenter(str(tiny_onnx), long_side=96, threads=1).segment_pair(
        image, image[:, ::-1])
    assert source_labels.shape == (50, 75) and reference_labels.shape == (50, 75)
    inside = np.abs(np.arange(75)[None] % 25 - 12) < 11  # all but the pixel on each side of an edge
    inside = np.broadcast_to(inside, (50, 75))
    assert np.array_equal(source_labels[inside], expected[inside])
    assert np.array_equal(reference_labels[inside], expected[:, ::-1][inside])  # classes match across images
    assert names == dict(enumerate(RGB_NAMES))


def test_onnx_segmenter_by_file_name_in_the_models_folder_and_from_the_cli(tiny_onnx, tmp_path, monkeypatch):
    from PIL import Image

    from histocolor.cli import main

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    for path in (tiny_onnx, tiny_onnx.parent / "rgb_labels.txt"):
        (home / "models" / path.name).symlink_to(path)
    monkeypatch.setenv("HISTOCOLOR_HOME", str(home))
    image, expected = _stripes(32, 96)
    labels, names = get_segmenter("onnx:tiny_seg_rgb").segment(image)  # ".onnx" may be left out
    inside = np.broadcast_to(np.abs(np.arange(96)[None] % 32 - 15.5) < 14, labels.shape)
    assert np.array_equal(labels[inside], expected[inside]) and set(names.values()) == set(RGB_NAMES)
    Image.fromarray(image).save(tmp_path / "stripes.png")
    assert main(["segment", str(tmp_path / "stripes.png"), "-o", str(tmp_path / "labels.png"), "--segmenter",
                 "onnx:tiny_seg_rgb.onnx", "--device", "cpu"]) == 0
    written = np.asarray(Image.open(tmp_path / "labels.png"))
    assert np.array_equal(written[inside], expected[inside])


def _one_line_error(make) -> str:
    with pytest.raises(HistocolorError) as caught:
        make()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_onnx_segmenter_errors_are_one_line(tiny_onnx, tmp_path, monkeypatch):
    import torch

    from histocolor.segment.onnx import OnnxSegmenter

    def spec_error(spec):
        return _one_line_error(lambda: get_segmenter(spec, device="cpu"))

    monkeypatch.setenv("HISTOCOLOR_HOME", str(tmp_path / "home"))
    assert "onnx:<model file>" in spec_error("onnx:")
    assert "needs the model file" in spec_error(f"onnx:{tmp_path / 'absent.onnx'}")
    # A bare file name says where it was looked for.
    assert f"neither here nor in {tmp_path / 'home' / 'models'}" in spec_error("onnx:absent")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert "cannot load segmenter 'onnx:" in spec_error(f"onnx:{tmp_path / 'junk.onnx'}")
    gray = _export_onnx(torch.nn.Sequential(torch.nn.AvgPool2d(8), torch.nn.Conv2d(1, 3, 1)), tmp_path / "gray.onnx", 1)
    assert "expected a float32 (B, 3, H, W) input" in spec_error(f"onnx:{gray}")
    pooled = _export_onnx(torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()), tmp_path / "pooled.onnx")
    assert "expected class scores (B, C, h, w)" in spec_error(f"onnx:{pooled}")
    (tmp_path / "two_labels.txt").write_text("red\ngreen\n")
    assert "names 2 classes but the model scores 3" in _one_line_error(
        lambda: OnnxSegmenter(str(tiny_onnx), labels_file=tmp_path / "two_labels.txt"))
    assert "does not exist" in _one_line_error(lambda: OnnxSegmenter(str(tiny_onnx), labels_file=tmp_path / "none.txt"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert "pip install onnxruntime" in spec_error(f"onnx:{tiny_onnx}")


def test_onnx_execution_providers_follow_the_device():
    from histocolor.segment.onnx import execution_providers

    cpu_only, with_cuda = ["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers("auto", cpu_only) == execution_providers("cpu", with_cuda) == cpu_only
    assert execution_providers("auto", with_cuda) == with_cuda
    assert execution_providers("cuda:1", with_cuda)[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert "no CUDA provider" in _one_line_error(lambda: execution_providers("cuda", cpu_only))
    assert "unknown device" in _one_line_error(lambda: execution_providers("tpu", with_cuda))


def test_efficientvit_finds_the_sky_at_the_top_of_a_photo():
    pytest.importorskip("onnxruntime")
    from histocolor.imageio import read_image

    model = require(MODELS / "efficientvit_seg_b0_cityscapes.onnx")
    image = read_image(require(DPST) / "input" / "in5.png").rgb  # a river town under a grey sky
    labels, names = get_segmenter(f"onnx:{model}", device="cpu").segment(image)
    assert labels.shape == image.shape[:2] and names.get(10) == "sky"  # cityscapes_labels.txt, found by name
    assert (labels[: image.shape[0] // 10] == 10).all() and (labels[: image.shape[0] // 5] == 10).mean() > 0.95
    assert "building" in names.values()


@pytest.mark.slow
def test_the_tflite_segmenter_prints_nothing_of_its_own(models_home, tmp_path):
    """LiteRT's C++ "INFO: Created TensorFlow Lite XNNPACK delegate" line used to break the one-line stderr."""
    import subprocess

    pytest.importorskip("ai_edge_litert")
    result = subprocess.run(
        [sys.executable, "-m", "histocolor", "segment", str(require(DPST) / "input" / "in5.png"), "-o",
         str(tmp_path / "labels.png"), "--segmenter", "ade20k"], capture_output=True, text=True,
    )
    assert result.returncode == 0 and result.stderr == ""


def test_segment_writes_lossless_label_maps_only(tmp_path):
    from histocolor.cli import main
    from histocolor.regions import load_label_map

    source = str(require(DPST) / "input" / "in5.png")
    assert main(["segment", source, "-o", str(tmp_path / "labels.tif"), "--segmenter", "slic"]) == 0
    assert main(["segment", source, "-o", str(tmp_path / "labels.png"), "--segmenter", "slic"]) == 0
    assert np.array_equal(load_label_map(tmp_path / "labels.tif"), load_label_map(tmp_path / "labels.png"))
    assert main(["segment", source, "-o", str(tmp_path / "labels.jpg"), "--segmenter", "slic"]) == 2


def test_resize_labels_matches_torch_nearest_exact(rng):
    """Label maps resized in numpy (slic needs no torch) take the label under each pixel centre, as torch does."""
    import torch
    import torch.nn.functional as F

    from histocolor.segment.base import resize_labels

    for small, large in [((37, 50), (480, 640)), ((480, 640), (37, 50)), ((3, 3), (7, 11)), ((100, 7), (33, 21))]:
        labels = rng.integers(0, 200, small).astype(np.int32)
        theirs = F.interpolate(torch.from_numpy(labels)[None, None].float(), size=large, mode="nearest-exact")
        ours = resize_labels(labels, large)
        assert ours.dtype == np.int32 and np.array_equal(ours, theirs[0, 0].to(torch.int32).numpy())
