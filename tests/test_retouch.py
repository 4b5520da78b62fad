import numpy as np
import pytest
import torch

from histocolor.training.data.retouch import RetouchStyle, apply_style, random_style


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


# ------------------------------------------------------------------------ realistic grades

from histocolor.training.data.retouch import (  # noqa: E402
    RealisticStyle,
    linear_to_srgb,
    random_flat_style,
    random_realistic_style,
    srgb_to_linear,
)


def _smooth(seed=0, size=96):
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    smooth = torch.nn.functional.avg_pool2d(image, 3, 1, padding=1, count_include_pad=False)[0]
    ramp = torch.linspace(0.05, 0.95, size).view(1, 1, size)  # dark on the left, bright on the right
    return (ramp + 0.3 * (smooth - 0.5)).clamp(0.0, 1.0)


def test_the_neutral_realistic_style_changes_nothing(image):
    assert torch.allclose(apply_style(image, RealisticStyle()), image, atol=1e-5)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(image)), image, atol=1e-5)


def test_exposure_works_in_linear_light():
    dark = torch.full((3, 8, 8), 0.2)  # well below the highlight knee after one stop
    pushed = apply_style(dark, RealisticStyle(stops=1.0))
    assert torch.allclose(srgb_to_linear(pushed), 2.0 * srgb_to_linear(dark), atol=1e-4)
    # Bright values roll off instead of clipping: distinct inputs stay distinct.
    bright = torch.linspace(0.7, 1.0, 8).view(1, 1, 8).expand(3, 8, 8)
    assert (apply_style(bright, RealisticStyle(stops=1.0))[0, 0].diff() > 0).all()


def test_the_inverse_curve_undoes_the_s_curve():
    from histocolor.training.data.retouch import _tone_curve

    ramp = torch.linspace(0.0, 1.0, 101)
    s_curve = _tone_curve(ramp, 0.6, 0.45)
    assert torch.allclose(_tone_curve(s_curve, -0.6, 0.45), ramp, atol=1e-4)
    assert s_curve[20] < ramp[20] and s_curve[80] > ramp[80]  # darker shadows, brighter highlights


@pytest.mark.parametrize("style", [
    RealisticStyle(shadows=0.8), RealisticStyle(highlights=-0.8), RealisticStyle(curve=0.7),
    RealisticStyle(curve=-0.5), RealisticStyle(clarity=0.4), RealisticStyle(vibrance=0.6),
    RealisticStyle(temperature=1.3, tint=0.95), RealisticStyle(stops=-1.5),
])
def test_every_realistic_tool_changes_the_photo_and_stays_in_range(style):
    photo = _smooth()
    graded = apply_style(photo, style)
    assert graded.shape == photo.shape and 0.0 <= graded.min() and graded.max() <= 1.0
    assert (graded - photo).abs().mean() > 0.003  # the neutral style: below 1e-5


def test_shadows_lift_dark_neighbourhoods_more_than_bright_ones():
    photo = torch.full((3, 32, 64), 0.1)
    photo[:, :, 32:] = 0.8
    lifted = apply_style(photo, RealisticStyle(shadows=1.0))
    assert lifted[:, :, :8].mean() > 1.5 * 0.1 and (lifted[:, :, -8:] - 0.8).abs().max() < 0.02


def test_clarity_raises_local_contrast_and_is_batched_like_single_images():
    photo = _smooth(1)
    crisp = apply_style(photo, RealisticStyle(clarity=0.4))
    detail = photo - torch.nn.functional.avg_pool2d(photo[None], 7, 1, 3, count_include_pad=False)[0]
    assert ((crisp - photo) * detail).sum() > 0
    batch = torch.stack([photo, _smooth(2)])
    assert torch.allclose(apply_style(batch, RealisticStyle(clarity=0.4, shadows=0.5))[0],
                          apply_style(photo, RealisticStyle(clarity=0.4, shadows=0.5)), atol=1e-5)


def test_random_realistic_styles_push_dark_photos_and_pull_bright_ones():
    rng = np.random.default_rng(0)
    dark, bright = torch.full((3, 8, 8), 0.08), torch.full((3, 8, 8), 0.9)
    pushes = [random_realistic_style(rng, photo=dark).stops for _ in range(40)]
    pulls = [random_realistic_style(rng, photo=bright).stops for _ in range(40)]
    assert np.mean(pushes) > 0.8 and np.mean(pulls) < -0.3
    assert max(pushes) <= 1.6 and min(pulls) >= -2.0
    flat = [random_flat_style(rng) for _ in range(20)]
    assert all(style.stops < 0 and style.curve < 0 for style in flat)  # raw-like: darker and flatter
