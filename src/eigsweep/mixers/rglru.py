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

from eigsweep.mixers.base import HawkMixer
from eigsweep.mixers.blocks import channelwise_dsf, inv_softplus, split_heads
from eigsweep.mixers.scan import linear_scan

C_CONST = 8.0
INIT_RANGE = (0.9, 0.999)   # a^c uniform in this range at initialisation


class BlockDiagonalLinear(nn.Module):
    """x (B, L, H*N) -> (B, L, H, N) with one N x N weight (and bias) per head."""

    def __init__(self, n_heads: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_heads, width, width) / math.sqrt(width))
        self.bias = nn.Parameter(torch.zeros(n_heads, width))

    def forward(self, x):
        H, N = self.bias.shape
        return torch.einsum("blhi,hij->blhj", x.unflatten(-1, (H, N)), self.weight) + self.bias


class RGLRU(HawkMixer):
    eig_dims = ("sample", "head", "time", "state")

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        self.rec_gate = BlockDiagonalLinear(self.n_heads, self.width // self.n_heads)
        self.in_gate = BlockDiagonalLinear(self.n_heads, self.width // self.n_heads)
        a_c = torch.empty(self.width).uniform_(*INIT_RANGE)
        sp = -torch.log(a_c) / C_CONST                                    # softplus(Λ) = −log(a^c)/c
        self.Lambda = nn.Parameter(inv_softplus(sp))
        self.out = nn.Linear(self.width, cfg.d_model, bias=False)

    def features(self, u):
        """The GeLU branch's input ``gate``, the conv output x, the input gate g, and per channel the
        eigenvalue a and the state input √(1 − a²) ⊙ g ⊙ x, all (B, L, width)."""
        gate, x = self.branches(u)
        r = torch.sigmoid(self.rec_gate(x)).flatten(-2)
        g = torch.sigmoid(self.in_gate(x)).flatten(-2)
        log_a = -C_CONST * r * F.softplus(self.Lambda)
        inp = torch.sqrt(-torch.expm1(2 * log_a)) * g * x                # √(1 − a²) ⊙ g ⊙ x
        return dict(gate=gate, x=x, g=g, a=torch.exp(log_a), inp=inp)

    def forward(self, u):
        f = self.features(u)
        return self._out(linear_scan(f["a"], f["inp"]), f["gate"])

    def eigenvalues(self, u):
        return split_heads(self.features(u)["a"], self.n_heads)           # (B, H, L, N)

    def dsf(self, u):
        f = self.features(u)
        return channelwise_dsf(f["a"], f["inp"], torch.ones_like(f["a"]), self.n_heads)
