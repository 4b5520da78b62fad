import numpy as np
import torch
from skimage import color as skcolor

from histocolor.color import denormalize_lab, lab_to_rgb, normalize_lab, rgb_to_lab
from histocolor.imageio import read_image

from conftest import SAMPLES


def _to_tensor(rgb):
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]


def test_rgb_to_lab_matches_scikit_image_on_random_colors(rng):
    rgb = rng.random((64, 64, 3))
    ours = rgb_to_lab(_to_tensor(rgb))[0].numpy().transpose(1, 2, 0)
    assert np.abs(ours - skcolor.rgb2lab(rgb)).max() < 0.01


def test_rgb_to_lab_matches_scikit_image_on_real_photos():
    for name in ("source.jpg", "reference.jpg"):
        rgb = read_image(SAMPLES / name).rgb.astype(np.float64) / 255
        ours = rgb_to_lab(_to_tensor(rgb))[0].numpy().transpose(1, 2, 0)
        assert np.abs(ours - skcolor.rgb2lab(rgb)).max() < 0.01


def test_float32_batches_agree_with_scikit_image(rng):
    rgb = rng.random((2, 5, 16, 16, 3)).astype(np.float32)
    ours = rgb_to_lab(torch.from_numpy(rgb).movedim(-1, -3)).movedim(-3, -1).numpy()
    assert ours.shape == rgb.shape
    assert np.abs(ours - skcolor.rgb2lab(rgb.reshape(-1, 16, 3)).reshape(rgb.shape)).max() < 0.01


def test_lab_to_rgb_matches_scikit_image_and_round_trips(rng):
    rgb = rng.random((32, 32, 3))
    lab = skcolor.rgb2lab(rgb)
    back = lab_to_rgb(_to_tensor(lab))[0].numpy().transpose(1, 2, 0)
    assert np.abs(back - skcolor.lab2rgb(lab)).max() < 1e-4
    assert np.abs(back - rgb).max() < 1e-4


def test_lab_to_rgb_clips_out_of_gamut_colors():
    lab = torch.tensor([[[[100.0]], [[120.0]], [[-120.0]]]], dtype=torch.float64)
    clipped = lab_to_rgb(lab)
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert lab_to_rgb(lab, clip=False).max() > 1


def test_conversions_are_differentiable(rng):
    rgb = torch.from_numpy(0.05 + 0.9 * rng.random((1, 3, 3, 3))).requires_grad_()
    assert torch.autograd.gradcheck(rgb_to_lab, (rgb,), eps=1e-6, atol=1e-4)
    lab = rgb_to_lab(rgb.detach()).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: lab_to_rgb(x, clip=False), (lab,), eps=1e-6, atol=1e-4)


def test_the_conversions_match_kornias(rng):
    """kornia is the reference implementation; the network's own conversions avoid its import."""
    from kornia.color import lab_to_rgb as kornia_lab_to_rgb
    from kornia.color import rgb_to_lab as kornia_rgb_to_lab

    rgb = torch.from_numpy(rng.random((2, 3, 40, 40)).astype(np.float32))
    rgb[0, :, 0, :6] = torch.tensor([[0, 1, 1, 0, 0, 0.04], [0, 1, 0, 1, 0, 0.04], [0, 1, 0, 0, 1, 0.04]])
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape and lab.dtype == rgb.dtype
    assert (lab - kornia_rgb_to_lab(rgb)).abs().max() < 1e-3  # Lab units, far below one 8-bit level
    beyond = lab * torch.tensor([1.2, 1.5, 1.5]).view(3, 1, 1) + torch.tensor([5.0, 10.0, -10.0]).view(3, 1, 1)
    for clip in (True, False):
        assert (lab_to_rgb(beyond, clip=clip) - kornia_lab_to_rgb(beyond, clip=clip)).abs().max() < 1e-4


def test_normalised_lab_round_trips_and_is_about_unit_range(rng):
    lab = rgb_to_lab(torch.from_numpy(rng.random((1, 3, 8, 8))))
    normalised = normalize_lab(lab)
    assert normalised.abs().max() <= 1.01
    assert torch.allclose(denormalize_lab(normalised), lab)


# --------------------------------------------------------------- the numpy twin (issue 26)


def test_the_numpy_conversions_match_the_torch_ones(rng):
    """histocolor.colorspace (numpy, for the paths without torch) against histocolor.color (torch)."""
    from histocolor import colorspace

    rgb = rng.random((4000, 3)).astype(np.float32)
    rgb[:8] = [[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.04, 0.04, 0.04], [0.05, 0.0, 1.0], [0.5, 0.5, 0.5]]
    as_tensor = torch.from_numpy(np.ascontiguousarray(rgb.T)).unsqueeze(-1)  # (3, N, 1)
    theirs = rgb_to_lab(as_tensor).squeeze(-1).numpy().T
    ours = colorspace.rgb_to_lab(rgb)
    assert ours.dtype == np.float32 and ours.shape == rgb.shape
    assert np.abs(ours - theirs).max() < 1e-3  # Lab units; a 1e-3 error is far below one 8-bit level
    # Lab beyond the gamut too: scaled and shifted colours, clipped and not.
    lab = theirs * np.float32([1.2, 1.5, 1.5]) + np.float32([5, 10, -10])
    lab_tensor = torch.from_numpy(np.ascontiguousarray(lab.T)).unsqueeze(-1)
    for clip in (True, False):
        theirs_rgb = lab_to_rgb(lab_tensor, clip=clip).squeeze(-1).numpy().T
        assert np.abs(colorspace.lab_to_rgb(lab, clip=clip) - theirs_rgb).max() < 1e-4
    assert np.abs(colorspace.lab_to_rgb(ours) - rgb).max() < 1e-4  # and it round-trips
    # Any leading shape: an image (H, W, 3) is converted pixel by pixel.
    image = rgb[:12].reshape(3, 4, 3)
    assert np.array_equal(colorspace.rgb_to_lab(image), ours[:12].reshape(3, 4, 3))
