"""RetNet retention (Sun et al. 2023): linear attention with a constant decay per head.

Per head (state d_k x d_v):  S_i = γ_h S_{i-1} + k_i v_iᵀ,  o_i = S_iᵀ q_i,  γ_h = 1 − 2^{−5−h} (h = 0 … H−1),
fixed (a buffer, as in RetNet), so the spectrum is input-independent: eig_dims = ("head",).
q and k carry RetNet's rotation (xPos without its length scaling; option ``rotary``, default True),
which is part of the features, not of Λ: the recurrence stays real with Λ = γ_h I.
k is scaled by d_k^{-1/2}; output: per-head RMSNorm (RetNet's GroupNorm), ⊙ SiLU(W_g x), projection.
cfg.short_conv convolves q, k (and v) before the rotation.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import QKVMixer
from eigsweep.mixers.blocks import RMSNorm, gated_readout
from eigsweep.mixers.scan import chunked_decay_attention


def retention_decays(n_heads: int, dtype=torch.float64) -> torch.Tensor:
    """γ_h = 1 − 2^{−5−h}."""
    return 1.0 - 2.0 ** (-5.0 - torch.arange(n_heads, dtype=dtype))


def rotate(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate channel pairs (2m, 2m+1) of x (B, H, L, D) by angle i·θ_m at position i, θ_m = base^{−2m/D}."""
    L, D = x.shape[-2], x.shape[-1]
    theta = base ** (-torch.arange(0, D, 2, dtype=x.dtype, device=x.device) / D)
    angle = torch.arange(L, dtype=x.dtype, device=x.device)[:, None] * theta      # (L, D/2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class Retention(QKVMixer):
    eig_dims = ("head",)
    chunk = 64

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d = cfg.d_model
        self.rotary = bool(cfg.options.get("rotary", True))
        if self.rotary and self.head_dim % 2:
            raise ValueError(f"retnet: rotary needs an even head dim, got {self.head_dim}")
        self.register_buffer("gamma", retention_decays(self.n_heads), persistent=False)
        self.out_gate = nn.Linear(d, d, bias=False)
        self.norm = RMSNorm(self.head_dim)
        self.out = nn.Linear(d, d, bias=False)

    def features(self, u):
        """q, k (rotated; k scaled), v (B, H, L, head_dim) and γ (H,)."""
        q, k, v, _ = self.qkv_heads(u)
        if self.rotary:
            q, k = rotate(q), rotate(k)
        return dict(q=q, k=k / math.sqrt(self.head_dim), v=v, gamma=self.gamma.to(q.dtype))

    def forward(self, u):
        f = self.features(u)
        B, H, L, _ = f["q"].shape
        log_gamma = torch.log(f["gamma"])[None, :, None, None].expand(B, H, L, 1)
        return self.readout(chunked_decay_attention(f["q"], f["k"], f["v"], log_gamma, self.chunk), u)

    def eigenvalues(self, u):
        return self.features(u)["gamma"]                                  # (H,)

    def dsf(self, u):
        f = self.features(u)
        return DSF(lam=f["gamma"][None, :, None, None], inp=f["k"][..., :, None] * f["v"][..., None, :], C=f["q"])

    def readout(self, y, u):
        return gated_readout(y, u, self.norm, self.out_gate, self.out)
