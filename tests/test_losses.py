import pytest
import torch

from histocolor.color import rgb_to_lab
from histocolor.training.losses import (
    LossWeights, histogram_distance, lightness_gradient_gap, region_sliced_wasserstein, structure_similarity,
    transfer_loss,
)
from histocolor.model import CTNOutput


def _lab(seed, shift=0.0):
    rgb = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return rgb_to_lab((rgb + shift).clamp(0, 1))


def test_a_perfect_output_costs_nothing():
    target = _lab(0)
    intermediate = [torch.nn.functional.adaptive_avg_pool2d(target, 8)]
    total, parts = transfer_loss(CTNOutput(target.clone(), intermediate), target)
    assert total.item() < 1e-6 and parts["histogram"] < 1e-6


def test_every_term_sees_its_error():
    target = _lab(0)
    shifted = _lab(0, shift=0.2)
    _, parts = transfer_loss(CTNOutput(shifted, [torch.nn.functional.adaptive_avg_pool2d(shifted, 8)]), target)
    assert parts["l1"] > 0.05 and parts["deep"] > 0.05 and parts["histogram"] > 0.1
    # The histogram term ignores where colours are, the L1 term does not.
    moved = target.roll(2, dims=-1)  # same pixels (the histogram samples every 2nd), other places
    assert histogram_distance(moved, target).max() < 1e-5
    _, parts = transfer_loss(CTNOutput(moved, []), target, LossWeights(histogram=1.0))
    assert parts["l1"] > 0.05 and parts["deep"] == 0.0


def test_gradients_reach_the_output():
    target = _lab(0)
    output = _lab(1).requires_grad_()
    total, _ = transfer_loss(CTNOutput(output, []), target)
    total.backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0


def _two_regions(batch=2, size=32):
    regions = torch.zeros(batch, 2, size, size)
    regions[:, 0, :, : size // 2] = 1.0
    regions[:, 1, :, size // 2 :] = 1.0
    return regions


def test_region_swd_compares_each_region_with_its_own_reference_region():
    reference = _lab(3)
    regions = _two_regions()
    swapped = regions.flip(1)  # region 0 of the output is the reference's region 1
    generator = torch.Generator().manual_seed(0)
    moved = reference.roll(1, dims=-2)  # each region's pixels, in other rows
    assert region_sliced_wasserstein(moved, reference, regions, regions, generator) < 0.05  # sampling noise
    bright = reference.clone()
    bright[..., :16] += torch.tensor([30.0, 0.0, 0.0]).view(3, 1, 1)  # region 0 of the reference only
    assert region_sliced_wasserstein(reference, bright, regions, regions, generator) > 0.1
    assert region_sliced_wasserstein(bright, bright, regions, swapped, generator) > 0.1
    none = torch.zeros_like(regions)
    assert region_sliced_wasserstein(reference, bright, none, regions, generator) == 0.0


def test_unpaired_items_skip_the_target_terms_and_keep_to_the_aligned_source():
    target, output, reference = _lab(0), _lab(1).requires_grad_(), _lab(2, shift=0.3)
    regions = _two_regions()
    weights = LossWeights(region_swd=1.0, anchor=1.0)
    paired = torch.tensor([True, False])
    # The unpaired item's output is its target's opposite: it must not count in L1.
    fake_target = torch.cat([output[:1].detach(), target[1:]])
    total, parts = transfer_loss(
        CTNOutput(output, []), fake_target, weights, paired=paired, regions=(reference, regions, regions),
        aligned_lab=output.detach(),
    )
    assert parts["l1"] < 1e-6 and parts["histogram"] < 1e-6 and parts["anchor"] < 1e-6
    assert parts["region_swd"] > 0.05
    total.backward()
    assert output.grad.abs().sum() > 0


def test_global_swd_pulls_towards_the_reference_and_the_gradient_term_keeps_edges():
    source, reference = _lab(0), _lab(2, shift=0.3)
    weights = LossWeights(l1=0.0, deep_supervision=0.0, histogram=0.0, swd=1.0, gradient=1.0)
    unpaired = torch.tensor([False, False])
    _, same = transfer_loss(CTNOutput(reference.clone(), []), source, weights, paired=unpaired,
                            reference_lab=reference, source_lab=reference)
    _, far = transfer_loss(CTNOutput(source.clone(), []), source, weights, paired=unpaired, reference_lab=reference,
                           source_lab=source)
    # The SWD compares random pixel samples: the reference against itself is only sampling noise.
    assert same["swd"] < 0.25 * far["swd"] and same["gradient"] < 1e-6
    assert far["gradient"] < 1e-6
    # A shift of L keeps every edge; added texture does not.
    shifted = source + torch.tensor([5.0, 0.0, 0.0]).view(1, 3, 1, 1)
    noisy = source + torch.randn(source.shape, generator=torch.Generator().manual_seed(3)) * 5.0
    assert lightness_gradient_gap(shifted, source).max() < 1e-5
    assert lightness_gradient_gap(noisy, source).min() > 0.02
    # Paired items are judged by their target, not by the edge term.
    _, paired = transfer_loss(CTNOutput(noisy, []), source, weights, paired=torch.tensor([True, True]),
                              reference_lab=reference, source_lab=source)
    assert paired["gradient"] == 0.0


def test_the_edge_term_is_finite_for_images_one_pixel_wide():
    column = _lab(4)[..., :1]
    assert torch.isfinite(lightness_gradient_gap(column, column + 1.0)).all()


def test_the_structure_term_lets_contrast_change_but_not_edges():
    source = torch.nn.functional.avg_pool2d(_lab(0), 3, stride=1, padding=1)
    stretched = source.clone()
    stretched[:, 0] = (50.0 + 1.8 * (source[:, 0] - 50.0)).clamp(0, 100)
    noisy = source + torch.randn(source.shape, generator=torch.Generator().manual_seed(5)) * torch.tensor([6.0, 0, 0]).view(1, 3, 1, 1)
    assert torch.allclose(structure_similarity(source, source), torch.ones(2), atol=1e-4)
    assert structure_similarity(stretched, source).min() > 0.97
    assert structure_similarity(noisy, source).max() < 0.8
    # In the loss it counts for target-less items only, and its gradient reaches the output.
    weights = LossWeights(l1=0.0, deep_supervision=0.0, histogram=0.0, structure=1.0)
    output = noisy.clone().requires_grad_()
    total, parts = transfer_loss(CTNOutput(output, []), source, weights, paired=torch.tensor([True, False]),
                                 source_lab=source)
    assert parts["structure"] == pytest.approx(1.0 - float(structure_similarity(noisy, source)[1]), abs=1e-5)
    total.backward()
    assert output.grad[1].abs().sum() > 0 and output.grad[0].abs().sum() == 0
