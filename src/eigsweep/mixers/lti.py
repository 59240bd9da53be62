"""Building blocks shared by the linear time-invariant SSM mixers (s4, s4d, s5, lru).

Parallel forms only: an LTI recurrence h_i = λ h_{i-1} + x_i (diagonal λ) is a causal convolution of x
with the kernel λ^l, computed by FFT in O(L log L); no Python loop over tokens.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def causal_fft_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """y_i = Σ_{j≤i} k_{i-j} x_j along the last dim (length L); x and k broadcast, real or complex."""
    L = x.shape[-1]
    n = 2 * L
    if x.is_complex() or k.is_complex():
        y = torch.fft.ifft(torch.fft.fft(x, n=n) * torch.fft.fft(k, n=n), n=n)
    else:
        y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(k, n=n), n=n)
    return y[..., :L]


def diagonal_scan(x: torch.Tensor, log_lam: torch.Tensor) -> torch.Tensor:
    """h_i = λ h_{i-1} + x_i with constant diagonal λ = exp(log_lam) (N,), x (B, L, N) → h (B, L, N)."""
    L = x.shape[1]
    powers = torch.exp(torch.arange(L, device=x.device, dtype=log_lam.real.dtype)[None, :] * log_lam[:, None])
    return causal_fft_conv(x.transpose(1, 2), powers).transpose(1, 2)


def log_uniform(n: int, lo: float = 1e-3, hi: float = 1e-1) -> torch.Tensor:
    """log Δ with Δ log-uniform on [lo, hi] (the S4/S5 step-size initialisation)."""
    return torch.empty(n).uniform_(math.log(lo), math.log(hi))


def hippo_legs(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS (A, B): A_nk = −√(2n+1)√(2k+1) (n>k), −(n+1) (n=k), 0 (n<k); B_n = √(2n+1).
    A is lower triangular, so its eigenvalues are exactly −1, −2, …, −N."""
    r = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)
    A = -(r[:, None] * r[None, :]).tril(-1) - torch.diag(torch.arange(1, N + 1, dtype=torch.float64))
    return A, r.clone()


def hippo_n_eig(N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of HiPPO-N (the normal part of HiPPO-LegS): A_N = −½ I + S, S skew-symmetric
    with S_nk = −√(n+½)√(k+½) sign(n−k). Returns (eigenvalues −½ + iω, unitary eigenvectors) sorted by ω."""
    r = torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)
    S = -(r[:, None] * r[None, :]) * torch.sign(torch.arange(N)[:, None] - torch.arange(N)[None, :]).double()
    w, V = torch.linalg.eigh(-1j * S.to(torch.complex128))     # −iS is Hermitian: S = V diag(i w) Vᴴ
    return -0.5 + 1j * w, V


class GLUOutput(nn.Module):
    """The position-wise output of the S4/S5/LRU layers ("full GLU"): GELU, then W₁y ⊙ σ(W₂y)."""

    def __init__(self, d: int):
        super().__init__()
        self.proj = nn.Linear(d, 2 * d)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.glu(self.proj(F.gelu(y)), dim=-1)


def complex_param(z: torch.Tensor) -> nn.Parameter:
    """A complex initial value stored as a real (..., 2) parameter, so that .double()/.float() and every
    optimiser treat it like any other weight; read it back with ``as_complex``."""
    return nn.Parameter(torch.view_as_real(z.to(torch.complex128)).float().contiguous())


def as_complex(p: torch.Tensor) -> torch.Tensor:
    return torch.complex(p[..., 0], p[..., 1])


def with_conjugates(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """[x, x̄] along dim: the modes of a conjugate-symmetric (real) system."""
    return torch.cat([x, x.conj()], dim=dim)
