"""Tests for deband.metrics: PSNR, SSIM (against scikit-image) and CAMBI (against libvmaf-port
reference scores in ../shared/cambi-vectors when present, and self-contained behaviour tests)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from deband import metrics
from deband.io.pixels import luma_codes
from deband.metrics import cambi, cambi_heatmap, cambi_rgb, psnr, ssim

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "cambi-vectors"
EXAMPLES = VECTORS.parent / "reference-examples"
REFERENCE_FILES = {2: "expected.json", 4: "expected_max_log_contrast_4.json"}


def _vector_names() -> list[str]:
    path = VECTORS / REFERENCE_FILES[2]
    return sorted(json.loads(path.read_text())) if path.is_file() else ["vectors-absent"]


def _gradients(h: int = 540, w: int = 960) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal ramp over codes 300..400: 8-bit quantised (codes x 4) and 10-bit."""
    ramp = np.linspace(300, 400, w)
    eight = np.broadcast_to(np.rint(ramp / 4) * 4, (h, w)).astype(np.uint16)
    ten = np.broadcast_to(np.rint(ramp), (h, w)).astype(np.uint16)
    return eight, ten


# --- PSNR / SSIM ------------------------------------------------------------------------------


def test_psnr_identical_is_capped_high():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(psnr(x, x), torch.full((2,), 200.0))


def test_psnr_known_mse():
    x, ref = torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), 0.6)
    assert psnr(x, ref).shape == (1,)
    assert psnr(x, ref).item() == pytest.approx(20.0, abs=1e-4)  # mse 0.01
    assert psnr(x * 255, ref * 255, peak=255.0).item() == pytest.approx(20.0, abs=1e-4)


@pytest.mark.parametrize("noise", [0.02, 0.2])
def test_ssim_matches_skimage(noise):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 36, 44, generator=g), 3, 1)
    ref = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = ssim(x, ref)
    assert ours.shape == (2,) and ours.dtype == torch.float32
    for i in range(2):
        theirs = structural_similarity(
            x[i].permute(1, 2, 0).numpy().astype(np.float64),
            ref[i].permute(1, 2, 0).numpy().astype(np.float64),
            channel_axis=2,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert ours[i].item() == pytest.approx(theirs, abs=1e-3)


def test_ssim_identical_is_one_and_accepts_chw():
    x = torch.rand(1, 16, 16)
    assert ssim(x, x).shape == (1,)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_rejects_small_or_mismatched():
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))


# --- CAMBI against the reference vectors --------------------------------------------------------


@pytest.mark.parametrize("max_log_contrast", [2, 4])
@pytest.mark.parametrize("name", _vector_names())
def test_cambi_matches_reference_vectors(name, max_log_contrast):
    if not VECTORS.is_dir():
        pytest.skip(f"{VECTORS} not found")
    expected = json.loads((VECTORS / REFERENCE_FILES[max_log_contrast]).read_text())[name]
    luma = cv2.imread(str(VECTORS / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    score = cambi(luma, max_log_contrast=max_log_contrast)
    assert score == pytest.approx(expected, abs=max(0.02 * abs(expected), 0.02))


@pytest.mark.parametrize("name", ["banded-1", "banded-2", "banded-3", "seed-restored-1"])
def test_luma_codes_reproduce_vectors(name):
    if not (EXAMPLES / f"{name}.png").is_file() or not VECTORS.is_dir():
        pytest.skip("reference examples not found")
    bgr = cv2.imread(str(EXAMPLES / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    expected = cv2.imread(str(VECTORS / f"{name.replace('-', '_')}.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(luma_codes(bgr[..., ::-1] / 255.0), expected)


# --- CAMBI internals ------------------------------------------------------------------------------


def test_tvi_table_known_values_and_monotone():
    assert metrics._tvi_table(0.019, 2, "bt1886") == (178, 305, 432, 559)  # libvmaf's unit tests
    for eotf in ("bt1886", "pq"):
        for threshold in (0.005, 0.019, 0.05):
            table = metrics._tvi_table(threshold, 5, eotf)
            assert len(table) == 32 and all(np.diff(table) >= 0)
        lower = metrics._tvi_table(0.01, 4, eotf)
        assert all(a >= b for a, b in zip(lower, metrics._tvi_table(0.019, 4, eotf)))


def test_adjusted_window_follows_libvmaf():
    assert metrics._adjusted_window(65, 1080, 1920) == 33
    assert metrics._adjusted_window(65, 2160, 3840) == 65
    assert metrics._adjusted_window(65, 720, 1280) == 21


def test_spatial_mask_flat_versus_noise():
    rng = np.random.default_rng(0)
    assert metrics._spatial_mask(np.full((64, 64), 300, np.int32)).all()
    assert not metrics._spatial_mask(rng.integers(0, 1024, (64, 64), dtype=np.int32)).any()


def test_mode_filter_removes_isolated_pixel_and_keeps_edge_rows():
    img = np.full((5, 6), 200, np.int32)
    img[2, 3], img[0, 0] = 900, 7
    out = metrics._mode_filter(img)
    assert out[2, 3] == 200 and out[0, 0] == 7


def _brute_force_c_values(img, mask, window, tvi, weights=(1, 2, 3, 4)):
    """Per-pixel histograms straight from the definition (slow; small images only)."""
    pad, diffs = window // 2, len(tvi)
    counted = mask & (img <= tvi[-1] + diffs)
    c = np.zeros(img.shape, np.float32)
    for y, x in zip(*np.nonzero(mask & (img <= tvi[-1]))):
        box = (slice(max(y - pad, 0), y + pad + 1), slice(max(x - pad, 0), x + pad + 1))
        values = img[box][counted[box]]
        v = img[y, x]
        p0 = np.count_nonzero(values == v)
        for d in range(1, diffs + 1):
            p = max(np.count_nonzero(values == v + d), np.count_nonzero(values == v - d))
            if v <= tvi[d - 1]:
                c[y, x] = max(c[y, x], weights[d - 1] * p0 * p / (p0 + p))
    return c


@pytest.mark.parametrize("fallback_cost", [0, 1e15])  # most / no fallback
def test_c_values_match_brute_force(monkeypatch, fallback_cost):
    # Flat blocks: on the left of close values (residue box filters exact), on the right also
    # 16/32/.. codes apart (aliasing: exact fallback, in several small tiles); a random mask.
    monkeypatch.setattr(metrics, "_FALLBACK_COST", fallback_cost)
    monkeypatch.setattr(metrics, "_TILE", 16)
    rng = np.random.default_rng(1)
    close = rng.choice([100, 101, 102, 103, 105], (8, 6))
    wide = rng.choice([0, 1, 3, 100, 102, 104, 116, 132, 164, 300, 302, 556, 559, 560, 900], (8, 6))
    blocks = np.hstack([close, wide])
    img = np.kron(blocks, np.ones((8, 8), np.int32)).astype(np.int32)
    img[rng.random(img.shape) < 0.05] += 1
    mask = rng.random(img.shape) < 0.8
    tvi = metrics._tvi_table(0.019, 2, "bt1886")
    np.testing.assert_allclose(
        metrics._c_values(img, mask, 15, tvi), _brute_force_c_values(img, mask, 15, tvi), rtol=1e-6
    )


# --- CAMBI behaviour ------------------------------------------------------------------------------


def test_cambi_flat_is_zero():
    assert cambi(np.full((540, 960), 512, np.uint16)) == 0.0


def test_cambi_sees_8bit_steps_not_10bit_ramp():
    eight, ten = _gradients()
    s8, s10 = cambi(eight), cambi(ten)
    assert s8 > 10
    assert s10 < s8 / 5


def test_cambi_dither_lowers_score():
    eight, _ = _gradients()
    rng = np.random.default_rng(0)
    ramp = np.linspace(300, 400, eight.shape[1]) / 4
    dithered = (np.floor(ramp + rng.random(eight.shape)) * 4).astype(np.uint16)
    assert cambi(dithered) < cambi(eight) / 2


def test_cambi_coarse_steps_need_larger_max_log_contrast():
    h, w = 540, 960
    six_bit = np.broadcast_to(np.rint(np.linspace(300, 400, w) / 16) * 16, (h, w)).astype(np.int32)
    assert cambi(six_bit) == 0.0
    assert cambi(six_bit, max_log_contrast=4) > 5


def test_cambi_topk_pools_largest_values():
    eight, _ = _gradients()
    scores = [cambi(eight, topk=k) for k in (0.1, 0.6, 1.0)]
    assert scores[0] >= scores[1] >= scores[2] > 0


def test_cambi_heat_map():
    eight, _ = _gradients()
    score, heat = cambi(eight, return_map=True)
    assert score == pytest.approx(cambi(eight))
    assert heat.shape == eight.shape and heat.dtype == np.float32
    assert 0 < heat.max() <= 1 and heat.min() >= 0
    _, flat_heat = cambi(np.full((270, 480), 400, np.uint16), return_map=True)
    assert not flat_heat.any()


def test_cambi_rgb_and_heatmap_from_rgb():
    ramp = np.linspace(0.2, 0.4, 960)
    rgb = np.broadcast_to((np.rint(ramp * 255) / 255)[None, :, None], (540, 960, 3))
    assert cambi_rgb(rgb) == pytest.approx(cambi(luma_codes(rgb)))
    assert cambi_rgb(rgb) > 5
    heat = cambi_heatmap(rgb)
    assert heat.shape == (540, 960) and heat.max() > 0


def test_luma_codes_limited_range_codes():
    rgb = np.array([[[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0]]], np.float64)
    codes = luma_codes(rgb)
    assert codes.dtype == np.uint16 and codes.shape == (1, 4)
    assert codes.tolist() == [[64, 940, 502, round((16 + 219 * 0.2126) * 4)]]


@pytest.mark.parametrize(
    "luma, kwargs",
    [
        (np.zeros((64, 64, 3), np.uint16), {}),
        (np.zeros((64, 64), np.float32), {}),
        (np.full((64, 64), 1024, np.uint16), {}),
        (np.zeros((64, 64), np.uint16), {"window_size": 7}),
        (np.zeros((64, 64), np.uint16), {"topk": 0}),
        (np.zeros((64, 64), np.uint16), {"max_log_contrast": 6}),
        (np.zeros((64, 64), np.uint16), {"eotf": "srgb"}),
    ],
)
def test_cambi_rejects_bad_arguments(luma, kwargs):
    with pytest.raises(ValueError):
        cambi(luma, **kwargs)
