import pytest
import torch

from deband.model.indi import interpolate, sample, sample_t, timesteps


def test_interpolate_endpoints():
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert torch.equal(interpolate(x, y, torch.zeros(2)), x)
    assert torch.allclose(interpolate(x, y, torch.ones(2)), y)
    mid = interpolate(x, y, torch.tensor([0.25, 0.75]))
    assert torch.allclose(mid[0], 0.75 * x[0] + 0.25 * y[0])


def test_interpolate_noise_needs_tensor():
    x = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError):
        interpolate(x, x, torch.ones(1), eps=0.1)


@pytest.mark.parametrize("steps", [1, 2, 7, 30])
@pytest.mark.parametrize("t_start", [1.0, 0.5])
def test_oracle_denoiser_returns_clean(steps, t_start):
    clean, banded = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    out = sample(lambda x_t, t: clean, banded, steps, t_start=t_start)
    assert torch.equal(out, clean)


def test_oracle_with_noise_returns_clean():
    clean, banded = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    g = torch.Generator().manual_seed(1)
    out = sample(lambda x_t, t: clean, banded, 5, eps=0.1, generator=g)
    assert torch.allclose(out, clean)


def test_identity_denoiser_keeps_input_and_t_decreases():
    y = torch.rand(1, 3, 8, 8)
    seen = []

    def identity(x_t, t):
        seen.append(float(t[0]))
        return x_t

    assert torch.allclose(sample(identity, y, 4), y)
    assert seen == [1.0, 0.75, 0.5, 0.25]


def test_one_step_is_plain_regression():
    y = torch.rand(1, 3, 8, 8)
    out = sample(lambda x_t, t: x_t * 0.5, y, 1)
    assert torch.allclose(out, y * 0.5)


def test_noise_is_reproducible_with_generator():
    y = torch.rand(1, 3, 8, 8)
    f = lambda x_t, t: x_t * 0.9  # noqa: E731
    a = sample(f, y, 3, eps=0.05, generator=torch.Generator().manual_seed(3))
    b = sample(f, y, 3, eps=0.05, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_sample_t_range_and_ones():
    g = torch.Generator().manual_seed(0)
    t = sample_t(10_000, g, one_fraction=0.3)
    assert t.min() > 0 and t.max() <= 1
    assert 0.25 < (t == 1).float().mean() < 0.35


@pytest.mark.parametrize("steps,t_start", [(0, 1.0), (3, 0.0), (3, 1.5)])
def test_timesteps_rejects_bad_arguments(steps, t_start):
    with pytest.raises(ValueError):
        timesteps(steps, t_start)
