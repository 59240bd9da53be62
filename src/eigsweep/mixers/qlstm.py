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

from eigsweep.mixers.base import HawkMixer
from eigsweep.mixers.blocks import channelwise_dsf, split_heads
from eigsweep.mixers.scan import linear_scan


class QLSTM(HawkMixer):
    eig_dims = ("sample", "head", "time", "state")

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        self.reversed = bool(cfg.options.get("reversed", True))
        self.gates = nn.Linear(self.width, 3 * self.width, bias=True)
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.out = nn.Linear(self.width, cfg.d_model, bias=False)

    def features(self, u):
        """The GeLU branch's input ``gate``, and per channel λ, the state input σ(ι) ⊙ ũ and the output gate
        σ(o), all (B, L, width)."""
        gate, x = self.branches(u)
        f, i, o = self.gates(x).chunk(3, dim=-1)
        if self.reversed:
            lam = torch.exp(F.relu(self.alpha) * F.logsigmoid(-f))      # σ(−f)^{ReLU(α)}
        else:
            lam = torch.sigmoid(f)
        return dict(gate=gate, lam=lam, inp=torch.sigmoid(i) * x, out_gate=torch.sigmoid(o))

    def forward(self, u):
        f = self.features(u)
        return self._out(f["out_gate"] * linear_scan(f["lam"], f["inp"]), f["gate"])

    def eigenvalues(self, u):
        return split_heads(self.features(u)["lam"], self.n_heads)         # (B, H, L, N)

    def dsf(self, u):
        f = self.features(u)
        return channelwise_dsf(f["lam"], f["inp"], f["out_gate"], self.n_heads)
