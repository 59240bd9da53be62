"""Mamba-1 (S6): a selective diagonal SSM per channel and state, with a short convolution and a gate.

u → in_proj → (x, z); x → causal depthwise conv (k = ``conv_kernel``) + SiLU; from x: Δ = softplus(W_Δ(W_r x) +
b_Δ) per channel d (rank R = ⌈d_model/16⌉), B_i, C_i ∈ R^N (shared over channels). Per channel d and state n:

    h_{i,d,n} = λ_{i,d,n} h_{i-1,d,n} + Δ_{i,d} B_{i,n} x_{i,d},   λ_{i,d,n} = exp(Δ_{i,d} A_{d,n}),
    y_{i,d} = Σ_n C_{i,n} h_{i,d,n} + D_d x_{i,d},   out = W_out(y ⊙ SiLU(z)).

A_{d,n} = −exp(A_log) initialised −n (S4D-real, n = 1…N); b_Δ = softplus⁻¹(Δ₀), Δ₀ log-uniform [1e-3, 0.1].
Reversed sigmoid: with s the pre-activation of Δ and a = −A, λ = exp(−a·softplus(s)) = σ(−s)^a.
eig_dims = (sample, head, time, state) with head = inner channel d (D = expand·d_model heads, N states each).
Forward: selective_scan_triton.selective_scan: on CUDA a fused Triton scan that never builds a (B, L, D, N)
tensor; elsewhere (CPU, float64, no Triton) scan.linear_scan, a parallel hierarchical scan with a hand-written
backward, so memory stays at a few (B, L, D, N) tensors; no Python loop over tokens.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer
from eigsweep.mixers.blocks import ShortConv, inv_softplus, log_uniform
from eigsweep.mixers.selective_scan_triton import selective_scan


class Mamba(Mixer):
    no_weight_decay = ("A_log",)
    eig_dims = ("sample", "head", "time", "state")

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d = cfg.d_model
        self.d_inner, self.d_state = cfg.expand * d, cfg.d_state
        self.dt_rank = math.ceil(d / 16)
        self.in_proj = nn.Linear(d, 2 * self.d_inner, bias=False)
        self.conv = ShortConv(self.d_inner, cfg.conv_kernel)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_softplus(torch.exp(log_uniform(self.d_inner))))
        n = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_log = nn.Parameter(torch.log(n).repeat(self.d_inner, 1))    # (D, N)
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d, bias=False)

    def features(self, u, lam=True):
        """x, z, Δ (B, L, D), the Δ pre-activation s, B and C (B, L, N), and log λ = Δ·A (B, L, D, N) if lam."""
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = self.conv(x)
        r, Bm, Cm = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        s = self.dt_proj(r)
        dt = F.softplus(s)
        log_lam = dt[..., None] * -torch.exp(self.A_log) if lam else None
        return dict(x=x, z=z, s=s, dt=dt, B=Bm, C=Cm, log_lam=log_lam)

    def forward(self, u):
        f = self.features(u, lam=False)   # the fused scan never needs the (B, L, D, N) tensor of λ
        y = selective_scan(f["x"], f["dt"], -torch.exp(self.A_log), f["B"], f["C"], self.D)
        return self._out(y, f["z"])

    def _out(self, y, z):
        return self.out_proj(y * F.silu(z))

    def eigenvalues(self, u):
        return torch.exp(self.features(u)["log_lam"]).permute(0, 2, 1, 3)  # (B, D, L, N)

    def dsf(self, u):
        f = self.features(u)
        x = f["x"].transpose(1, 2)                                          # (B, D, L)
        inp = (f["dt"].transpose(1, 2) * x)[..., None, None] * f["B"][:, None, :, :, None]
        return DSF(lam=torch.exp(f["log_lam"]).permute(0, 2, 1, 3), inp=inp, C=f["C"][:, None],
                   D=(x * self.D[:, None])[..., None])

    def readout(self, y, u):
        return self._out(y[..., 0].transpose(1, 2), self.features(u)["z"])

