import pytest
import torch

from deband.config import LossConfig
from deband.training.losses import RestorationLoss, fft_magphase_loss, fft_reim_loss, pixel_loss


@pytest.mark.parametrize("fn", [fft_magphase_loss, fft_reim_loss])
def test_fft_losses_zero_on_identical_with_finite_gradients(fn):
    x = torch.rand(2, 3, 32, 32)
    pred = x.clone().requires_grad_(True)
    loss = fn(pred, x)
    assert loss.shape == (2,)
    assert torch.allclose(loss, torch.zeros(2), atol=1e-6)
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all()


def test_fft_magphase_gradient_finite_on_flat_images():
    x = torch.full((1, 3, 16, 16), 0.5)
    pred = (x + 1e-3 * torch.randn_like(x)).requires_grad_(True)
    fft_magphase_loss(pred, x).sum().backward()
    assert torch.isfinite(pred.grad).all()


def test_phase_term_responds_to_a_shift_magnitude_does_not():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g)
    shifted = torch.roll(x, shifts=5, dims=-1)  # same |FFT|, different phase
    without_phase = fft_magphase_loss(shifted, x, phase_weight=0.0)
    with_phase = fft_magphase_loss(shifted, x, phase_weight=1.0)
    assert without_phase.item() < 1e-4
    assert with_phase.item() > 0.1


def test_phase_is_wrap_safe():
    x = torch.rand(1, 1, 16, 16)
    assert fft_magphase_loss(-x + 2 * x.mean(), -x + 2 * x.mean()).item() < 1e-6


def test_pixel_losses():
    a, b = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    assert pixel_loss(a, b, "l1").item() == pytest.approx(0.5)
    assert pixel_loss(a, b, "l2").item() == pytest.approx(0.25)
    assert pixel_loss(a, b, "charbonnier").item() == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError):
        pixel_loss(a, b, "l3")


@pytest.mark.parametrize("fft", ["magphase", "reim", "none"])
def test_restoration_loss_per_sample(fft):
    x = torch.rand(3, 3, 16, 16)
    loss = RestorationLoss(LossConfig(fft=fft))(x + 0.01, x)
    assert loss.shape == (3,) and (loss > 0).all()


def test_restoration_loss_rejects_unknown():
    with pytest.raises(ValueError):
        RestorationLoss(LossConfig(fft="wavelet"))(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4))


def test_normalised_loss_weighs_each_image_by_its_own_error():
    clean = torch.rand(2, 3, 16, 16)
    banded = clean + torch.tensor([0.1, 0.004])[:, None, None, None]  # a coarse and a fine error
    halfway = (clean + banded) / 2
    loss = RestorationLoss(LossConfig(fft="none", normalise=True))(halfway, clean, banded)
    assert torch.allclose(loss, torch.full((2,), 0.25), atol=1e-3)  # both removed half their error
    raw = RestorationLoss(LossConfig(fft="none", normalise=False))(halfway, clean, banded)
    assert raw[0] > 100 * raw[1]


def test_normalise_floor_caps_the_weight_of_almost_clean_inputs():
    """An input 0.1 off (MSE 1e-2) is normalised as before; one 0.001 off (MSE 1e-6) is
    divided by the floor instead of its own error, so it weighs a hundredth as much."""
    clean = torch.rand(2, 3, 16, 16)
    banded = clean + torch.tensor([0.1, 0.001])[:, None, None, None]
    halfway = (clean + banded) / 2
    loss = RestorationLoss(LossConfig(fft="none", normalise_floor=1e-4))(halfway, clean, banded)
    assert torch.allclose(loss, torch.tensor([0.25, 0.25 * 1e-6 / 1e-4]), rtol=1e-3)


def test_guarded_loss_scores_what_the_guard_lets_through():
    """Texture delivered as is: a prediction that smooths it is held within a quarter code of the
    input by the guard, so the guarded loss is far lower and the held pixels pass no gradient."""
    g = torch.Generator().manual_seed(0)
    degraded = (128 + torch.randint(-3, 4, (1, 1, 32, 32), generator=g).float()).expand(1, 3, 32, 32) / 255
    clean = degraded.clone()
    pred = torch.full_like(degraded, 128 / 255, requires_grad=True)  # the texture smoothed away
    plain = RestorationLoss(LossConfig(fft="none", normalise=False))(pred, clean, degraded)
    guarded = RestorationLoss(LossConfig(fft="none", normalise=False, guard=True))(pred, clean, degraded)
    assert guarded.item() < plain.item() / 4
    guarded.sum().backward()
    held = (pred.detach() - degraded).abs() > 0.25 / 255 + 1e-6
    assert held.any() and (pred.grad[held] == 0).all()
