"""Gated Linear Attention (GLA, Yang et al. 2024): linear attention with a data-dependent diagonal decay.

Per head (state d_k x d_v):  S_i = diag(λ_i) S_{i-1} + k_i v_iᵀ,   o_i = S_iᵀ q_i,
λ_i = σ(W_2 W_1 x_i + b)^{1/16} per key channel (low-rank gate projection, rank 16, temperature 16).
So Λ_i = diag(λ_i) over the key dim N = d_k (broadcast over the value dim), and its eigenvalues are λ_i ∈ (0, 1).
Output: per-head RMSNorm, ⊙ SiLU(W_r x), output projection. q is scaled by d_k^{-1/2}.
cfg.short_conv ("qk"/"qkv") convolves q, k (and v); the gate is computed from the mixer input x itself.
Forward: scan.chunked_decay_attention (exact pairwise decays inside a chunk, states scanned across chunks).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import QKVMixer
from eigsweep.mixers.blocks import RMSNorm, gated_readout, split_heads
from eigsweep.mixers.scan import chunked_decay_attention

GATE_RANK = 16
GATE_TEMPERATURE = 16.0


class GatedLinearAttention(QKVMixer):
    eig_dims = ("sample", "head", "time", "state")
    chunk = 16

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d = cfg.d_model
        self.gate_down = nn.Linear(d, GATE_RANK, bias=False)
        self.gate_up = nn.Linear(GATE_RANK, d, bias=True)
        self.out_gate = nn.Linear(d, d, bias=False)
        self.norm = RMSNorm(self.head_dim)
        self.out = nn.Linear(d, d, bias=False)

    def features(self, u):
        """q (scaled), k, v (B, H, L, head_dim) and log λ (B, H, L, d_k)."""
        q, k, v, _ = self.qkv_heads(u)
        log_lam = F.logsigmoid(self.gate_up(self.gate_down(u))) / GATE_TEMPERATURE
        return dict(q=q / math.sqrt(self.head_dim), k=k, v=v, log_lam=split_heads(log_lam, self.n_heads))

    def forward(self, u):
        f = self.features(u)
        return self.readout(chunked_decay_attention(f["q"], f["k"], f["v"], f["log_lam"], self.chunk), u)

    def eigenvalues(self, u):
        return torch.exp(self.features(u)["log_lam"])                      # (B, H, L, d_k)

    def dsf(self, u):
        f = self.features(u)
        return DSF(lam=torch.exp(f["log_lam"]), inp=f["k"][..., :, None] * f["v"][..., None, :], C=f["q"])

    def readout(self, y, u):
        return gated_readout(y, u, self.norm, self.out_gate, self.out)
