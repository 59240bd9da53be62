"""Mamba-2 (SSD): scalar-per-head selective state space model with a short convolution.

λ_{i,h} = exp(Δ_{i,h} A_h), Δ = softplus(W_Δ u + dt_bias), A_h = −exp(A_log_h).
DSF per head (state N x P): h_i = λ_i h_{i-1} + Δ_i B_i x_iᵀ, y_i = C_iᵀ h_i + D_h x_i, where x, B, C come
from the causal depthwise convolution (k = 4, SiLU) of the projected input.

Mamba-2 "pseudo-LTI" (the modification; option ``lti`` of ``mamba2``, or the ``mamba2_lti`` mixer): constant
λ_h = exp(−softplus(a_h)), a_h ~ U(−8, −2) so λ ∈ (0.8808, 0.99966); Δ_i stays in the input matrix B_i = Δ_i b_i.
``Mamba2LTI`` reports that spectrum from parameters alone (one λ per head).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer
from eigsweep.mixers.blocks import RMSNorm, ShortConv, inv_softplus, log_uniform
from eigsweep.mixers.scan import ssd_chunked


class Mamba2(Mixer):
    chunk = 64
    always_lti = False

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d = cfg.d_model
        self.lti = self.always_lti or bool(cfg.options.get("lti", False))
        self.d_inner = cfg.expand * d
        self.head_dim = min(cfg.head_dim, self.d_inner)
        if self.d_inner % self.head_dim:
            raise ValueError(f"mamba2: expand*d_model={self.d_inner} is not a multiple of head_dim={self.head_dim}")
        self.n_heads = self.d_inner // self.head_dim
        self.d_state = cfg.d_state
        n_conv = self.d_inner + 2 * self.d_state
        self.in_proj = nn.Linear(d, self.d_inner + n_conv + self.n_heads, bias=False)
        self.conv = ShortConv(n_conv, cfg.conv_kernel)
        self.dt_bias = nn.Parameter(inv_softplus(torch.exp(log_uniform(self.n_heads))))
        if self.lti:  # λ_h = exp(−softplus(a_h)) replaces exp(Δ A_h)
            self.a = nn.Parameter(torch.empty(self.n_heads).uniform_(-8, -2))
        else:
            self.A_log = nn.Parameter(torch.log(torch.empty(self.n_heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = RMSNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d, bias=False)

    def features(self, u):
        """z (B, L, d_inner), x (B, L, H, P), B and C (B, L, N), Δ and log λ (B, L, H)."""
        B, L, _ = u.shape
        z, xbc, dt = torch.split(self.in_proj(u), [self.d_inner, self.d_inner + 2 * self.d_state, self.n_heads], -1)
        x, Bm, Cm = torch.split(self.conv(xbc), [self.d_inner, self.d_state, self.d_state], -1)
        dt = F.softplus(dt + self.dt_bias)
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


class Mamba2LTI(Mamba2):
    """Mamba-2 pseudo-LTI: the spectrum is input-independent, reported once per head."""
    eig_dims = ("head",)
    always_lti = True

    def eigenvalues(self, u):
        return torch.exp(self.features(u)["log_lam"][0, 0])                 # (H,), the same at every token
