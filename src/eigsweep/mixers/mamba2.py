"""Mamba-2 (SSD): scalar-per-head selective state space model with a short convolution.

λ_{i,h} = exp(Δ_{i,h} A_h), Δ = softplus(W_Δ u + dt_bias), A_h = −exp(A_log_h).
DSF per head (state N x P): h_i = λ_i h_{i-1} + Δ_i B_i x_iᵀ, y_i = C_iᵀ h_i + D_h x_i, where x, B, C come
from the causal depthwise convolution (k = 4, SiLU) of the projected input.
Option ``lti`` (the pseudo-LTI modification): λ_h = exp(−softplus(a_h)) constant, Δ_i kept in B_i.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer, RMSNorm, ShortConv


class Mamba2(Mixer):
    chunk = 64

    def __init__(self, cfg, layer_idx=0, lti: bool | None = None):
        super().__init__(cfg, layer_idx)
        d = cfg.d_model
        self.lti = bool(cfg.options.get("lti", False)) if lti is None else lti
        self.d_inner = cfg.expand * d
        self.head_dim = min(cfg.head_dim, self.d_inner)
        if self.d_inner % self.head_dim:
            raise ValueError(f"mamba2: expand*d_model={self.d_inner} is not a multiple of head_dim={self.head_dim}")
        self.n_heads = self.d_inner // self.head_dim
        self.d_state = cfg.d_state
        n_conv = self.d_inner + 2 * self.d_state
        self.in_proj = nn.Linear(d, self.d_inner + n_conv + self.n_heads, bias=False)
        self.conv = ShortConv(n_conv, cfg.conv_kernel)
        dt = torch.exp(torch.empty(self.n_heads).uniform_(math.log(1e-3), math.log(0.1)))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        if self.lti:  # λ_h = exp(−softplus(a_h)) replaces exp(Δ A_h)
            self.a = nn.Parameter(torch.empty(self.n_heads).uniform_(-8, -2))
        else:
            self.A_log = nn.Parameter(torch.log(torch.empty(self.n_heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = RMSNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d, bias=False)

    def features(self, u):
        B, L, _ = u.shape
        z, xbc, dt = torch.split(self.in_proj(u), [self.d_inner, self.d_inner + 2 * self.d_state, self.n_heads], -1)
        x, Bm, Cm = torch.split(self.conv(xbc), [self.d_inner, self.d_state, self.d_state], -1)
        dt = F.softplus(dt + self.dt_bias)                               # (B, L, H)
        if self.lti:
            log_lam = (-F.softplus(self.a)).expand(B, L, self.n_heads)
        else:
            log_lam = dt * -torch.exp(self.A_log)
        return dict(z=z, x=x.view(B, L, self.n_heads, self.head_dim), B=Bm, C=Cm, dt=dt, log_lam=log_lam)

    def forward(self, u):
        f = self.features(u)
        y = ssd_chunked(f["x"] * f["dt"][..., None], f["log_lam"], f["B"], f["C"], self.chunk)
        y = y + f["x"] * self.D[:, None]
        return self._out(y.flatten(2), f["z"])

    def _out(self, y, z):
        return self.out_proj(self.norm(y * F.silu(z)))

    def eigenvalues(self, u):
        return torch.exp(self.features(u)["log_lam"]).transpose(1, 2)   # (B, H, L)

    def dsf(self, u):
        f = self.features(u)
        x = f["x"].transpose(1, 2)                                       # (B, H, L, P)
        dt = f["dt"].transpose(1, 2)                                     # (B, H, L)
        inp = (dt[..., None, None] * f["B"][:, None, :, :, None]) * x[:, :, :, None, :]
        return DSF(lam=torch.exp(f["log_lam"]).transpose(1, 2)[..., None], inp=inp,
                   C=f["C"][:, None], D=x * self.D[:, None, None])

    def readout(self, y, u):
        return self._out(y.transpose(1, 2).flatten(2), self.features(u)["z"])


def segsum(a):
    """S[..., i, j] = a_{j+1} + … + a_i for j ≤ i, −inf above the diagonal (masked before any exp)."""
    cum = a.cumsum(dim=-1)
    diff = cum[..., :, None] - cum[..., None, :]
    T = a.shape[-1]
    return diff.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=a.device).tril(), float("-inf"))


def ssd_chunked(X, log_lam, Bm, Cm, chunk):
    """Chunked scan of h_i = exp(log_lam_i) h_{i-1} + B_i X_iᵀ, y_i = C_iᵀ h_i.

    X (b, L, H, P), log_lam (b, L, H), Bm and Cm (b, L, N). Returns y (b, L, H, P).
    """
    b, L, H, P = X.shape
    T = min(chunk, L)
    pad = (-L) % T
    if pad:
        X, log_lam, Bm, Cm = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (X, log_lam, Bm, Cm))
    n = X.shape[1] // T
    X = X.reshape(b, n, T, H, P).permute(0, 3, 1, 2, 4)               # (b, H, n, T, P)
    Bm, Cm = Bm.reshape(b, 1, n, T, -1), Cm.reshape(b, 1, n, T, -1)   # (b, 1, n, T, N)
    a = log_lam.reshape(b, n, T, H).permute(0, 3, 1, 2)               # (b, H, n, T)
    a_cum = a.cumsum(dim=-1)
    # inside each chunk: y_i = Σ_{j≤i} (C_i·B_j) exp(a_{j+1}+…+a_i) X_j
    y = ((Cm @ Bm.transpose(-1, -2)) * torch.exp(segsum(a))) @ X       # (b, H, n, T, P)
    # state at the end of each chunk from that chunk's inputs alone: Σ_j exp(a_{j+1..T}) B_j X_jᵀ
    to_end = torch.exp(a_cum[..., -1:] - a_cum)                        # (b, H, n, T)
    states = (Bm * to_end[..., None]).transpose(-1, -2) @ X             # (b, H, n, N, P)
    # carry states across chunks: state entering chunk c = Σ_{c'<c} decay(c'→c) states_{c'}
    carry = torch.exp(segsum(F.pad(a_cum[..., -1], (1, 0))))[..., :-1, 1:]   # (b, H, n, n)
    entering = torch.einsum("bhzc,bhcnp->bhznp", carry, states)
    y = y + (Cm * torch.exp(a_cum)[..., None]) @ entering                # (b, H, n, T, P)
    return y.permute(0, 2, 3, 1, 4).reshape(b, n * T, H, P)[:, :L]
