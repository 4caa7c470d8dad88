"""Handcrafted ScatterNet features for MNIST: a 2-D scattering transform written in torch.

The scattering transform (Mallat 2012; Bruna & Mallat 2013) is a fixed cascade of wavelet
convolutions and complex moduli followed by a local average:

.. math::
   S_0 x = x \\star \\phi_J, \\qquad
   S_1 x(j_1, \\theta_1) = |x \\star \\psi_{j_1,\\theta_1}| \\star \\phi_J, \\qquad
   S_2 x(j_1,\\theta_1,j_2,\\theta_2) =
   ||x \\star \\psi_{j_1,\\theta_1}| \\star \\psi_{j_2,\\theta_2}| \\star \\phi_J \\ (j_2 > j_1),

with Morlet wavelets :math:`\\psi_{j,\\theta}` at scales :math:`2^j` and ``L`` orientations and a
Gaussian low-pass :math:`\\phi_J` of width :math:`2^J`, subsampled by :math:`2^J`. With J = 2,
L = 8 a 28x28 digit gives 1 + 8 J + 64 J(J-1)/2 = 81 channels of 7x7: the features of Tramer &
Boneh 2021 ("Differentially private learning needs better features"), who reach 98.7% on MNIST
at epsilon = 2.93 with a linear model trained by DP-SGD on them.

Implementation: circular wavelet convolutions computed with the FFT on the 28x28 grid (MNIST
digits have a black border, so wrapping around is harmless); after the first modulus at scale
:math:`j_1`, signals are kept on a grid subsampled by :math:`2^{j_1}` (as kymatio does,
Andreux et al. 2020); the low-pass is a separable Gaussian applied in space as two small
matrix products. The filters carry no learned or data-dependent parameter, so computing the
features costs no privacy. :func:`group_normalize` (Wu & He 2018, without affine
parameters) normalises each example on its own: also data-independent.
"""

from __future__ import annotations

import math
import os
import tempfile

import torch
from tqdm.auto import tqdm

from helpers import checks, data, runtime

__all__ = ["group_normalize", "mnist_features", "morlet_filter", "scattering_features"]


def morlet_filter(size: int, sigma: float, xi: float, theta: float,
                  slant: float = 0.5) -> torch.Tensor:
    """A 2-D Morlet wavelet on a ``size`` x ``size`` periodic grid, in the Fourier domain.

    :math:`\\psi(u) = \\exp(-u^\\top \\Sigma^{-1} u / 2)\\,(e^{i\\xi u_\\theta} - \\beta)` with an
    elliptic envelope (width ``sigma``, slant ``slant`` across the direction ``theta``) and
    :math:`\\beta` chosen so that :math:`\\psi` has zero mean (Bruna & Mallat 2013). ``xi=0``
    gives the Gaussian low-pass (no :math:`\\beta` term). Returned as a complex64 tensor whose
    largest absolute Fourier coefficient is 1 (for ``xi=0``: the DC coefficient is 1).
    """
    size = checks.integer(size, "size", low=2)
    sigma = checks.real(sigma, "sigma", low=0.0, low_open=True)
    xi = checks.real(xi, "xi", low=0.0)
    theta = checks.real(theta, "theta")
    slant = checks.real(slant, "slant", low=0.0, low_open=True)
    coords = torch.arange(size, dtype=torch.float64)
    coords = torch.where(coords >= (size + 1) // 2, coords - size, coords)  # periodic distances
    # sum over neighbouring periods so that a wide filter wraps around correctly
    shifts = torch.arange(-2, 3, dtype=torch.float64) * size
    grid = coords[:, None] + shifts[None, :]  # (size, 5)
    uy = grid[:, None, :, None].expand(size, size, 5, 5)
    ux = grid[None, :, None, :].expand(size, size, 5, 5)
    c, s = math.cos(theta), math.sin(theta)
    along, across = c * ux + s * uy, -s * ux + c * uy
    envelope = torch.exp(-(along**2 + (across / slant) ** 2) / (2 * sigma**2))
    if xi == 0:
        spatial = envelope.sum(dim=(2, 3)).to(torch.complex128)
    else:
        wave = torch.exp(1j * xi * along)
        beta = (envelope * wave).sum() / envelope.sum()
        spatial = (envelope * (wave - beta)).sum(dim=(2, 3))
    spectrum = torch.fft.fft2(spatial)
    return (spectrum / spectrum.abs().max()).to(torch.complex64)


def _periodize(spectrum: torch.Tensor, factor: int) -> torch.Tensor:
    """Spectrum of the signal subsampled by ``factor`` in each axis (mean of the aliases),
    summed block by block (faster than a reshaped mean over complex numbers)."""
    k = spectrum.shape[-1] // factor
    out = None
    for a in range(factor):
        for b in range(factor):
            block = spectrum[..., a * k:(a + 1) * k, b * k:(b + 1) * k]
            out = block.clone() if out is None else out.add_(block)
    return out / factor**2


def _blocks(spectrum: torch.Tensor, factor: int) -> torch.Tensor:
    """(..., m, m) -> (..., factor^2, m / factor, m / factor): the aliased frequency blocks."""
    *lead, m, _ = spectrum.shape
    k = m // factor
    return torch.stack([spectrum[..., a * k:(a + 1) * k, b * k:(b + 1) * k]
                        for a in range(factor) for b in range(factor)], dim=-3)


def _lowpass_matrix(size: int, sigma: float, stride: int) -> torch.Tensor:
    """phi_J as a matrix: row r is the normalised 1-D Gaussian of width ``sigma`` centred at
    r * stride on a periodic grid of ``size``; the 2-D low-pass (separable) is A u A^T."""
    d = torch.arange(size, dtype=torch.float64)[None, :] - \
        (torch.arange(size // stride, dtype=torch.float64) * stride)[:, None]
    d = torch.remainder(d + size / 2, size) - size / 2  # periodic distance
    g = torch.exp(-(d**2) / (2 * sigma**2))
    return (g / g.sum(dim=1, keepdim=True)).to(torch.float32)


def _filter_bank(size: int, J: int, L: int) -> dict:
    bank = {"phi": {}, "psi": {}}
    for sub in range(J + 1):  # filters seen on the grid subsampled by 2^sub
        m = size // 2**sub
        bank["phi"][sub] = _lowpass_matrix(m, 0.8 * 2**J / 2**sub, 2 ** (J - sub))
        for j in range(sub, J):
            bank["psi"][(j, sub)] = torch.stack([
                morlet_filter(m, 0.8 * 2**j / 2**sub, 3 * math.pi / 4 / 2**j * 2**sub,
                              (L - 1 - ell) * math.pi / L, slant=4 / L)
                for ell in range(L)])
    return bank


def _lowpass(u: torch.Tensor, bank: dict, sub: int, J: int) -> torch.Tensor:
    """phi_J-average of real signals u (..., m, m) on the 2^sub grid, subsampled to the 2^J
    grid: the separable Gaussian as two small matrix products A u A^T."""
    a = bank["phi"][sub]
    return a @ u @ a.T


def _scatter_batch(x: torch.Tensor, bank: dict, J: int) -> torch.Tensor:
    x = x[:, 0].to(torch.float32)
    xhat = torch.fft.fft2(x)
    out = [_lowpass(x, bank, 0, J)[:, None]]
    first, second = [], []
    for j1 in range(J):
        u1 = torch.fft.ifft2(_periodize(xhat[:, None] * bank["psi"][(j1, 0)], 2**j1)).abs()
        first.append(_lowpass(u1, bank, j1, J))
        u1hat = torch.fft.fft2(u1)
        for j2 in range(j1 + 1, J):
            f = 2 ** (j2 - j1)  # periodize(u1hat * psi) as a contraction over alias blocks
            prod = torch.einsum("ntbkl,sbkl->ntskl", _blocks(u1hat, f),
                                _blocks(bank["psi"][(j2, j1)], f)) / f**2
            u2 = torch.fft.ifft2(prod).abs()
            second.append(_lowpass(u2.flatten(1, 2), bank, j2, J))
    out += first + second
    return torch.cat(out, dim=1)


@torch.no_grad()
def scattering_features(x: torch.Tensor, J: int = 2, L: int = 8,
                        batch_size: int = 250) -> torch.Tensor:
    """Scattering coefficients of images ``x`` (N, 1, H, W) in [0, 1]: a float32 tensor
    (N, 1 + L J + L^2 J (J-1)/2, H / 2^J, W / 2^J) on ``x``'s device; (N, 81, 7, 7) for MNIST
    with J = 2, L = 8 (Tramer & Boneh 2021). Channel order: S0, S1 by (j1, theta1), S2 by
    (j1, theta1, j2, theta2). ``H`` and ``W`` must be equal and divisible by 2^J."""
    x = checks.images(x, "x", channels=1)
    J = checks.integer(J, "J", low=1, high=4)
    L = checks.integer(L, "L", low=1, high=16)
    batch_size = checks.integer(batch_size, "batch_size", low=1)
    size = x.shape[-1]
    if x.shape[-2] != size or size % 2**J:
        raise ValueError(f"x must hold square images whose side is divisible by 2**J = {2**J}, "
                         f"got shape {tuple(x.shape)}")
    bank = _filter_bank(size, J, L)
    bank = {"phi": {k: v.to(x.device) for k, v in bank["phi"].items()},
            "psi": {k: v.to(x.device) for k, v in bank["psi"].items()}}
    starts = range(0, len(x), batch_size)
    chunks = [_scatter_batch(x[i:i + batch_size], bank, J)
              for i in tqdm(starts, desc="scattering", leave=False, disable=len(starts) < 4)]
    return torch.cat(chunks)


def group_normalize(features: torch.Tensor, groups: int = 27, eps: float = 1e-5) -> torch.Tensor:
    """Per-example group normalisation (Wu & He 2018) of (N, C, H, W) features, no affine
    parameters: within each of ``groups`` groups of C / groups channels, subtract the mean and
    divide by the standard deviation (over channels and positions of that example only), so it
    uses no statistic of other examples and costs no privacy. Returns (N, C, H, W)."""
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        raise TypeError("features must be a torch.Tensor shaped (N, C, H, W)")
    groups = checks.integer(groups, "groups", low=1)
    if features.shape[1] % groups:
        raise ValueError(f"groups must divide the {features.shape[1]} channels, got {groups}")
    eps = checks.real(eps, "eps", low=0.0, low_open=True)
    return torch.nn.functional.group_norm(features, groups, eps=eps)


def mnist_features(groups: int = 27) -> dict[str, torch.Tensor]:
    """ScatterNet features of all of MNIST (J = 2, L = 8, :func:`group_normalize` with
    ``groups``), flattened to (N, 3969): ``{"x_train", "y_train", "x_test", "y_test"}``.

    Computed once (about a minute on one CPU core) and cached as float16 under
    ``runtime.cache_dir() / "features"`` (atomic write, ``weights_only`` load); the values are
    rounded to float16 on the first run too, so a cached and a fresh run give the same
    numbers. The features depend on no statistic of the data set: computing them costs no
    privacy.
    """
    groups = checks.integer(groups, "groups", low=1)
    folder = runtime.cache_dir() / "features"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mnist_scattering_J2_L8_gn{groups}.pt"
    if path.exists():
        try:
            stored = torch.load(path, weights_only=True)
            return {k: v.float() if v.is_floating_point() else v for k, v in stored.items()}
        except (OSError, RuntimeError, KeyError) as exc:  # corrupted: recompute
            print(f"cached features unreadable ({type(exc).__name__}); recomputing")
    stored = {}
    for split in ("train", "test"):
        x, y = data.mnist_tensors(split)
        feats = group_normalize(scattering_features(x), groups=groups).flatten(1)
        stored[f"x_{split}"], stored[f"y_{split}"] = feats.half(), y
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(stored, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return {k: v.float() if v.is_floating_point() else v for k, v in stored.items()}
