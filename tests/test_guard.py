"""The detail guard: bands may be dissolved, detail keeps its delivered values within a quarter code."""

import numpy as np
import pytest
import torch

from deband.restore.guard import CODE, Guard

WIDE = Guard(grid=True, chroma=True)  # the guard with both widenings


def banded_ramp(h: int = 96, w: int = 192, step_codes: int = 1, width: int = 24) -> torch.Tensor:
    """A horizontal staircase: plateaus `width` px wide, each `step_codes` 8-bit codes above the
    last. (1, 3, h, w) on [0, 1]."""
    levels = (torch.arange(w) // width).float() * step_codes * CODE + 0.3
    return levels.expand(1, 3, h, w).clone()


def faint_texture(h: int = 96, w: int = 192, seed: int = 0) -> torch.Tensor:
    """8-bit codes of +-2 codes of noise around mid-grey: detail everywhere. (1, 3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    codes = 128 + torch.randint(-2, 3, (1, 1, h, w), generator=g).float()
    return (codes / 255).expand(1, 3, h, w).clone()


@pytest.mark.parametrize("step_codes", [1, 4])
def test_bands_get_room_to_dissolve(step_codes: int) -> None:
    b = Guard().bound(banded_ramp(step_codes=step_codes))
    # 0.6 of the band step: 1-code bands move 0.6 code, 6-bit bands 2.4
    assert torch.allclose(b, torch.full_like(b, 0.6 * step_codes * CODE))


def test_detail_moves_at_most_a_quarter_code() -> None:
    x = faint_texture()
    b = Guard().bound(x)
    assert torch.allclose(b, torch.full_like(b, 0.25 * CODE))
    smoothed = torch.full_like(x, 128 / 255)  # a restorer that erases the texture
    out = Guard()(x, smoothed)
    assert (out - x).abs().max() <= 0.25 * CODE + 1e-7
    # the guarded output is nearer the delivered texture than the erased one is
    assert (out - x).abs().mean() < (smoothed - x).abs().mean() * 0.6


def test_guard_changes_nothing_a_restorer_does_within_its_bound() -> None:
    x = banded_ramp()
    restored = x + 0.55 * CODE * torch.sin(torch.arange(x.shape[-1]).float())
    assert torch.allclose(Guard()(x, restored), restored, atol=1e-7)


def test_guard_keeps_odd_shapes_batches_and_types() -> None:
    x = torch.rand(2, 3, 37, 53)
    out = Guard()(x, torch.rand(2, 3, 37, 53))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert ((out - x).abs() <= Guard().bound(x) + 1e-7).all()


def test_bound_follows_the_local_content() -> None:
    """Bands on the left half, texture on the right: each half gets its own bound."""
    x = banded_ramp(h=128, w=256, step_codes=4, width=32)
    x[..., 128:] = faint_texture(h=128, w=128)
    b = Guard().bound(x)[0, 0]
    assert torch.allclose(b[:, :48], torch.full_like(b[:, :48], 2.4 * CODE))
    assert torch.allclose(b[:, -48:], torch.full_like(b[:, -48:], 0.25 * CODE))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="odd"):
        Guard(blocks=4)
    with pytest.raises(ValueError, match="block"):
        Guard(block=0)


def test_debander_applies_the_guard_unless_told_not_to() -> None:
    from deband.restore.debander import Debander

    class Eraser(torch.nn.Module):  # predicts mid-grey everywhere: erases all detail
        def forward(self, x, t):
            return torch.full_like(x, 128 / 255)

    x = faint_texture(48, 64)[0].permute(1, 2, 0).numpy()
    guarded = Debander.on_device(Eraser(), torch.device("cpu"), steps=1).restore(x)
    free = Debander.on_device(Eraser(), torch.device("cpu"), steps=1, guard=None).restore(x)
    assert np.abs(guarded - x).max() <= 0.25 / 255 + 1e-6
    assert np.allclose(free, 128 / 255)


def textured_on_grid(bits: int, h: int = 96, w: int = 192, seed: int = 0) -> torch.Tensor:
    """Texture (+-3 steps of noise) whose R'G'B' values sit on the levels of `bits` bits, as
    an 8-bit file holds them. (1, 3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    levels = 2**bits - 1
    steps = levels // 2 + torch.randint(-3, 4, (1, 3, h, w), generator=g).float()
    return (steps / levels * 255).round() / 255


@pytest.mark.parametrize("bits", [4, 5, 6, 7])
def test_texture_on_a_coarse_grid_may_move_half_its_step(bits: int) -> None:
    x = textured_on_grid(bits)
    b = WIDE.grid_bound(x)
    assert torch.allclose(b, torch.full_like(b, 0.5 / (2**bits - 1)))
    assert torch.equal(Guard().bound(x), torch.full_like(b[:, :1], 0.25 * CODE))
    restored = x + 0.45 / (2**bits - 1)  # within half a step: all of it kept
    assert torch.allclose(WIDE(x, restored), restored, atol=1e-6)


def test_no_grid_in_8_bit_texture_two_level_text_or_flat_areas() -> None:
    text = (torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    for x in (faint_texture(), text, torch.full((1, 3, 96, 96), 0.5)):
        assert WIDE.grid_bound(x).max() == 0
    assert torch.equal(WIDE(faint_texture(), torch.zeros(1, 3, 96, 192)),
                       Guard()(faint_texture(), torch.zeros(1, 3, 96, 192)))


def chroma_bands_over_texture(h: int = 128, w: int = 256) -> torch.Tensor:
    """Luma texture (+-2 codes) under Cb steps of 8 codes every 32 px, as 8-bit R'G'B'. (1, 3, h, w)."""
    from deband.io.pixels import ycbcr_to_rgb

    g = torch.Generator().manual_seed(3)
    y = 0.5 + torch.randint(-2, 3, (1, h, w), generator=g).float() * CODE
    cb = (torch.arange(w) // 32).float().expand(1, h, w) * 8 * CODE - 0.1
    rgb = ycbcr_to_rgb(torch.cat([y, cb, torch.zeros_like(y)])[None])
    return (rgb * 255).round() / 255


def test_chroma_bands_over_textured_luma_may_dissolve_but_luma_texture_stays() -> None:
    from deband.io.pixels import rgb_to_ycbcr, ycbcr_to_rgb

    x = chroma_bands_over_texture()
    assert Guard().bound(x).max() <= 0.25 * CODE + 1e-7  # luma texture: today's bound
    assert WIDE.chroma_bound(x)[:, 0].min() >= 0.6 * 7 * CODE  # Cb's own 8-code steps
    ycc = rgb_to_ycbcr(x)
    smooth = ycc.clone()
    ramp = ((torch.arange(x.shape[-1]) % 32) / 32 - 0.5) * 7 * CODE  # each Cb band made a ramp: up to 3.5 codes
    smooth[:, 1] += ramp
    out = rgb_to_ycbcr(WIDE(x, ycbcr_to_rgb(smooth)))
    assert (out[:, 1] - smooth[:, 1]).abs().max() < 0.05 * CODE  # the Cb change is kept
    assert (out[:, 0] - ycc[:, 0]).abs().max() <= 0.25 * CODE * 1.01  # luma texture moves no more than today


def test_faint_colour_detail_keeps_todays_bound() -> None:
    g = torch.Generator().manual_seed(4)
    x = (128 + torch.randint(-2, 3, (1, 3, 96, 192), generator=g).float()) / 255  # independent per channel
    assert WIDE.chroma_bound(x).max() == 0
    r = torch.rand(1, 3, 96, 192, generator=g)
    assert torch.equal(WIDE(x, r), Guard()(x, r))


def test_chroma_on_a_coarse_grid_may_move_half_its_step() -> None:
    """Cb/Cr stored at 5 bits (steps of 8 limited-range codes) over textured luma, delivered as
    8-bit R'G'B': the chroma's own grid lets each plane move 4 codes."""
    from deband.synthesis.delivery import store_ycbcr

    g = torch.Generator().manual_seed(6)
    y = 0.45 + 0.03 * torch.rand(1, 96, 192, generator=g)  # luma texture
    hue = torch.rand(2, 3, 6, generator=g) * 0.2 - 0.1  # blotches of colour 32 px wide
    hue = torch.nn.functional.interpolate(hue[None], scale_factor=32.0, mode="nearest")[0]
    from deband.io.pixels import ycbcr_to_rgb

    clean = ycbcr_to_rgb(torch.cat([y, hue])[None]).clamp(0, 1)[0]
    x = store_ycbcr(clean, 8, 5, source_bits=10)[None]
    x = (x * 255).round() / 255
    b = WIDE.chroma_bound(x) * 224
    assert b.median() >= 4 - 1e-4  # half of the 8-code step
    no_grid = Guard(chroma=True, chroma_grid_share=1.01, chroma_flat_diff=0.0)  # nothing counts as flat either
    assert no_grid.chroma_bound(x).max() == 0  # so it is the grid that gives the room
