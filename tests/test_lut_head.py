import numpy as np
import pytest
import torch

from histocolor.color import lab_to_rgb, rgb_to_lab
from histocolor.lut import apply_lut, identity_lut
from histocolor.model import AnalogyConfig, HistogramAnalogy

LUT_CONFIG = AnalogyConfig(head="lut", hen_widths=(8, 8, 8, 8), feature_size=16, lut_bases=4, lut_size=9)


def _lab(seed, size=(20, 30)):
    return rgb_to_lab(torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed)))


def _trained_a_little(model):
    torch.manual_seed(0)
    with torch.no_grad():
        model.lut_head.bases.normal_(std=0.05)
        model.lut_head.mixer[-1].weight.normal_(std=0.5)
        model.lut_head.mixer[-1].bias.normal_(std=0.5)
    return model.eval()


def test_untrained_lut_head_is_the_identity():
    model = HistogramAnalogy(LUT_CONFIG).eval()
    source = _lab(0)
    assert torch.allclose(model(source, _lab(1)).output, source, atol=1e-3)
    lut = model.color_lut(source, _lab(1), 9)[0].detach().numpy()
    assert np.abs(lut - identity_lut(9)).max() < 1e-4


def test_tabulated_lut_reproduces_the_head_at_its_grid_points():
    model = _trained_a_little(HistogramAnalogy(LUT_CONFIG))
    source, reference = _lab(2), _lab(3)
    lut = model.color_lut(source, reference, 9)[0]
    # Grid points as a tiny image: the head's own output there must equal the table.
    nodes = torch.from_numpy(identity_lut(9).reshape(1, 9 * 9, 9, 3)).permute(0, 3, 1, 2)
    condition = model.condition(source, reference)
    offsets = model.lut_head.luts(source, condition)
    from histocolor.color import denormalize_lab, lab_to_rgb, normalize_lab
    from histocolor.model.lut_head import lookup

    direct = lab_to_rgb(denormalize_lab(normalize_lab(rgb_to_lab(nodes)) + lookup(offsets, nodes))).clamp(0, 1)
    assert torch.allclose(direct[0].permute(1, 2, 0).reshape(9, 9, 9, 3), lut, atol=1e-4)
    assert (lut - torch.from_numpy(identity_lut(9))).abs().max() > 0.01


def test_lut_head_depends_on_the_reference_and_learns():
    model = _trained_a_little(HistogramAnalogy(LUT_CONFIG))
    source = _lab(4)
    assert (model(source, _lab(5)).output - model(source, _lab(5) * 0.6).output).abs().max() > 1e-2
    model.train()
    model(source, _lab(5)).output.square().mean().backward()
    assert model.lut_head.bases.grad.abs().sum() > 0 and model.hen.project.weight.grad.abs().sum() > 0


def test_lut_head_refuses_regions_and_ctn_refuses_color_lut():
    model = HistogramAnalogy(LUT_CONFIG)
    regions = torch.ones(1, 1, 20, 30)
    with pytest.raises(ValueError):
        model(_lab(0), _lab(1, (20, 30)), regions, regions)
    with pytest.raises(ValueError):
        HistogramAnalogy(AnalogyConfig(ctn_width=4, hen_widths=(4, 4, 4, 4), feature_size=8)).color_lut(
            _lab(0), _lab(1), 5
        )
    with pytest.raises(ValueError):
        AnalogyConfig(head="pixels")


def test_an_aligned_lut_head_tabulates_the_composition_of_alignment_and_head():
    """With an alignment the head's LUT is indexed by aligned colours; color_lut folds both into one map."""
    config = AnalogyConfig(head="lut", lut_size=9, hen_widths=(8, 8, 8, 8), feature_size=16,
                           alignment={"method": "quantiles", "everywhere": True})
    model = HistogramAnalogy(config).eval()
    torch.nn.init.normal_(model.lut_head.bases, std=0.05)
    generator = torch.Generator().manual_seed(0)
    source = torch.rand(1, 3, 40, 40, generator=generator) * 0.6
    reference = (torch.rand(1, 3, 30, 30, generator=generator) * 0.5 + 0.4).clamp(0, 1)
    with torch.no_grad():
        source_lab, reference_lab = rgb_to_lab(source), rgb_to_lab(reference)
        direct = lab_to_rgb(model(source_lab, reference_lab).output).clamp(0, 1)
        lut = model.color_lut(source_lab, reference_lab, 33)[0].numpy()
    tabulated = apply_lut(source[0].permute(1, 2, 0).numpy(), lut)
    assert np.abs(tabulated - direct[0].permute(1, 2, 0).numpy()).mean() < 0.01
    assert (direct - source).abs().mean() > 0.1  # the alignment moved it far
