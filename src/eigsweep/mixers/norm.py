"""Norm attention (the DSF paper's normalised linear attention, seed-paper form).

    y_i = exp(−f(z_i)) Σ_{j≤i} (φ(q_i)ᵀφ(k_j)/√d) v_j,   z_i = w_hᵀu_i + o_h,

with f ∈ {exp, elu, softplus, sigmoid} (``options["norm_fn"]``, default softplus), a learned per-head offset
o_h initialised linspace(4, 9, H), and φ = elu + 1 on queries and keys (``options["feature_map"]`` = "elu" |
"none"; the seed runs use elu + 1 on both, so the paper's k_j is read as the feature-mapped key φ(k_j)).
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
from eigsweep.mixers.base import QKVMixer
from eigsweep.mixers.blocks import log_ratio_eigenvalues, merge_heads
from eigsweep.mixers.scan import chunked_linear_attention

NORM_FNS = {"exp": torch.exp, "elu": F.elu, "softplus": F.softplus, "sigmoid": torch.sigmoid}
FEATURE_MAPS = {"elu": lambda x: F.elu(x) + 1.0, "none": lambda x: x}


def short_conv_mode(cfg) -> str:
    if "short_conv" in cfg.options:
        return cfg.options["short_conv"]
    return cfg.short_conv if cfg.short_conv != "none" else "qk"


class NormAttention(QKVMixer):
    chunk = 64
    lam0_undefined = True

    def __init__(self, cfg, layer_idx=0):
        name = cfg.options.get("norm_fn", "softplus")
        fmap = cfg.options.get("feature_map", "elu")
        if name not in NORM_FNS:
            raise ValueError(f"norm: options.norm_fn {name!r} is not one of {sorted(NORM_FNS)}")
        if fmap not in FEATURE_MAPS:
            raise ValueError(f"norm: options.feature_map {fmap!r} is not one of {sorted(FEATURE_MAPS)}")
        conv_mode = short_conv_mode(cfg)
        super().__init__(cfg, layer_idx, extra=cfg.n_heads, conv_mode=conv_mode)   # extra: z, one per head
        self.conv_mode = conv_mode
        self.f, self.phi = NORM_FNS[name], FEATURE_MAPS[fmap]
        self.offset = nn.Parameter(torch.linspace(4, 9, self.n_heads))
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def features(self, u):
        """φ(q), φ(k)/√d, v (B, H, L, head_dim) and f(z) (B, H, L)."""
        q, k, v, z = self.qkv_heads(u)
        fz = self.f(z + self.offset).transpose(1, 2)
        return dict(fq=self.phi(q), fk=self.phi(k) / math.sqrt(self.head_dim), v=v, fz=fz)

    def forward(self, u):
        f = self.features(u)
        y = chunked_linear_attention(f["fq"], f["fk"], f["v"], self.chunk) * torch.exp(-f["fz"])[..., None]
        return self.out(merge_heads(y))

    def eigenvalues(self, u):
        return log_ratio_eigenvalues(self.features(u)["fz"])                 # (B, H, L)

    def dsf(self, u):
        f = self.features(u)
        lam = log_ratio_eigenvalues(f["fz"]).nan_to_num(1.0)                  # λ_0 multiplies h_{-1} = 0
        inp = (torch.exp(-f["fz"])[..., None, None] * f["fk"][..., :, None]) * f["v"][..., None, :]
        return DSF(lam=lam[..., None], inp=inp, C=f["fq"])

    def readout(self, y, u):
        return self.out(merge_heads(y))
