"""The interface every mixer implements, and small building blocks they share."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.config import ModelConfig
from eigsweep.dsf import DSF, unroll


class Mixer(nn.Module):
    """A sequence mixer u (B, L, d) -> y (B, L, d), readable as a linear time-varying system.

    Subclasses implement ``forward``, ``eigenvalues`` and either ``dsf`` + ``readout`` or ``recurrence``.
    ``eig_dims`` names the dimensions of the tensor returned by ``eigenvalues``; "sample" and "time"
    may be absent for LTI models (eigenvalues from parameters alone).
    """

    eig_dims: tuple[str, ...] = ("sample", "head", "time")
    complex_eigenvalues: bool = False
    # parameters that define the spectrum (state matrices, step sizes): exempt from weight decay, which
    # would otherwise pull them towards 0 whatever the task (1-D parameters are always exempt)
    no_weight_decay: tuple[str, ...] = ()

    def __init__(self, cfg: ModelConfig, layer_idx: int = 0):
        super().__init__()
        self.cfg = cfg
        self.layer_idx = layer_idx

    def eigenvalues(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dsf(self, u: torch.Tensor) -> DSF:
        raise NotImplementedError

    def readout(self, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Map the DSF output y (B, H, L, P) to the mixer output (B, L, d)."""
        raise NotImplementedError

    def recurrence(self, u: torch.Tensor) -> torch.Tensor:
        """The mixer's output computed by stepping its DSF recurrence token by token."""
        return self.readout(unroll(self.dsf(u)), u)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, L, D = x.shape
    return x.view(B, L, n_heads, D // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    B, H, L, P = x.shape
    return x.transpose(1, 2).reshape(B, L, H * P)


class ShortConv(nn.Module):
    """Depthwise causal convolution over (B, L, C), followed by SiLU unless ``activation=False``."""

    def __init__(self, channels: int, kernel: int = 4, activation: bool = True):
        super().__init__()
        self.kernel, self.activation = kernel, activation
        self.conv = nn.Conv1d(channels, channels, kernel, groups=channels, padding=kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # y_t = Σ_k w_k x_{t-K+1+k} + b as K shifted products: much faster than Conv1d's backward on CPU
        L, K = x.shape[1], self.kernel
        xp = F.pad(x, (0, 0, K - 1, 0))
        w = self.conv.weight[:, 0, :]                    # (C, K)
        y = self.conv.bias + sum(xp[:, k : k + L] * w[:, k] for k in range(K))
        return F.silu(y) if self.activation else y


class QKVConv(nn.Module):
    """The 'short convolution' modification of attention-like mixers: on q, k (and v)."""

    def __init__(self, mode: str, d_q: int, d_k: int, d_v: int, kernel: int):
        super().__init__()
        self.mode = mode
        self.q = ShortConv(d_q, kernel) if mode in ("qk", "qkv") else nn.Identity()
        self.k = ShortConv(d_k, kernel) if mode in ("qk", "qkv") else nn.Identity()
        self.v = ShortConv(d_v, kernel) if mode == "qkv" else nn.Identity()

    def forward(self, q, k, v):
        return self.q(q), self.k(k), self.v(v)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def causal_mask(L: int, device=None) -> torch.Tensor:
    return torch.ones(L, L, dtype=torch.bool, device=device).tril()


def log_ratio_eigenvalues(log_eta: torch.Tensor) -> torch.Tensor:
    """λ_i = η_{i-1}/η_i = exp(log η_{i-1} − log η_i) over the last (time) dim; NaN at i = 0 (no λ)."""
    lam = torch.exp(log_eta[..., :-1] - log_eta[..., 1:])
    return torch.cat([torch.full_like(log_eta[..., :1], float("nan")), lam], dim=-1)
