import numpy as np
import pytest
import torch

from histocolor.data.retouch import RetouchStyle, apply_style, random_style


@pytest.fixture
def image():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(3, 24, 32, generator=generator)


def test_the_neutral_style_changes_nothing(image):
    assert RetouchStyle().is_neutral()
    assert torch.allclose(apply_style(image, RetouchStyle()), image, atol=1e-6)


@pytest.mark.parametrize(
    "style",
    [
        RetouchStyle(exposure=1.2),
        RetouchStyle(white_balance=(1.1, 1.0, 0.9)),
        RetouchStyle(gamma=(0.8, 1.0, 1.2)),
        RetouchStyle(contrast=0.3),
        RetouchStyle(saturation=0.5),
        RetouchStyle(hue_shift=0.3),
        RetouchStyle(shadow_tint=(0.05, 0.0, -0.05), highlight_tint=(-0.05, 0.0, 0.05)),
        RetouchStyle(fade=0.1),
    ],
)
def test_every_tool_changes_colours_and_stays_in_range(image, style):
    graded = apply_style(image, style)
    assert graded.shape == image.shape
    assert 0.0 <= graded.min() and graded.max() <= 1.0
    assert (graded - image).abs().mean() > 0.005


def test_a_style_depends_on_colour_only(image):
    """The same colour anywhere gets the same result: two photos can share one look."""
    style = random_style(np.random.default_rng(3), tools=1.0)
    shuffled = image.flatten(1)[:, torch.randperm(24 * 32, generator=torch.Generator().manual_seed(1))]
    graded_then_shuffled = apply_style(image, style).flatten(1)[
        :, torch.randperm(24 * 32, generator=torch.Generator().manual_seed(1))
    ]
    assert torch.allclose(apply_style(shuffled.view(3, 24, 32), style).flatten(1), graded_then_shuffled, atol=1e-5)


def test_random_styles_are_reproducible_and_varied():
    first = [random_style(np.random.default_rng(seed)) for seed in range(20)]
    again = [random_style(np.random.default_rng(seed)) for seed in range(20)]
    assert first == again
    assert len(set(first)) == 20 and sum(style.is_neutral() for style in first) < 3


def test_batched_images_are_graded_alike(image):
    style = random_style(np.random.default_rng(5), tools=1.0)
    batch = torch.stack([image, image.flip(-1)])
    graded = apply_style(batch, style)
    assert torch.allclose(graded[0], apply_style(image, style), atol=1e-6)
