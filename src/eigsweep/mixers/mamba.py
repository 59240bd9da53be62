"""Mamba-1 (S6): a selective diagonal SSM per channel and state, with a short convolution and a gate.

u → in_proj → (x, z); x → causal depthwise conv (k = ``conv_kernel``) + SiLU; from x: Δ = softplus(W_Δ(W_r x) +
b_Δ) per channel d (rank R = ⌈d_model/16⌉), B_i, C_i ∈ R^N (shared over channels). Per channel d and state n:

    h_{i,d,n} = λ_{i,d,n} h_{i-1,d,n} + Δ_{i,d} B_{i,n} x_{i,d},   λ_{i,d,n} = exp(Δ_{i,d} A_{d,n}),
    y_{i,d} = Σ_n C_{i,n} h_{i,d,n} + D_d x_{i,d},   out = W_out(y ⊙ SiLU(z)).

A_{d,n} = −exp(A_log) initialised −n (S4D-real, n = 1…N); b_Δ = softplus⁻¹(Δ₀), Δ₀ log-uniform [1e-3, 0.1].
Reversed sigmoid: with s the pre-activation of Δ and a = −A, λ = exp(−a·softplus(s)) = σ(−s)^a.
eig_dims = (sample, head, time, state) with head = inner channel d (D = expand·d_model heads, N states each).
Forward: a parallel hierarchical scan over time (Hillis–Steele in chunks of 8, recursively over chunks) with a hand-written backward (a reverse scan), so memory
stays at a few (B, L, D, N) tensors; no Python loop over tokens. On CUDA the forward uses the fused Triton scan of
selective_scan_triton.py instead, which never builds a (B, L, D, N) tensor.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers import selective_scan_triton
from eigsweep.mixers.base import Mixer, ShortConv


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
        dt = torch.exp(torch.empty(self.d_inner).uniform_(math.log(1e-3), math.log(0.1)))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))      # softplus⁻¹(dt)
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
        if selective_scan_triton.fused_available(u):   # CUDA: fused Triton scan, no (B, L, D, N) tensor
            f = self.features(u, lam=False)
            y = selective_scan_triton.selective_scan(f["x"], f["dt"], -torch.exp(self.A_log), f["B"], f["C"], self.D)
            return self._out(y, f["z"])
        f = self.features(u)
        inp = (f["dt"] * f["x"])[..., None] * f["B"][:, :, None, :]       # (B, L, D, N)
        h = selective_scan(torch.exp(f["log_lam"]), inp)
        y = torch.einsum("bldn,bln->bld", h, f["C"]) + f["x"] * self.D
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


def _local_scan(a: torch.Tensor, b: torch.Tensor):
    """Hillis–Steele inclusive scan over dim 1: prefix products of a and h_i = a_i h_{i-1} + b_i."""
    a, b = a.clone(), b.clone()
    L, s = a.shape[1], 1
    while s < L:
        b[:, s:] += a[:, s:] * b[:, :-s]        # right side is evaluated before the in-place update
        a[:, s:] *= a[:, :-s].clone()
        s *= 2
    return a, b


def _scan(a: torch.Tensor, b: torch.Tensor, T: int = 8) -> torch.Tensor:
    """Inclusive scan h_i = a_i h_{i-1} + b_i over dim 1, hierarchically: a local scan inside chunks of T
    tokens, the same scan (recursively) over the chunks' end states, then one pass adding the carried state."""
    L = a.shape[1]
    if L <= T:
        return _local_scan(a, b)[1]
    pad = (-L) % T
    if pad:
        a = torch.cat([a, a.new_ones(a.shape[0], pad, *a.shape[2:])], dim=1)
        b = torch.cat([b, b.new_zeros(b.shape[0], pad, *b.shape[2:])], dim=1)
    B, n, rest = a.shape[0], a.shape[1] // T, a.shape[2:]
    A_loc, h_loc = _local_scan(a.reshape(B * n, T, *rest), b.reshape(B * n, T, *rest))
    A_loc, h_loc = A_loc.view(B, n, T, *rest), h_loc.view(B, n, T, *rest)
    ends = _scan(A_loc[:, :, -1], h_loc[:, :, -1], T)              # state at the end of each chunk
    entering = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], dim=1)
    h_loc += A_loc * entering[:, :, None]
    return h_loc.view(B, n * T, *rest)[:, :L]


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        h = _scan(a, b)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, g):
        a, h = ctx.saved_tensors
        # adjoint: G_i = g_i + a_{i+1} G_{i+1} (a reverse scan); dL/db = G, dL/da_i = G_i h_{i-1}
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)
        G = _scan(a_next.flip(1), g.flip(1)).flip(1)
        h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        return G * h_prev, G


def selective_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_i = a_i ⊙ h_{i-1} + b_i along dim 1 (time), h_{-1} = 0, for real a, b of any trailing shape."""
    return _SelectiveScan.apply(a, b)
