"""The relevance gate: a blend between the careful and the faithful alignment (model/relevance.py)."""

from dataclasses import replace

import pytest
import torch
from conftest import random_lab, randomise_heads

from histocolor.color import rgb_to_lab
from histocolor.model import AnalogyConfig, HistogramAnalogy, from_pretrained
from histocolor.model.config import RelevanceConfig
from histocolor.model.io import grow_state
from histocolor.model.relevance import ContentEncoder

ALIGNED = AnalogyConfig(
    hen_widths=(8, 8, 8, 8), feature_size=16, ctn_width=8, ctn_depth=2, ctn_sees_source=True,
    alignment={"method": "sliced", "everywhere": True, "iterations": 4, "samples": 1024},
)
GATED = replace(ALIGNED, relevance=RelevanceConfig(method="sliced", content_width=4, hidden=8))


def _pair(seed=0):
    source = random_lab(2, 24, 28, seed=seed)
    reference = random_lab(2, 20, 30, seed=seed + 1) * torch.tensor([0.6, 1.4, 0.7]).view(3, 1, 1) \
        + torch.tensor([30.0, 10.0, -5.0]).view(3, 1, 1)
    return source, reference.clamp(-60, 100)


def _halves(batch, height, width):
    regions = torch.zeros(batch, 2, height, width)
    regions[:, 0, : height // 2] = 1.0
    regions[:, 1, height // 2 :] = 1.0
    return regions


def test_the_config_round_trips_and_is_validated(tmp_path):
    data = GATED.to_dict()
    assert data["relevance"]["method"] == "sliced" and AnalogyConfig(**data) == GATED
    assert "relevance" not in ALIGNED.to_dict()  # older readers never see the key
    model = HistogramAnalogy(GATED)
    with torch.no_grad():
        model.relevance.mlp[-1].weight.normal_()
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path)
    assert loaded.config == GATED
    assert torch.equal(loaded.relevance.mlp[-1].weight, model.relevance.mlp[-1].weight)
    for bad in ({"method": "moments"}, {"start": 0.0}, {"start": 1}, {"content_size": 20}, {"hidden": 0},
                {"lightness_slopes": [2.0, 1.0]}):
        with pytest.raises(ValueError, match="relevance"):
            RelevanceConfig(**bad)
    for changes in ({"head": "lut"}, {"alignment": {"method": "none", "everywhere": True}},
                    {"alignment": {"method": "sliced", "everywhere": False}}):
        with pytest.raises(ValueError, match="relevance needs"):
            AnalogyConfig(**{**GATED.to_dict(), "ctn_sees_source": False, **changes})


def test_the_content_feature_ignores_exposure_and_mirroring():
    encoder = ContentEncoder(32, 4)
    lab = random_lab(2, 40, 50)
    brighter = lab + torch.tensor([12.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(encoder(lab), encoder(brighter), atol=1e-5)
    assert torch.allclose(encoder(lab), encoder(lab.flip(-1)), atol=1e-5)
    assert not torch.allclose(encoder(lab), encoder(random_lab(2, 40, 50, seed=7)), atol=1e-3)


def test_an_untrained_gate_blends_by_its_start_value_globally_and_per_region():
    model = HistogramAnalogy(GATED).eval()
    source, reference = _pair()
    with torch.no_grad():
        result = model(source, reference)
        assert result.blend.shape == (2, 1, 3)
        assert torch.allclose(result.blend, torch.full_like(result.blend, GATED.relevance.start), atol=1e-6)
        faithful = model.faithful_aligner.maps(source, reference, torch.ones(2, 1, 24, 28), torch.ones(2, 1, 20, 30))[:, 0]
        expected = result.careful + GATED.relevance.start * (faithful - result.careful)
        assert torch.allclose(result.aligned, expected.clamp(result.aligned.min(), result.aligned.max()), atol=1e-3)
        regions = model(source, reference, _halves(2, 24, 28), _halves(2, 20, 30))
    assert regions.blend.shape == (2, 3, 3)  # two regions and the whole image


def test_the_faithful_alignment_follows_the_reference_further():
    model = HistogramAnalogy(GATED).eval()
    source, reference = _pair()
    with torch.no_grad():
        model.relevance.mlp[-1].bias.fill_(12.0)  # blend 1: faithful
        faithful = model(source, reference)
        model.relevance.mlp[-1].bias.fill_(-12.0)  # blend 0: careful
        careful = model(source, reference)
    spread = reference[:, 0].std()
    gap_faithful = (faithful.aligned[:, 0].std() - spread).abs()
    gap_careful = (careful.aligned[:, 0].std() - spread).abs()
    assert gap_faithful < 0.5 * gap_careful  # the L spread (contrast) the careful bounds refuse
    assert torch.allclose(careful.aligned, careful.careful, atol=1e-4)


def test_a_linear_careful_alignment_is_gated_against_the_sliced_faithful_one():
    linear = replace(GATED, alignment=replace(GATED.alignment, method="linear"))
    model = HistogramAnalogy(linear).eval()
    source, reference = _pair()
    ones = (torch.ones(2, 1, 24, 28), torch.ones(2, 1, 20, 30))
    with torch.no_grad():
        model.relevance.mlp[-1].bias.fill_(-12.0)  # blend 0: the careful (linear) map alone
        careful = model(source, reference)
        linear_map = model.aligner.maps(source, reference, *ones)[:, 0]
        model.relevance.mlp[-1].bias.fill_(12.0)  # blend 1: the sliced map alone
        faithful = model(source, reference)
        sliced_map = model.faithful_aligner.maps(source, reference, *ones)[:, 0]
    assert torch.allclose(careful.aligned, linear_map, atol=1e-3)
    assert torch.allclose(faithful.aligned, sliced_map, atol=1e-3)
    assert (careful.aligned - faithful.aligned).abs().mean() > 0.5  # two different maps


def test_reference_equal_to_source_keeps_the_source():
    model = HistogramAnalogy(GATED).eval()
    rgb = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 36, 36, generator=torch.Generator().manual_seed(3)), 5, 1)
    source = rgb_to_lab(rgb)
    with torch.no_grad():
        model.relevance.mlp[-1].bias.fill_(12.0)
        result = model(source, source.clone())
    assert (result.aligned - source).abs().mean() < 0.5


def test_a_gate_added_to_a_trained_model_is_trained_through_the_output():
    model = HistogramAnalogy(ALIGNED).eval()
    randomise_heads(model)
    gated = HistogramAnalogy(GATED)
    grow_state(gated, model.state_dict())
    source, reference = _pair()
    with torch.no_grad():
        assert torch.allclose(gated(source, reference).careful, model(source, reference).aligned, atol=1e-5)
    gated.train()
    result = gated(source, reference)
    (result.output - reference.mean(dim=(-2, -1), keepdim=True)).square().mean().backward()
    assert gated.relevance.mlp[-1].weight.grad.abs().sum() > 0
    assert gated.relevance.mlp[-1].bias.grad.abs().sum() > 0
