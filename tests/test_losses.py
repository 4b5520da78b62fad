import torch

from histocolor.color import rgb_to_lab
from histocolor.losses import LossWeights, histogram_distance, transfer_loss
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
    assert histogram_distance(moved, target) < 1e-5
    _, parts = transfer_loss(CTNOutput(moved, []), target, LossWeights(histogram=1.0))
    assert parts["l1"] > 0.05 and parts["deep"] == 0.0


def test_gradients_reach_the_output():
    target = _lab(0)
    output = _lab(1).requires_grad_()
    total, _ = transfer_loss(CTNOutput(output, []), target)
    total.backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0
