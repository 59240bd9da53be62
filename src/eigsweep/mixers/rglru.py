"""RG-LRU (Hawk/Griffin, De et al. 2024): the real-gated linear recurrent unit in Hawk's recurrent block.

Block: gate branch GeLU(W_g u); recurrent branch x = Conv1D(W_x u) (depthwise causal, kernel cfg.conv_kernel,
no activation), then per channel
    r_i = σ(W_a x_i + b_a),  g_i = σ(W_i x_i + b_i)                 (block-diagonal over cfg.n_heads heads)
    log a_i = −8 · r_i · softplus(Λ)
    h_i = a_i ⊙ h_{i-1} + √(1 − a_i²) ⊙ (g_i ⊙ x_i)
output W_o(GeLU(W_g u) ⊙ h). Width d_rnn = cfg.expand · d_model.
Λ is initialised so that a^8 = exp(−8·softplus(Λ)) is uniform in [0.9, 0.999] (Griffin), hence at
initialisation every eigenvalue a_i = (a^8)^{r_i} lies in (0.9, 1).

DSF: Λ_i = diag(a_i) per channel. To read the channel-wise output through the common DSF form
(y_i[p] = Σ_n C[n] h_i[n, p]) each head's state is an N x N matrix kept diagonal: inp = diag(√(1−a²) g x),
C = 1. eig_dims: (sample, head, time, state) with state = channel within the head.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer, ShortConv

C_CONST = 8.0
INIT_RANGE = (0.9, 0.999)   # a^c uniform in this range at initialisation


def CausalConv(channels: int, kernel: int) -> ShortConv:
    """Hawk's Conv1D: depthwise causal convolution with no activation."""
    return ShortConv(channels, kernel, activation=False)


class BlockDiagonalLinear(nn.Module):
    """x (B, L, H*N) -> (B, L, H, N) with one N x N weight (and bias) per head."""

    def __init__(self, n_heads: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_heads, width, width) / math.sqrt(width))
        self.bias = nn.Parameter(torch.zeros(n_heads, width))

    def forward(self, x):
        H, N = self.bias.shape
        return torch.einsum("blhi,hij->blhj", x.unflatten(-1, (H, N)), self.weight) + self.bias


def linear_scan(a, b, dim=1):
    """h_t = a_t h_{t-1} + b_t along ``dim`` (h_{-1} = 0) by a log-depth (Hillis–Steele) parallel scan."""
    a, b = a.movedim(dim, 1), b.movedim(dim, 1)
    L, w = a.shape[1], 1
    while w < L:
        pad = [0, 0] * (a.dim() - 2) + [w, 0]
        b = b + a * F.pad(b[:, :-w], pad)
        a = a * F.pad(a[:, :-w], pad)
        w *= 2
    return b.movedim(1, dim)


def diagonal_dsf(lam, inp, n_heads):
    """DSF of channel-wise recurrences h_i = lam_i ⊙ h_{i-1} + inp_i with output h_i (B, L, H*N)."""
    B, L, _ = lam.shape
    lam, inp = (t.view(B, L, n_heads, -1).transpose(1, 2) for t in (lam, inp))   # (B, H, L, N)
    return DSF(lam=lam, inp=torch.diag_embed(inp), C=torch.ones_like(lam))


class RGLRU(Mixer):
    eig_dims = ("sample", "head", "time", "state")

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d, self.n_heads = cfg.d_model, cfg.n_heads
        self.width = cfg.expand * d
        if self.width % self.n_heads:
            raise ValueError(f"rglru: expand*d_model={self.width} is not a multiple of n_heads={self.n_heads}")
        self.in_proj = nn.Linear(d, 2 * self.width, bias=False)
        self.conv = CausalConv(self.width, cfg.conv_kernel)
        self.rec_gate = BlockDiagonalLinear(self.n_heads, self.width // self.n_heads)
        self.in_gate = BlockDiagonalLinear(self.n_heads, self.width // self.n_heads)
        a_c = torch.empty(self.width).uniform_(*INIT_RANGE)
        sp = -torch.log(a_c) / C_CONST                                    # softplus(Λ) = −log(a^c)/c
        self.Lambda = nn.Parameter(sp + torch.log(-torch.expm1(-sp)))     # softplus⁻¹
        self.out = nn.Linear(self.width, d, bias=False)

    def features(self, u):
        gate, x = self.in_proj(u).chunk(2, dim=-1)
        x = self.conv(x)
        r = torch.sigmoid(self.rec_gate(x)).flatten(-2)
        g = torch.sigmoid(self.in_gate(x)).flatten(-2)
        log_a = -C_CONST * r * F.softplus(self.Lambda)                  # (B, L, width)
        a = torch.exp(log_a)
        inp = torch.sqrt(-torch.expm1(2 * log_a)) * g * x                # √(1 − a²) ⊙ g ⊙ x
        return gate, a, inp

    def forward(self, u):
        gate, a, inp = self.features(u)
        return self._out(linear_scan(a, inp), gate)

    def _out(self, h, gate):
        return self.out(F.gelu(gate) * h)

    def eigenvalues(self, u):
        B, L, _ = u.shape
        return self.features(u)[1].view(B, L, self.n_heads, -1).transpose(1, 2)   # (B, H, L, N)

    def dsf(self, u):
        _, a, inp = self.features(u)
        return diagonal_dsf(a, inp, self.n_heads)

    def readout(self, y, u):
        return self._out(y.transpose(1, 2).flatten(2), self.features(u)[0])
