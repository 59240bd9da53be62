"""Causal softmax attention.

DSF view (infinite-dimensional state): h_i = λ_i h_{i-1} + φ(k_i) v_iᵀ / η_i with
η_i = Σ_{j≤i} exp(q_iᵀk_j/√d) and λ_i = η_{i-1}/η_i = exp(log η_{i-1} − log η_i), undefined at i = 0.
η_{i-1} uses q_{i-1}, so λ may exceed 1 (and overflow to +inf in float64 when the log ratio passes ~709).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.mixers.base import QKVMixer
from eigsweep.mixers.blocks import at_positions, causal_mask, log_ratio_eigenvalues, merge_heads


class SoftmaxAttention(QKVMixer):
    lam0_undefined = True

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def features(self, u):
        """q, k, v (B, H, L, head_dim)."""
        q, k, v, _ = self.qkv_heads(u)
        return dict(q=q, k=k, v=v)

    def forward(self, u):
        f = self.features(u)
        return self.out(merge_heads(F.scaled_dot_product_attention(f["q"], f["k"], f["v"], is_causal=True)))

    def forward_at(self, u, positions):
        """Queries at positions (B, K) only, keys and values at every position: query i attends to j ≤ i, as in
        forward. The (B, H, K, L) scores written out (K ≪ L), in float32 at least as in SDPA's kernels (under
        bf16 autocast their inputs are bf16, their products float32): SDPA with this mask would take the
        memory-efficient kernel, whose backward fails under vmap (packs) on CUDA ("LSE is not correctly
        aligned")."""
        f = self.features(u)
        q = at_positions(f["q"], positions, dim=2)                                  # (B, H, K, head_dim)
        acc = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast(u.device.type, enabled=False):
            scores = q.to(acc) @ f["k"].to(acc).transpose(-1, -2) / math.sqrt(self.head_dim)   # (B, H, K, L)
        allowed = torch.arange(u.shape[1], device=u.device) <= positions[:, None, :, None]
        return self.out(merge_heads(torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ f["v"]))

    def log_eta(self, q, k):
        """log η_i = logsumexp_{j≤i} q_iᵀk_j/√d, shape (B, H, L); holds the (B, H, L, L) scores."""
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~causal_mask(q.shape[-2], q.device), float("-inf"))
        return torch.logsumexp(scores, dim=-1)

    def working_elements(self, L):
        return self.n_heads * L * L                                     # the scores behind log η

    def eigenvalues(self, u):
        f = self.features(u)
        return log_ratio_eigenvalues(self.log_eta(f["q"], f["k"]))      # (B, H, L)

    def recurrence(self, u):
        """Step h_i = λ_i h_{i-1} + φ(k_i)v_iᵀ/η_i with the kernel trick: h_i is kept as weights c_{ij}
        on the atoms φ(k_j)v_jᵀ, so y_i = φ(q_i)ᵀh_i = Σ_j c_ij exp(q_iᵀk_j/√d) v_j."""
        f = self.features(u)
        q, k, v = f["q"], f["k"], f["v"]
        log_eta = self.log_eta(q, k)
        lam, inv_eta = log_ratio_eigenvalues(log_eta), torch.exp(-log_eta)
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
