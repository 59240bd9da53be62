"""Causal linear attention with φ = elu + 1: normalised (``linear``) and unnormalised (``linear_unnorm``).

Normalised: y_i = φ(q_i)ᵀ S_i / η_i with S_i = Σ_{j≤i} φ(k_j)v_jᵀ and η_i = φ(q_i)ᵀ Σ_{j≤i} φ(k_j).
DSF: h_i = λ_i h_{i-1} + φ(k_i)v_iᵀ/η_i, y_i = φ(q_i)ᵀ h_i, with λ_i = η_{i-1}/η_i (undefined at i = 0).
Unnormalised: y_i = φ(q_i)ᵀ S_i, i.e. h_i = h_{i-1} + φ(k_i)v_iᵀ: Λ_i = I, λ ≡ 1 for every input and every
parameter value. It is the negative control of the spectrum studies: a model whose spectrum cannot move.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from eigsweep.dsf import DSF
from eigsweep.mixers.base import QKVMixer
from eigsweep.mixers.blocks import log_ratio_eigenvalues, merge_heads
from eigsweep.mixers.scan import chunked_linear_attention


class LinearAttention(QKVMixer):
    chunk = 64
    lam0_undefined = True

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        self.out = torch.nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def features(self, u):
        """φ(q), φ(k), v (B, H, L, head_dim) and log η (B, H, L)."""
        q, k, v, _ = self.qkv_heads(u)
        fq, fk = F.elu(q) + 1.0, F.elu(k) + 1.0
        return dict(fq=fq, fk=fk, v=v, log_eta=torch.log((fq * fk.cumsum(dim=2)).sum(-1)))

    def forward(self, u):
        f = self.features(u)
        ones = torch.ones_like(f["v"][..., :1])          # numerator and normaliser in one pass
        y = chunked_linear_attention(f["fq"], f["fk"], torch.cat([f["v"], ones], dim=-1), self.chunk)
        return self.out(merge_heads(y[..., :-1] / y[..., -1:]))

    def eigenvalues(self, u):
        return log_ratio_eigenvalues(self.features(u)["log_eta"])           # (B, H, L)

    def dsf(self, u):
        f = self.features(u)
        lam = log_ratio_eigenvalues(f["log_eta"]).nan_to_num(1.0)  # λ_0 multiplies h_{-1} = 0: any value is exact
        inp = f["fk"][..., :, None] * f["v"][..., None, :] * torch.exp(-f["log_eta"])[..., None, None]
        return DSF(lam=lam[..., None], inp=inp, C=f["fq"])

    def readout(self, y, u):
        return self.out(merge_heads(y))


class UnnormalisedLinearAttention(LinearAttention):
    eig_dims = ("head",)
    lam0_undefined = False

    def forward(self, u):
        f = self.features(u)
        return self.out(merge_heads(chunked_linear_attention(f["fq"], f["fk"], f["v"], self.chunk)))

    def eigenvalues(self, u):
        return torch.ones(self.n_heads, dtype=u.dtype, device=u.device)    # (H,)

    def dsf(self, u):
        f = self.features(u)
        return DSF(lam=torch.ones_like(f["log_eta"])[..., None], inp=f["fk"][..., :, None] * f["v"][..., None, :],
                   C=f["fq"])
