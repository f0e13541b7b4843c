"""Perturbation norms, PSNR and SSIM: known answers and an independent SSIM reference."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from engine import distances as D

# --------------------------------------------------------------------------- image distances


def test_perturbation_norms_crafted_delta():
    clean = np.full((2, 4, 4, 3), 100, np.uint8)
    adv = clean.copy()
    adv[0, 1, 2, 0] = 103  # +3
    adv[0, 3, 0, 2] = 96  # -4   -> L2 = 5, Linf = 4, 2 of 16 pixels changed
    adv[0, 3, 0, 1] = 101  # same pixel, another channel: L2 = sqrt(26), still 2 pixels
    norms = D.perturbation_norms(clean, adv)
    assert set(norms) == {"linf", "l2", "l0_share"}
    np.testing.assert_allclose(norms["linf"], [4.0, 0.0])
    np.testing.assert_allclose(norms["l2"], [math.sqrt(26), 0.0])
    np.testing.assert_allclose(norms["l0_share"], [2 / 16, 0.0])


def test_no_uint8_overflow():
    black = np.zeros((4, 4, 3), np.uint8)
    white = np.full((4, 4, 3), 255, np.uint8)
    norms = D.perturbation_norms(black, white)  # single image -> arrays of shape (1,)
    assert norms["linf"].shape == (1,)
    assert norms["linf"][0] == 255.0
    assert norms["l2"][0] == pytest.approx(255.0 * math.sqrt(48))
    assert norms["l0_share"][0] == 1.0
    assert D.psnr(black, white) == pytest.approx(0.0)  # uint8 wrap-around would give 48 dB


def test_psnr_known_answer_and_identical():
    a = np.full((8, 8, 3), 100.0)
    for d in (1, 5, 20):
        assert D.psnr(a, a + d) == pytest.approx(10 * math.log10(255**2 / d**2))
    assert D.psnr(a, a) == math.inf
    batch_a = np.stack([a, a, a])
    batch_b = np.stack([a + 5, a, a - 20])
    out = D.psnr_batch(batch_a, batch_b)
    assert out[0] == pytest.approx(10 * math.log10(255**2 / 25))
    assert out[1] == math.inf
    assert out[2] == pytest.approx(10 * math.log10(255**2 / 400))


def _rand_image(seed, shape=(32, 32, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_ssim_identity_and_decreasing_with_noise():
    img = cv2.GaussianBlur(_rand_image(0), (5, 5), 2)  # some structure
    assert D.ssim(img, img) == pytest.approx(1.0)
    noise = np.random.default_rng(1).standard_normal(img.shape)
    values = [D.ssim(img, np.clip(img + s * noise, 0, 255)) for s in (2, 10, 40)]
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_constant_images_known_value():
    # constant images: mu_x = 100, mu_y = 150, all (co)variances 0, so
    # SSIM = (2*100*150 + C1) * C2 / ((100^2 + 150^2 + C1) * C2) = (30000 + C1) / (32500 + C1)
    c1 = (0.01 * 255) ** 2  # 6.5025
    expected = (30000 + c1) / (32500 + c1)
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 150, np.uint8)
    assert D.ssim(a, b) == pytest.approx(expected, rel=1e-9)
    assert D.ssim(a[..., 0], b[..., 0]) == pytest.approx(expected, rel=1e-9)  # grey


def _ssim_reference_cv2(a, b):
    """Independent reference: OpenCV Gaussian filter, then crop to the 'valid' part."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float64), b.astype(np.float64)

    def f(z):
        return cv2.GaussianBlur(z, (11, 11), 1.5)[5:-5, 5:-5]

    vals = []
    for ch in range(x.shape[2]):
        xc, yc = x[..., ch].copy(), y[..., ch].copy()
        mx, my = f(xc), f(yc)
        vx, vy, cxy = f(xc * xc) - mx**2, f(yc * yc) - my**2, f(xc * yc) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        vals.append(s.mean())
    return float(np.mean(vals))


def test_ssim_matches_independent_reference_and_batch():
    a = cv2.GaussianBlur(_rand_image(2, (24, 30, 3)), (3, 3), 1)
    b = np.clip(a + np.random.default_rng(3).normal(0, 15, a.shape), 0, 255)
    expected = _ssim_reference_cv2(a, b)
    assert D.ssim(a, b) == pytest.approx(expected, rel=1e-9)
    # grey image == RGB image with three equal channels
    g = a[..., 0]
    assert D.ssim(g, b[..., 0]) == pytest.approx(
        D.ssim(np.stack([g] * 3, -1), np.stack([b[..., 0]] * 3, -1)), rel=1e-12
    )
    batch = D.ssim_batch(np.stack([a, a]), np.stack([b, a]))
    assert batch.shape == (2,)
    assert batch[0] == pytest.approx(expected, rel=1e-9)
    assert batch[1] == pytest.approx(1.0)
