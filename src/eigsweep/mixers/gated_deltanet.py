"""Gated DeltaNet (Yang, Kautz, Hatamizadeh 2025): DeltaNet with a data-dependent scalar decay per head.

    S_i = α_i (I − β_i k_i k_iᵀ) S_{i-1} + β_i k_i v_iᵀ,   o_i = S_iᵀ q_i,
α_i = exp(Δ_i A_h) with Δ_i = softplus(w_Δᵀ x_i + dt_bias) and A_h = −exp(A_log,h) (Mamba-2's gate and
initialisation: dt log-uniform in [1e-3, 0.1], A ∈ U[1, 16]). Eigenvalues of Λ_i: α_i(1 − β_i‖k_i‖²) once,
α_i (d_k − 1 times). Output: per-head RMSNorm ⊙ SiLU(W_g x), projection. Everything else is DeltaNet's
(see deltanet.py, options["beta_range"] included).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.mixers.base import merge_heads
from eigsweep.mixers.deltanet import DeltaNet


class GatedDeltaNet(DeltaNet):

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d, H = cfg.d_model, self.n_heads
        self.dt_proj = nn.Linear(d, H, bias=False)
        dt = torch.exp(torch.empty(H).uniform_(math.log(1e-3), math.log(0.1)))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))     # softplus⁻¹(dt)
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(1, 16)))
        self.out_gate = nn.Linear(d, d, bias=False)

    def log_alpha(self, u):
        dt = F.softplus(self.dt_proj(u) + self.dt_bias)                       # (B, L, H)
        return (-torch.exp(self.A_log) * dt).transpose(1, 2)                   # (B, H, L)

    def readout(self, y, u):
        return self.out(merge_heads(self.norm(y)) * F.silu(self.out_gate(u)))
