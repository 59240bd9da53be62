"""Normalised causal linear attention with φ = elu + 1.

y_i = φ(q_i)ᵀ S_i / η_i with S_i = Σ_{j≤i} φ(k_j)v_jᵀ and η_i = φ(q_i)ᵀ Σ_{j≤i} φ(k_j).
DSF: h_i = λ_i h_{i-1} + φ(k_i)v_iᵀ/η_i, y_i = φ(q_i)ᵀ h_i, with λ_i = η_{i-1}/η_i.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer, QKVConv, log_ratio_eigenvalues, merge_heads, split_heads


def feature_map(x):
    return F.elu(x) + 1.0


class LinearAttention(Mixer):
    chunk = 64

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d, self.n_heads = cfg.d_model, cfg.n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.conv = QKVConv(cfg.short_conv, d, d, d, cfg.conv_kernel)
        self.out = nn.Linear(d, d, bias=False)

    def features(self, u):
        q, k, v = self.conv(*self.qkv(u).chunk(3, dim=-1))
        q, k, v = (split_heads(t, self.n_heads) for t in (q, k, v))
        return feature_map(q), feature_map(k), v

    def forward(self, u):
        fq, fk, v = self.features(u)
        return self.out(merge_heads(chunked_normalised_linear_attention(fq, fk, v, self.chunk)))

    def log_eta(self, fq, fk):
        return torch.log((fq * fk.cumsum(dim=2)).sum(-1))

    def eigenvalues(self, u):
        fq, fk, _ = self.features(u)
        return log_ratio_eigenvalues(self.log_eta(fq, fk))

    def dsf(self, u):
        fq, fk, v = self.features(u)
        lam = self.eigenvalues(u).nan_to_num(1.0)  # λ_0 multiplies h_{-1} = 0: any value is exact
        inv_eta = torch.exp(-self.log_eta(fq, fk))
        inp = fk[..., :, None] * v[..., None, :] * inv_eta[..., None, None]
        return DSF(lam=lam[..., None], inp=inp, C=fq)

    def readout(self, y, u):
        return self.out(merge_heads(y))


def chunked_causal_linear_attention(q, k, v, chunk):
    """Σ_{j≤i} (q_i·k_j) v_j in chunks: quadratic inside a chunk, a running k vᵀ sum across chunks."""
    B, H, L, _ = q.shape
    T = min(chunk, L)
    pad = (-L) % T
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    n = q.shape[2] // T
    q, k, v = (t.reshape(B, H, n, T, t.shape[-1]) for t in (q, k, v))
    kv = k.transpose(-1, -2) @ v                                       # (B, H, n, dk, dv)
    kv_before = kv.cumsum(dim=2) - kv
    y = q @ kv_before + (q @ k.transpose(-1, -2)).tril() @ v
    return y.reshape(B, H, n * T, -1)[:, :, :L]


def chunked_normalised_linear_attention(fq, fk, v, chunk):
    """Causal Σ_j (φq_i·φk_j) v_j / Σ_j φq_i·φk_j: numerator and normaliser in one pass (v with a ones column)."""
    ones = torch.ones_like(v[..., :1])
    y = chunked_causal_linear_attention(fq, fk, torch.cat([v, ones], dim=-1), chunk)
    return y[..., :-1] / y[..., -1:]
