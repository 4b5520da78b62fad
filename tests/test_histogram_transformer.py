"""The histogram transformer encoder (``encoder: "transformer"``), a drop-in for the conv HEN."""

import json

import pytest
import torch

from histocolor.histogram import hen_input
from histocolor.model import AnalogyConfig, HistogramAnalogy, from_pretrained
from histocolor.model.config import TransformerConfig
from histocolor.model.hen import HistogramEncoder
from histocolor.model.histogram_transformer import HistogramTransformer

from conftest import parameters_without_gradient, random_lab, randomise_heads

TINY_TRANSFORMER = {"depth": 2, "width": 16, "heads": 2}
SMALL = AnalogyConfig(
    encoder="transformer", transformer=TINY_TRANSFORMER, feature_size=16, ctn_width=8, ctn_depth=2
)


def test_the_default_config_builds_the_conv_hen():
    assert AnalogyConfig().encoder == "conv"
    assert type(HistogramAnalogy(AnalogyConfig()).hen) is HistogramEncoder
    # Weights saved before the encoder was a setting (no "encoder" key) read as conv.
    legacy = {k: v for k, v in AnalogyConfig().to_dict().items() if k not in ("encoder", "transformer")}
    assert AnalogyConfig.from_dict(legacy) == AnalogyConfig()
    assert type(HistogramAnalogy(SMALL).hen) is HistogramTransformer


@pytest.mark.parametrize("l_bins, patch_size, tokens", [(8, 8, 64 + 8), (3, 16, 16 + 3), (1, 4, 256 + 1)])
def test_shapes_of_features_and_tokens(l_bins, patch_size, tokens):
    config = AnalogyConfig(
        encoder="transformer", l_bins=l_bins, transformer={**TINY_TRANSFORMER, "patch_size": patch_size},
        feature_size=12,
    )
    encoder = HistogramTransformer(config)
    histograms = hen_input(random_lab(3, 20, 30), config.l_bins, config.ab_bins)
    encoded = encoder.encode(histograms)
    assert encoded.features.shape == (3, 12)
    assert encoded.tokens.shape == (3, tokens, 16)
    assert torch.equal(encoder(histograms), encoded.features)
    with pytest.raises(ValueError, match="shape"):
        encoder(histograms[:, 1:])


def test_the_features_tell_histograms_apart_and_ignore_the_batch():
    encoder = HistogramTransformer(SMALL).eval()
    histograms = hen_input(torch.cat([random_lab(1, 32, 32), random_lab(1, 32, 32, seed=2) * 0.5]), SMALL.l_bins, SMALL.ab_bins)
    with torch.no_grad():
        together = encoder(histograms)
        alone = encoder(histograms[1:])
    assert (together[0] - together[1]).abs().max() > 0.1
    assert torch.allclose(together[1:], alone, atol=1e-5)


def test_gradients_reach_every_encoder_parameter():
    encoder = HistogramTransformer(SMALL)
    histograms = hen_input(random_lab(2, 24, 24), SMALL.l_bins, SMALL.ab_bins)
    encoded = encoder.encode(histograms)
    generator = torch.Generator().manual_seed(3)
    # Random projections: a plain sum of squares of layer-normed tokens would be constant.
    loss = (encoded.features * torch.randn(encoded.features.shape, generator=generator)).sum() + (
        encoded.tokens * torch.randn(encoded.tokens.shape, generator=generator)
    ).sum()
    loss.backward()
    missing = [name for name, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_gradients_reach_every_parameter_of_the_whole_model():
    model = HistogramAnalogy(SMALL)
    randomise_heads(model)
    assert not parameters_without_gradient(model, model(random_lab(2, 24, 24), random_lab(2, 16, 20, seed=1)))


def test_an_untrained_transformer_model_is_the_identity():
    model = HistogramAnalogy(SMALL).eval()
    source = random_lab(2, 37, 53)
    assert torch.allclose(model(source, random_lab(2, 20, 30, seed=1)).output, source, atol=1e-4)


@pytest.mark.parametrize("head", ["ctn", "lut"])
def test_a_transformer_model_saves_and_reloads_bit_exactly(tmp_path, head):
    config = AnalogyConfig.from_dict({**SMALL.to_dict(), "head": head})
    torch.manual_seed(4)
    model = HistogramAnalogy(config).eval()
    with torch.no_grad():  # move the zero-initialised heads so the encoder shows in the output
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.save_pretrained(tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["encoder"] == "transformer" and document["transformer"]["width"] == 16
    loaded = from_pretrained(tmp_path)
    assert loaded.config == config and type(loaded.hen) is HistogramTransformer
    state, reloaded = model.state_dict(), loaded.state_dict()
    assert state.keys() == reloaded.keys() and all(torch.equal(state[k], reloaded[k]) for k in state)
    source, reference = random_lab(1, 24, 24), random_lab(1, 24, 24, seed=9)
    with torch.no_grad():
        expected, actual = model(source, reference).output, loaded(source, reference).output
    assert torch.equal(actual, expected)
    assert (expected - source).abs().max() > 1e-3  # not the identity: the comparison means something


def test_region_inputs_work_with_the_transformer():
    model = HistogramAnalogy(SMALL).eval()
    randomise_heads(model)
    source, reference = random_lab(1, 32, 32), random_lab(1, 32, 32, seed=3)
    source_regions = torch.zeros(1, 2, 32, 32)
    source_regions[:, 0, :, 16:] = 1.0
    source_regions[:, 1, :8, :8] = 1.0
    reference_regions = torch.zeros(1, 2, 32, 32)
    reference_regions[:, 0, :8, :] = 1.0  # region 1 is missing from the reference: global features there
    with torch.no_grad():
        global_output = model(source, reference).output
        regional = model(source, reference, source_regions, reference_regions).output
    assert regional.shape == source.shape
    assert torch.allclose(regional[..., 16:, :6], global_output[..., 16:, :6], atol=5e-3)
    assert (regional[..., :, 24:] - global_output[..., :, 24:]).abs().max() > 0.05
    # The region histograms go through the transformer in one batch of B * R.
    with torch.no_grad():
        condition = model.condition(source, reference, source_regions, reference_regions)
    assert condition.features.shape == (1, 3, 2 * SMALL.feature_size)


def test_transformer_config_validation_and_json_round_trip():
    assert AnalogyConfig.from_dict(SMALL.to_dict()) == SMALL
    assert SMALL.transformer == TransformerConfig(**TINY_TRANSFORMER)
    assert TransformerConfig().patch_size == 8
    with pytest.raises(ValueError, match="encoder"):
        AnalogyConfig(encoder="vit")
    with pytest.raises(ValueError, match="divisible by its heads"):
        AnalogyConfig(encoder="transformer", transformer={"width": 30, "heads": 4})
    with pytest.raises(ValueError, match="patch_size"):
        AnalogyConfig(encoder="transformer", transformer={"patch_size": 12})
    with pytest.raises(ValueError, match="unknown transformer keys"):
        AnalogyConfig.from_dict({"encoder": "transformer", "transformer": {"layers": 2}})
    with pytest.raises(ValueError, match="integer"):
        AnalogyConfig(encoder="transformer", transformer={"depth": 2.0})
    with pytest.raises(ValueError, match="positive"):
        AnalogyConfig(encoder="transformer", transformer={"heads": 0})
    with pytest.raises(ValueError, match="transformer settings"):
        AnalogyConfig(encoder="transformer", transformer=[2, 16])
    # The conv encoder's constraint binds only the conv encoder, and the patch size only the transformer.
    assert AnalogyConfig(encoder="transformer", ab_bins=24, hen_widths=(8, 8, 8, 8)).ab_bins == 24
    assert AnalogyConfig(ab_bins=32, transformer={"patch_size": 5}).encoder == "conv"
