"""Source-to-reference cross-attention (``attention: bottleneck | bottleneck+decoder``)."""

import json

import pytest
import torch

from histocolor.model import AnalogyConfig, HistogramAnalogy, from_pretrained
from histocolor.model.analogy import _histogram_tokens
from histocolor.model.cross_attention import CrossAttention, ReferenceTokens, token_channels
from histocolor.model.io import grow_state

from conftest import parameters_without_gradient, random_lab, randomise_heads

TINY = {"transformer": {"depth": 1, "width": 16, "heads": 2}, "feature_size": 16, "ctn_width": 8, "ctn_depth": 2,
        "attention_window": 4}
# The ablation's four corners, small; the LUT head with attention besides.
VARIANTS = {
    "cross-attention": {"attention": "bottleneck+decoder"},
    "bottleneck-only": {"attention": "bottleneck"},
    "both": {"encoder": "transformer", "attention": "bottleneck+decoder"},
    "lut-both": {"encoder": "transformer", "attention": "bottleneck", "head": "lut"},
}


def _config(variant: str, **changes) -> AnalogyConfig:
    return AnalogyConfig.from_dict({**TINY, **VARIANTS[variant], **changes})


def _move_attention_outputs(model, std=0.1):
    """The attention's output projections start at zero; move them so the attention shows."""
    torch.manual_seed(2)
    blocks = [m for m in model.modules() if isinstance(m, CrossAttention)]
    assert blocks
    with torch.no_grad():
        for block in blocks:
            block.out.weight.normal_(std=std)
            block.out.bias.normal_(std=std)


def _regions(batch, count, height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    soft = torch.rand(batch, count, height, width, generator=generator) ** 4
    return soft / soft.sum(1, keepdim=True)


def test_attention_starts_as_no_change_and_keeps_shapes():
    attention = CrossAttention(channels=12, width=16, heads=4)
    features = torch.randn(2, 12, 5, 7)
    reference = ReferenceTokens(torch.randn(2, 9, 16), torch.ones(2, 9, 1))
    assert torch.equal(attention(features, reference, torch.ones(2, 1, 5, 7)), features)
    _move_attention_outputs(attention)
    moved = attention(features, reference, torch.ones(2, 1, 10, 14))  # channels at another size are resized
    assert moved.shape == features.shape and (moved - features).abs().max() > 1e-2


@pytest.mark.parametrize("window", [None, 3])
def test_a_query_attends_only_to_its_own_regions_tokens(window):
    torch.manual_seed(0)
    attention = CrossAttention(channels=8, width=16, heads=2, window=window)
    _move_attention_outputs(attention, std=0.5)
    features = torch.randn(1, 8, 6, 6)
    query_channels = torch.zeros(1, 3, 6, 6)
    query_channels[:, 0, :, :3] = 1.0  # left half: region 0; right half: region 1; channel 2 (global) unused
    query_channels[:, 1, :, 3:] = 1.0
    tokens = torch.randn(1, 12, 16)
    channels = torch.zeros(1, 12, 3)
    channels[:, :4, 0] = 1.0
    channels[:, 4:8, 1] = 1.0
    channels[:, 8:, 2] = 1.0
    before = attention(features, ReferenceTokens(tokens, channels), query_channels)
    changed = tokens.clone()
    changed[:, 4:] = torch.randn(1, 8, 16)  # region 1's and the global tokens
    after = attention(features, ReferenceTokens(changed, channels), query_channels)
    # The left half sees region 0's tokens only (windows of 3 split the map at column 3 too).
    assert torch.allclose(after[..., :3], before[..., :3], atol=1e-4)
    assert (after[..., 3:] - before[..., 3:]).abs().max() > 1e-2


def test_windowed_attention_is_local_to_its_window_on_any_size():
    torch.manual_seed(1)
    attention = CrossAttention(channels=8, width=16, heads=2, window=4)
    _move_attention_outputs(attention, std=0.5)
    features = torch.randn(2, 8, 11, 9)  # not multiples of the window: padded, then cropped
    reference = ReferenceTokens(torch.randn(2, 5, 16), torch.ones(2, 5, 1))
    channels = torch.ones(2, 1, 11, 9)
    before = attention(features, reference, channels)
    assert before.shape == features.shape
    changed = features.clone()
    changed[..., 8:, 4:8] += torch.randn(2, 8, 3, 4)  # inside the bottom-middle window
    added = attention(changed, reference, channels) - changed
    # Every other window reads the same features and the same reference: exactly the same.
    outside = torch.ones(11, 9, dtype=torch.bool)
    outside[8:, 4:8] = False
    assert torch.equal(added[..., outside], (before - features)[..., outside])
    assert (added[..., 8:, 4:8] - (before - features)[..., 8:, 4:8]).abs().max() > 1e-2


def test_image_token_channels_follow_the_reference_regions_and_alpha():
    like = torch.zeros(1)
    regions = torch.zeros(1, 2, 64, 64)
    regions[:, 0, :32] = 1.0  # the top half
    regions[:, 1, 32:, :16] = 1.0  # the bottom-left quarter
    alpha = torch.ones(1, 64, 64)
    alpha[:, :, 56:] = 0.0  # the last token column is transparent
    channels = token_channels(regions, alpha, 1, like).view(8, 8, 3)
    assert torch.equal(channels[:4, :7, 0], torch.ones(4, 7)) and torch.equal(channels[4:, :, 0], torch.zeros(4, 8))
    assert torch.equal(channels[4:, :2, 1], torch.ones(4, 2)) and torch.equal(channels[:, 2:, 1], torch.zeros(8, 6))
    assert torch.equal(channels[..., 2], alpha[0, ::8, ::8])  # global: every token, by alpha
    assert torch.equal(channels[:, 7], torch.zeros(8, 3))
    assert torch.equal(token_channels(None, None, 3, like), torch.ones(3, 64, 1))


def test_histogram_tokens_belong_to_their_regions_channel():
    global_tokens, region_tokens = torch.randn(2, 5, 4), torch.randn(2 * 3, 5, 4)
    alone = _histogram_tokens(global_tokens, None, 0)
    assert torch.equal(alone.tokens, global_tokens) and torch.equal(alone.channels, torch.ones(2, 5, 1))
    both = _histogram_tokens(global_tokens, region_tokens, 3)
    assert both.tokens.shape == (2, 20, 4) and both.channels.shape == (2, 20, 4)
    assert torch.equal(both.tokens[1, 5:10], region_tokens[4])  # image 1, region 1
    assert torch.equal(both.channels[1, 5:10], torch.tensor([[0.0, 1.0, 0.0, 0.0]]).expand(5, 4))
    assert torch.equal(both.channels[:, 15:], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(2, 5, 4))
    assert _histogram_tokens(None, None, 3) is None


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_parameter(variant):
    model = HistogramAnalogy(_config(variant))
    if model.config.head == "ctn":
        randomise_heads(model)
    else:
        torch.nn.init.normal_(model.lut_head.bases, std=0.05)
    _move_attention_outputs(model)
    assert not parameters_without_gradient(model, model(random_lab(2, 24, 28), random_lab(2, 16, 20, seed=1)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_model_grown_with_attention_computes_what_it_did(variant):
    """``--init`` weights without attention, ``attention`` switched on: step 0 is the old model."""
    config = _config(variant)
    torch.manual_seed(5)
    old = HistogramAnalogy(AnalogyConfig.from_dict({**config.to_dict(), "attention": "none"})).eval()
    with torch.no_grad():
        for parameter in old.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    grown = HistogramAnalogy(config).eval()
    grow_state(grown, old.state_dict())
    source, reference = random_lab(1, 24, 24), random_lab(1, 20, 24, seed=4)
    with torch.no_grad():
        assert torch.equal(grown(source, reference).output, old(source, reference).output)
        assert (old(source, reference).output - source).abs().max() > 1e-3
        _move_attention_outputs(grown)
        assert (grown(source, reference).output - old(source, reference).output).abs().max() > 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_attention_model_saves_and_reloads_bit_exactly(tmp_path, variant):
    config = _config(variant)
    torch.manual_seed(4)
    model = HistogramAnalogy(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["attention"] == config.attention
    loaded = from_pretrained(tmp_path)
    assert loaded.config == config
    state, reloaded = model.state_dict(), loaded.state_dict()
    assert state.keys() == reloaded.keys() and all(torch.equal(state[k], reloaded[k]) for k in state)
    source, reference = random_lab(1, 24, 24), random_lab(1, 24, 24, seed=9)
    with torch.no_grad():
        expected, actual = model(source, reference).output, loaded(source, reference).output
    assert torch.equal(actual, expected) and (expected - source).abs().max() > 1e-3


@pytest.mark.parametrize("variant", ["cross-attention", "both"])
def test_attention_variants_take_region_inputs(variant):
    model = HistogramAnalogy(_config(variant)).eval()
    randomise_heads(model)
    _move_attention_outputs(model)
    source, reference = random_lab(2, 32, 36), random_lab(2, 28, 24, seed=3)
    source_regions, reference_regions = _regions(2, 3, 32, 36, 1), _regions(2, 3, 28, 24, 2)
    with torch.no_grad():
        global_output = model(source, reference).output
        regional = model(source, reference, source_regions, reference_regions,
                         reference_weights=torch.ones(2, 28, 24)).output
        condition, histogram_tokens = model._condition(source, reference, source_regions, reference_regions,
                                                       None, None, None)
        tokens = model.reference_tokens(reference, reference_regions, None, histogram_tokens)
    assert regional.shape == source.shape and (regional - global_output).abs().max() > 1e-3
    # As many channels as the condition: three regions and the global one.
    assert tokens.channels.shape[-1] == condition.weights.shape[1] == 4
    histogram_count = 0 if model.config.encoder == "conv" else 4 * (64 + 8)
    assert tokens.tokens.shape == (2, 64 + histogram_count, 16)


def test_attention_settings_are_validated():
    assert AnalogyConfig().attention == "none"
    with pytest.raises(ValueError, match="attention must be one of"):
        AnalogyConfig(attention="everywhere")
    with pytest.raises(ValueError, match="no decoder"):
        AnalogyConfig(head="lut", attention="bottleneck+decoder")
    with pytest.raises(ValueError, match="attention_window"):
        AnalogyConfig(attention="bottleneck+decoder", attention_window=0)
    model = HistogramAnalogy(_config("cross-attention"))
    with pytest.raises(ValueError, match="reference tokens"):
        model.ctn(torch.zeros(1, 3, 8, 8), torch.zeros(1, 32))


@pytest.mark.parametrize("window", [None, 4])
def test_attention_runs_under_bf16_autocast(window):
    """Training on a GPU runs under bf16 autocast: the bias must follow the queries' precision."""
    attention = CrossAttention(channels=8, width=16, heads=2, window=window)
    _move_attention_outputs(attention)
    features = torch.randn(1, 8, 6, 6)
    reference = ReferenceTokens(torch.randn(1, 5, 16), torch.rand(1, 5, 1))
    full = attention(features, reference, torch.ones(1, 1, 6, 6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = attention(features, reference, torch.ones(1, 1, 6, 6))
    assert torch.allclose(mixed.float(), full, atol=0.1) and (full - features).abs().max() > 1e-2
