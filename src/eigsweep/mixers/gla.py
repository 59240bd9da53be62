"""Gated Linear Attention (GLA, Yang et al. 2024): linear attention with a data-dependent diagonal decay.

Per head (state d_k x d_v):  S_i = diag(λ_i) S_{i-1} + k_i v_iᵀ,   o_i = S_iᵀ q_i,
λ_i = σ(W_2 W_1 x_i + b)^{1/16} per key channel (low-rank gate projection, rank 16, temperature 16).
So Λ_i = diag(λ_i) over the key dim N = d_k (broadcast over the value dim), and its eigenvalues are λ_i ∈ (0, 1).
Output: per-head RMSNorm, ⊙ SiLU(W_r x), output projection. q is scaled by d_k^{-1/2}.
cfg.short_conv ("qk"/"qkv") convolves q, k (and v); the gate is computed from the mixer input x itself.

``chunked_decay_attention`` (also used by RetNet) computes the recurrence in chunks: exact pairwise decays
inside a chunk (never exp of a positive number), chunk states carried across chunks by a parallel scan.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer, QKVConv, RMSNorm, merge_heads, split_heads
from eigsweep.mixers.rglru import linear_scan

GATE_RANK = 16
GATE_TEMPERATURE = 16.0


class GatedLinearAttention(Mixer):
    eig_dims = ("sample", "head", "time", "state")
    chunk = 16

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d, self.n_heads = cfg.d_model, cfg.n_heads
        self.head_dim = d // cfg.n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.conv = QKVConv(cfg.short_conv, d, d, d, cfg.conv_kernel)
        self.gate_down = nn.Linear(d, GATE_RANK, bias=False)
        self.gate_up = nn.Linear(GATE_RANK, d, bias=True)
        self.out_gate = nn.Linear(d, d, bias=False)
        self.norm = RMSNorm(self.head_dim)
        self.out = nn.Linear(d, d, bias=False)

    def features(self, u):
        """q (scaled), k, v (B, H, L, d_head) and log λ (B, H, L, d_k)."""
        q, k, v = self.conv(*self.qkv(u).chunk(3, dim=-1))
        q, k, v = (split_heads(t, self.n_heads) for t in (q, k, v))
        log_lam = F.logsigmoid(self.gate_up(self.gate_down(u))) / GATE_TEMPERATURE
        return q / math.sqrt(self.head_dim), k, v, split_heads(log_lam, self.n_heads)

    def forward(self, u):
        q, k, v, log_lam = self.features(u)
        return self.readout(chunked_decay_attention(q, k, v, log_lam, self.chunk), u)

    def eigenvalues(self, u):
        return torch.exp(self.features(u)[3])                            # (B, H, L, d_k)

    def dsf(self, u):
        q, k, v, log_lam = self.features(u)
        return DSF(lam=torch.exp(log_lam), inp=k[..., :, None] * v[..., None, :], C=q)

    def readout(self, y, u):
        return self.out(merge_heads(self.norm(y)) * F.silu(self.out_gate(u)))


def chunked_decay_attention(q, k, v, log_a, chunk):
    """y_i = S_iᵀ q_i for S_i = diag(exp(log_a_i)) S_{i-1} + k_i v_iᵀ, S_{-1} = 0.

    q, k (B, H, L, N), v (B, H, L, P), log_a ≤ 0 of shape (B, H, L, N) (per key channel) or (B, H, L, 1)
    (scalar per head). Returns y (B, H, L, P).
    """
    B, H, L, N = q.shape
    T = min(chunk, L)
    pad = (-L) % T
    if pad:
        q, k, v, log_a = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v, log_a))
    n = q.shape[2] // T
    q, k, v, log_a = (t.reshape(B, H, n, T, t.shape[-1]) for t in (q, k, v, log_a))
    g = log_a.cumsum(dim=3)                                            # (B, H, n, T, Nd), inclusive
    # inside a chunk: y_i = Σ_{j≤i} Σ_n q_in k_jn exp(g_in − g_jn) v_j
    diff = g[..., :, None, :] - g[..., None, :, :]                     # (B, H, n, T, T, Nd)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    decay = torch.exp(diff.masked_fill(~causal[..., None], float("-inf")))
    if log_a.shape[-1] == 1:
        scores = (q @ k.transpose(-1, -2)) * decay[..., 0]
    else:
        scores = torch.einsum("bhcin,bhcjn,bhcijn->bhcij", q, k, decay)
    y = scores @ v
    # each chunk's own contribution to the state at its end
    g_end = g[..., -1:, :]                                              # (B, H, n, 1, Nd)
    states = (k * torch.exp(g_end - g)).transpose(-1, -2) @ v          # (B, H, n, N, P)
    # state entering chunk c: S_c = exp(G_{c-1}) ⊙ S_{c-1} + states_{c-1}, a parallel scan over chunks
    chunk_decay = torch.exp(g_end).transpose(-1, -2)                   # (B, H, n, Nd, 1)
    ends = linear_scan(chunk_decay, states, dim=2)                      # state at each chunk's end
    entering = F.pad(ends[:, :, :-1], (0, 0, 0, 0, 1, 0))
    y = y + (q * torch.exp(g)) @ entering
    return y.reshape(B, H, n * T, -1)[:, :, :L]
