"""Segmenters: the offline TFLite models, SLIC, tiny transformers and torchvision models built from configs."""

import json
import string
import sys

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
