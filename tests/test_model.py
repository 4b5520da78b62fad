import json

import pytest
import torch

from histocolor.errors import HistocolorError
from histocolor.model import AnalogyConfig, HistogramAnalogy, from_pretrained

from conftest import SAMPLES, random_lab, randomise_heads

SMALL = AnalogyConfig(hen_widths=(8, 8, 8, 8), feature_size=16, ctn_width=8, ctn_depth=2)


@pytest.mark.parametrize("size", [(37, 53), (64, 64), (5, 130), (1, 1)])
def test_untrained_network_is_the_identity_at_any_size(size):
    model = HistogramAnalogy(SMALL).eval()
    source = random_lab(2, *size)
    result = model(source, random_lab(2, 20, 30, seed=1))
    assert result.output.shape == source.shape
    assert torch.allclose(result.output, source, atol=1e-4)


def test_intermediate_outputs_are_coarse_to_fine_and_supervisable():
    model = HistogramAnalogy(AnalogyConfig(ctn_depth=3, ctn_width=8, hen_widths=(8, 8, 8, 8), feature_size=16))
    result = model(random_lab(1, 50, 70), random_lab(1, 40, 40, seed=2))
    assert [tuple(t.shape[-2:]) for t in result.intermediate] == [(13, 18), (25, 35)]
    loss = sum((t - t.detach() - 1).square().mean() for t in [result.output, *result.intermediate])
    loss.backward()
    assert all(head.weight.grad.abs().sum() > 0 for head in model.ctn.heads)


def test_output_depends_on_the_reference_histogram():
    model = HistogramAnalogy(SMALL).eval()
    randomise_heads(model)
    source = random_lab(1, 32, 32)
    first = model(source, random_lab(1, 32, 32, seed=5)).output
    second = model(source, random_lab(1, 32, 32, seed=5) * 0.5).output
    assert (first - second).abs().max() > 1e-3


def test_region_features_act_where_the_region_is():
    model = HistogramAnalogy(SMALL).eval()
    randomise_heads(model)
    source, reference = random_lab(1, 32, 32), random_lab(1, 32, 32, seed=3)
    global_output = model(source, reference).output
    source_regions = torch.zeros(1, 1, 32, 32)
    source_regions[..., :, 16:] = 1.0
    reference_regions = torch.zeros(1, 1, 32, 32)
    reference_regions[..., :8, :] = 1.0
    regional = model(source, reference, source_regions, reference_regions).output
    # Left half: no region, global features, so the result matches the global one away from the seam.
    assert torch.allclose(regional[..., :, :8], global_output[..., :, :8], atol=5e-3)
    assert (regional[..., :, 24:] - global_output[..., :, 24:]).abs().max() > 0.05


def test_region_maps_stay_aligned_when_the_network_pads():
    config = AnalogyConfig(hen_widths=(8, 8, 8, 8), feature_size=16, ctn_width=8, ctn_depth=3)
    model = HistogramAnalogy(config).eval()
    randomise_heads(model)
    source, reference = random_lab(1, 30, 37), random_lab(1, 30, 37, seed=3)
    source_regions = torch.zeros(1, 1, 30, 37)
    source_regions[..., 20:] = 1.0  # columns 20.. belong to the region
    reference_regions = torch.zeros(1, 1, 30, 37)
    reference_regions[..., :10, :] = 1.0
    regional = model(source, reference, source_regions, reference_regions).output
    global_output = model(source, reference).output
    # Columns well left of the region (receptive field aside) keep the global result.
    assert torch.allclose(regional[..., :6], global_output[..., :6], atol=5e-3)
    # The region's features act from the region's own columns onward, not several pixels later.
    difference = (regional - global_output).abs().amax(dim=(0, 1, 2))
    assert difference[20:].min() > difference[:6].max()


def test_a_region_missing_from_the_reference_falls_back_to_global_features():
    model = HistogramAnalogy(SMALL).eval()
    randomise_heads(model)
    source, reference = random_lab(1, 16, 16), random_lab(1, 16, 16, seed=4)
    regions = torch.ones(1, 1, 16, 16)
    fallback = model(source, reference, regions, torch.zeros(1, 1, 16, 16)).output
    assert torch.allclose(fallback, model(source, reference).output, atol=1e-5)
    with pytest.raises(ValueError):
        model(source, reference, regions, None)


def test_paper_config_builds_the_same_code_larger():
    paper = HistogramAnalogy(AnalogyConfig.paper())
    small = HistogramAnalogy(SMALL)
    assert sum(p.numel() for p in paper.parameters()) > 50 * sum(p.numel() for p in small.parameters())
    assert AnalogyConfig.from_dict(AnalogyConfig.paper().to_dict()) == AnalogyConfig.paper()


def test_config_validation():
    with pytest.raises(ValueError):
        AnalogyConfig(l_bins=65)
    with pytest.raises(ValueError):
        AnalogyConfig(ab_bins=60)
    with pytest.raises(ValueError):
        AnalogyConfig.from_dict({"l_bins": 8, "colour": 3})


def test_save_and_load_round_trip(tmp_path):
    model = HistogramAnalogy(SMALL).eval()
    randomise_heads(model)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = from_pretrained(tmp_path)
    assert loaded.config == SMALL and not loaded.training
    source, reference = random_lab(1, 24, 24), random_lab(1, 24, 24, seed=9)
    assert torch.equal(loaded(source, reference).output, model(source, reference).output)


def test_loading_errors_are_clear(tmp_path):
    HistogramAnalogy(SMALL).save_pretrained(tmp_path)
    with pytest.raises(HistocolorError, match="does not exist"):
        from_pretrained(tmp_path / "nowhere")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "ctn_width": 16}))
    with pytest.raises(HistocolorError, match="do not match its config"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "unknown": 1}))
    with pytest.raises(HistocolorError, match="unknown config keys"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(HistocolorError, match="cannot read"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(HistocolorError, match="corrupt weights") as caught:
        from_pretrained(tmp_path)
    assert "\n" not in str(caught.value)


def test_a_ctn_that_sees_the_source_starts_as_the_model_it_grew_from():
    from dataclasses import replace

    from histocolor.model.io import grow_state

    aligned = replace(SMALL, alignment={"method": "moments", "everywhere": True})
    model = HistogramAnalogy(aligned).eval()
    randomise_heads(model)
    grown = HistogramAnalogy(replace(aligned, ctn_sees_source=True)).eval()
    grow_state(grown, model.state_dict())
    source, reference = random_lab(2, 37, 53), random_lab(2, 20, 30, seed=1)
    assert torch.equal(grown(source, reference).output, model(source, reference).output)
    # The new inputs have weights, and they reach the result once those move.
    extra = grown.ctn.stem[0].weight[:, 3:]
    assert extra.shape[1] == 3 and not extra.any()
    with torch.no_grad():
        extra.normal_(std=0.1)
    assert (grown(source, reference).output - model(source, reference).output).abs().max() > 0.01
    with pytest.raises(HistocolorError, match="cannot grow"):
        grow_state(model, grown.state_dict())  # shrinking drops weights: refused


@pytest.mark.parametrize("changes", [{"head": "lut"}, {"alignment": {"method": "none"}}, {"ctn_sees_source": 1}])
def test_seeing_the_source_needs_the_ctn_and_an_alignment(changes):
    settings = {"alignment": {"method": "moments", "everywhere": True}, "ctn_sees_source": True, **changes}
    with pytest.raises(ValueError, match="ctn_sees_source"):
        AnalogyConfig(**{**SMALL.to_dict(), **settings})


def test_non_finite_weights_are_refused_at_load_and_a_broken_output_is_never_written(tmp_path, sample_pair):
    """Garbage behind a valid safetensors header used to give exit 0 and a black image."""
    from safetensors.torch import load_file, save_file

    from histocolor.cli import main
    from histocolor.model import CTNOutput
    from histocolor.engine import ColorTransfer

    HistogramAnalogy(AnalogyConfig(ctn_width=8)).save_pretrained(tmp_path / "broken")
    state = load_file(tmp_path / "broken" / "model.safetensors")
    name = sorted(name for name, tensor in state.items() if tensor.is_floating_point())[0]
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, tmp_path / "broken" / "model.safetensors")
    with pytest.raises(HistocolorError, match="NaN or infinite"):
        from_pretrained(tmp_path / "broken")
    source, reference = sample_pair
    assert main(["transfer", str(SAMPLES / "source.jpg"), str(SAMPLES / "reference.jpg"),
                 "-o", str(tmp_path / "out.png"), "--weights", str(tmp_path / "broken")]) == 2
    assert not (tmp_path / "out.png").exists()

    class Broken(torch.nn.Module):  # a network whose output is not finite, whatever its weights
        def forward(self, source_lab, *args, **kwargs):
            return CTNOutput(source_lab * float("nan"), [])

    with pytest.raises(HistocolorError, match="NaN or infinite"):
        ColorTransfer(model=Broken(), max_side=32)(source, reference)
