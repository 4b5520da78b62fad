import numpy as np
import pytest
import torch

from histocolor.histogram import ab_histogram, hen_input, l_histogram


def _random_lab(rng, batch=2, size=24):
    lab = np.empty((batch, 3, size, size))
    lab[:, 0] = rng.uniform(0, 100, (batch, size, size))
    lab[:, 1:] = rng.uniform(-100, 100, (batch, 2, size, size))
    return torch.from_numpy(lab)


@pytest.mark.parametrize("kernel", ["hard", "gaussian", "triangular"])
def test_histograms_sum_to_one(rng, kernel):
    lab = _random_lab(rng)
    assert torch.allclose(l_histogram(lab, 8, kernel=kernel).sum(1), torch.ones(2, dtype=lab.dtype))
    assert torch.allclose(ab_histogram(lab, 64, kernel=kernel).sum((1, 2)), torch.ones(2, dtype=lab.dtype))


def test_hard_histograms_agree_with_numpy_histogramdd(rng):
    lab = _random_lab(rng, batch=1, size=40)
    values = lab[0].flatten(1).T.numpy()
    expected_ab, _ = np.histogramdd(values[:, 1:], bins=(np.linspace(-128, 128, 65),) * 2)
    expected_l, _ = np.histogramdd(values[:, :1], bins=(np.linspace(0, 100, 17),))
    assert np.allclose(ab_histogram(lab, 64)[0].numpy(), expected_ab / len(values))
    assert np.allclose(l_histogram(lab, 16)[0].numpy(), expected_l / len(values))


def test_weighted_histograms_agree_with_numpy(rng):
    lab = _random_lab(rng, batch=1, size=20)
    weights = torch.from_numpy(rng.random((1, 20, 20)))
    values = lab[0].flatten(1).T.numpy()
    expected, _ = np.histogramdd(values[:, 1:], bins=(np.linspace(-128, 128, 33),) * 2, weights=weights.flatten().numpy())
    assert np.allclose(ab_histogram(lab, 32, weights)[0].numpy(), expected / expected.sum())


@pytest.mark.parametrize("kernel", ["hard", "gaussian"])
def test_zero_weights_ignore_pixels(rng, kernel):
    lab = _random_lab(rng, batch=1, size=16)
    mask = torch.zeros(1, 16, 16, dtype=lab.dtype)
    mask[:, :8] = 1
    masked = ab_histogram(lab, 32, mask, kernel=kernel)
    cropped = ab_histogram(lab[..., :8, :].contiguous(), 32, kernel=kernel)
    assert torch.allclose(masked, cropped)
    assert torch.allclose(l_histogram(lab, 8, mask, kernel=kernel), l_histogram(lab[..., :8, :], 8, kernel=kernel))


def test_all_zero_weights_give_an_empty_histogram(rng):
    lab = _random_lab(rng, batch=1, size=8)
    assert ab_histogram(lab, 16, torch.zeros(1, 8, 8, dtype=lab.dtype)).sum() == 0


def test_soft_histograms_approach_hard_ones_as_bandwidth_shrinks(rng):
    lab = _random_lab(rng, batch=1, size=32)
    hard_ab, hard_l = ab_histogram(lab, 64), l_histogram(lab, 8)
    errors = [
        (ab_histogram(lab, 64, kernel="gaussian", bandwidth=h) - hard_ab).abs().sum().item()
        + (l_histogram(lab, 8, kernel="gaussian", bandwidth=h) - hard_l).abs().sum().item()
        for h in (1.0, 0.3, 0.1, 0.01, 0.001)
    ]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 1e-3 and errors[0] > 0.5


def test_soft_histograms_pass_gradients(rng):
    lab = _random_lab(rng, batch=1, size=8).requires_grad_()
    target = torch.from_numpy(rng.random((1, 16, 16)))
    loss = (ab_histogram(lab, 16, kernel="gaussian", bandwidth=1.0) - target).square().sum()
    loss = loss + l_histogram(lab, 8, kernel="triangular", bandwidth=1.0).square().sum()
    loss.backward()
    assert torch.isfinite(lab.grad).all() and lab.grad.abs().sum() > 0
    weighted = torch.from_numpy(rng.random((1, 8, 8))).requires_grad_()
    ab_histogram(lab.detach(), 16, weighted, kernel="gaussian")[0, 8, 8].backward()
    assert weighted.grad.abs().sum() > 0


def test_hen_input_stacks_ab_and_tiled_l(rng):
    lab = _random_lab(rng)
    stack = hen_input(lab, l_bins=8, ab_bins=64)
    assert stack.shape == (2, 9, 64, 64)
    assert torch.allclose(stack[:, 0], ab_histogram(lab, 64))
    lightness = l_histogram(lab, 8)
    assert torch.allclose(stack[:, 1:, 5, 17], lightness) and torch.allclose(stack[:, 1:, 63, 0], lightness)


def test_l_bins_limits(rng):
    lab = _random_lab(rng, batch=1, size=8)
    assert l_histogram(lab, 64).shape == (1, 64)
    with pytest.raises(ValueError):
        l_histogram(lab, 65)
    with pytest.raises(ValueError):
        ab_histogram(lab[:, :2], 8)
