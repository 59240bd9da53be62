"""Causal softmax attention.

DSF view (infinite-dimensional state): h_i = λ_i h_{i-1} + φ(k_i) v_iᵀ / η_i with
η_i = Σ_{j≤i} exp(q_iᵀk_j/√d) and λ_i = η_{i-1}/η_i. η_{i-1} uses q_{i-1}, so λ may exceed 1.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.mixers.base import Mixer, QKVConv, causal_mask, log_ratio_eigenvalues, merge_heads, split_heads


class SoftmaxAttention(Mixer):
    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d, self.n_heads = cfg.d_model, cfg.n_heads
        self.head_dim = d // cfg.n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.conv = QKVConv(cfg.short_conv, d, d, d, cfg.conv_kernel)
        self.out = nn.Linear(d, d, bias=False)

    def features(self, u):
        q, k, v = self.conv(*self.qkv(u).chunk(3, dim=-1))
        return split_heads(q, self.n_heads), split_heads(k, self.n_heads), split_heads(v, self.n_heads)

    def forward(self, u):
        q, k, v = self.features(u)
        return self.out(merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True)))

    def log_eta(self, q, k):
        """log η_i = logsumexp_{j≤i} q_iᵀk_j/√d, shape (B, H, L)."""
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~causal_mask(q.shape[-2], q.device), float("-inf"))
        return torch.logsumexp(scores, dim=-1)

    def eigenvalues(self, u):
        q, k, _ = self.features(u)
        return log_ratio_eigenvalues(self.log_eta(q, k))

    def recurrence(self, u):
        """Step h_i = λ_i h_{i-1} + φ(k_i)v_iᵀ/η_i with the kernel trick: h_i is kept as weights c_{ij}
        on the atoms φ(k_j)v_jᵀ, so y_i = φ(q_i)ᵀh_i = Σ_j c_ij exp(q_iᵀk_j/√d) v_j."""
        q, k, v = self.features(u)
        lam = self.eigenvalues(u)
        inv_eta = torch.exp(-self.log_eta(q, k))
        B, H, L, _ = q.shape
        c = torch.zeros(B, H, L, dtype=q.dtype, device=q.device)
        ys = []
        for i in range(L):
            if i > 0:
                c = c * lam[..., i : i + 1]
            c = c.clone()
            c[..., i] = inv_eta[..., i]
            kernel = torch.exp(torch.einsum("bhd,bhjd->bhj", q[:, :, i], k) / math.sqrt(self.head_dim))
            kernel = kernel * (torch.arange(L, device=q.device) <= i)
            ys.append(torch.einsum("bhj,bhjp->bhp", c * kernel, v))
        return self.out(merge_heads(torch.stack(ys, dim=2)))
