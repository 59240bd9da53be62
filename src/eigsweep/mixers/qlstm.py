"""The quasi-LSTM (qLSTM) of the DSF paper (Sieber et al. 2024): an LSTM without hidden-state feedback in its
gates, in a Hawk-style block.

Block: gate branch GeLU(W_g u); recurrent branch ũ = Conv1D(W_x u) (depthwise causal, no activation); from ũ
    f_i, ι_i, o_i = W_f ũ_i, W_ι ũ_i, W_o ũ_i   (+ biases)
    λ_i = σ(−f_i)^{ReLU(α)}   ("reversed" sigmoid, the DEFAULT, options["reversed"] = True; α scalar, init 1)
    λ_i = σ(f_i)              (options["reversed"] = False, the plain LSTM forget gate)
    h_i = λ_i ⊙ h_{i-1} + σ(ι_i) ⊙ ũ_i,    y_i = σ(o_i) ⊙ h_i
output W_out(GeLU(gate) ⊙ y). Width cfg.expand · d_model.

DSF: Λ_i = diag(λ_i) per channel; the output gate σ(o_i) is the (diagonal) C_i. As in rglru, each of the
cfg.n_heads channel groups keeps an N x N diagonal state so that the channel-wise read-out fits the DSF form.
eig_dims: (sample, head, time, state), head = channel group (a grouping only: the gates are dense).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.mixers.base import Mixer
from eigsweep.mixers.blocks import ShortConv, channelwise_dsf, split_heads
from eigsweep.mixers.scan import linear_scan


class QLSTM(Mixer):
    eig_dims = ("sample", "head", "time", "state")

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d, self.n_heads = cfg.d_model, cfg.n_heads
        self.width = cfg.expand * d
        if self.width % self.n_heads:
            raise ValueError(f"qlstm: expand*d_model={self.width} is not a multiple of n_heads={self.n_heads}")
        self.reversed = bool(cfg.options.get("reversed", True))
        self.in_proj = nn.Linear(d, 2 * self.width, bias=False)
        self.conv = ShortConv(self.width, cfg.conv_kernel, activation=False)    # Hawk's Conv1D
        self.gates = nn.Linear(self.width, 3 * self.width, bias=True)
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.out = nn.Linear(self.width, d, bias=False)

    def features(self, u):
        """The GeLU branch's input ``gate``, and per channel λ, the state input σ(ι) ⊙ ũ and the output gate
        σ(o), all (B, L, width)."""
        gate, x = self.in_proj(u).chunk(2, dim=-1)
        x = self.conv(x)
        f, i, o = self.gates(x).chunk(3, dim=-1)
        if self.reversed:
            lam = torch.exp(F.relu(self.alpha) * F.logsigmoid(-f))      # σ(−f)^{ReLU(α)}
        else:
            lam = torch.sigmoid(f)
        return dict(gate=gate, lam=lam, inp=torch.sigmoid(i) * x, out_gate=torch.sigmoid(o))

    def forward(self, u):
        f = self.features(u)
        return self._out(f["out_gate"] * linear_scan(f["lam"], f["inp"]), f["gate"])

    def _out(self, y, gate):
        return self.out(F.gelu(gate) * y)

    def eigenvalues(self, u):
        return split_heads(self.features(u)["lam"], self.n_heads)         # (B, H, L, N)

    def dsf(self, u):
        f = self.features(u)
        return channelwise_dsf(f["lam"], f["inp"], f["out_gate"], self.n_heads)

    def readout(self, y, u):
        return self._out(y.transpose(1, 2).flatten(2), self.features(u)["gate"])
