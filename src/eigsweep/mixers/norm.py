"""Norm attention (the DSF paper's normalised linear attention, seed-paper form).

    y_i = exp(−f(z_i)) Σ_{j≤i} (φ(q_i)ᵀφ(k_j)/√d) v_j,   z_i = w_hᵀu_i + o_h,

with f ∈ {exp, elu, softplus, sigmoid} (``options["norm_fn"]``, default softplus), a learned per-head offset
o_h initialised linspace(4, 9, H), and φ = elu + 1 on queries and keys (``options["feature_map"]`` = "elu" |
"none"; the seed runs use elu + 1 on both, so the REFERENCE's k_j is read as the feature-mapped key φ(k_j)).
DSF per head: h_i = λ_i h_{i-1} + exp(−f(z_i)) φ(k_i)v_iᵀ/√d, y_i = φ(q_i)ᵀh_i, λ_i = exp(f(z_{i-1}) − f(z_i));
λ_0 multiplies h_{-1} = 0 and is left undefined (NaN), like the other attention mixers.

Short convolution rule: norm attention defaults to a short conv (kernel ``conv_kernel``) on q and k.
``options["short_conv"]`` (none | qk | qkv), when given, decides; otherwise ``cfg.short_conv`` decides when it
is not "none" (the global default), and "none" there means this mixer's default "qk".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer, QKVConv, log_ratio_eigenvalues, merge_heads, split_heads
from eigsweep.mixers.linear import chunked_causal_linear_attention

NORM_FNS = {"exp": torch.exp, "elu": F.elu, "softplus": F.softplus, "sigmoid": torch.sigmoid}
FEATURE_MAPS = {"elu": lambda x: F.elu(x) + 1.0, "none": lambda x: x}


def short_conv_mode(cfg) -> str:
    if "short_conv" in cfg.options:
        return cfg.options["short_conv"]
    return cfg.short_conv if cfg.short_conv != "none" else "qk"


class NormAttention(Mixer):
    chunk = 64

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d, self.n_heads = cfg.d_model, cfg.n_heads
        self.head_dim = d // cfg.n_heads
        name = cfg.options.get("norm_fn", "softplus")
        fmap = cfg.options.get("feature_map", "elu")
        if name not in NORM_FNS:
            raise ValueError(f"norm: options.norm_fn {name!r} is not one of {sorted(NORM_FNS)}")
        if fmap not in FEATURE_MAPS:
            raise ValueError(f"norm: options.feature_map {fmap!r} is not one of {sorted(FEATURE_MAPS)}")
        self.f, self.phi = NORM_FNS[name], FEATURE_MAPS[fmap]
        self.conv_mode = short_conv_mode(cfg)
        self.qkvz = nn.Linear(d, 3 * d + self.n_heads, bias=False)
        self.offset = nn.Parameter(torch.linspace(4, 9, self.n_heads))
        self.conv = QKVConv(self.conv_mode, d, d, d, cfg.conv_kernel)
        self.out = nn.Linear(d, d, bias=False)

    def features(self, u):
        """φ(q), φ(k)/√d, v (B, H, L, ·) and f(z) (B, H, L)."""
        d = u.shape[-1]
        q, k, v, z = torch.split(self.qkvz(u), [d, d, d, self.n_heads], dim=-1)
        q, k, v = (split_heads(t, self.n_heads) for t in self.conv(q, k, v))
        fz = self.f(z + self.offset).transpose(1, 2)
        return self.phi(q), self.phi(k) / math.sqrt(self.head_dim), v, fz

    def forward(self, u):
        fq, fk, v, fz = self.features(u)
        y = chunked_causal_linear_attention(fq, fk, v, self.chunk) * torch.exp(-fz)[..., None]
        return self.out(merge_heads(y))

    def eigenvalues(self, u):
        return log_ratio_eigenvalues(self.features(u)[3])                  # (B, H, L)

    def dsf(self, u):
        fq, fk, v, fz = self.features(u)
        lam = log_ratio_eigenvalues(fz).nan_to_num(1.0)                    # λ_0 multiplies h_{-1} = 0
        inp = (torch.exp(-fz)[..., None, None] * fk[..., :, None]) * v[..., None, :]
        return DSF(lam=lam[..., None], inp=inp, C=fq)

    def readout(self, y, u):
        return self.out(merge_heads(y))
