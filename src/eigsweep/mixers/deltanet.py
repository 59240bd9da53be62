"""DeltaNet (Schlag et al. 2021; Yang et al. 2024): linear attention updated by the delta rule.

Per head (state d_k x d_v):  S_i = (I − β_i k_i k_iᵀ) S_{i-1} + β_i k_i v_iᵀ,   o_i = S_iᵀ q_i,
with L2-normalised q, k (after cfg.short_conv), q scaled by d_k^{-1/2}, β_i = β_max σ(w_βᵀ x_i) per head,
β_max = options["beta_range"] (default 1: β ∈ (0, 1); 2: β ∈ (0, 2) so that eigenvalues may be negative).
Output: per-head RMSNorm and projection.

Gated DeltaNet (Yang, Kautz, Hatamizadeh 2025) adds a data-dependent scalar decay per head:
    S_i = α_i (I − β_i k_i k_iᵀ) S_{i-1} + β_i k_i v_iᵀ,
α_i = exp(Δ_i A_h) with Δ_i = softplus(w_Δᵀ x_i + dt_bias) and A_h = −exp(A_log,h) (Mamba-2's gate and
initialisation: dt log-uniform in [1e-3, 0.1], A ∈ U[1, 16]), and its output is per-head RMSNorm ⊙ SiLU(W_g x),
then the projection.

The transition Λ_i = I − β_i k_i k_iᵀ is NOT diagonal (dsf gives full (B, H, L, N, N) matrices). Its TRUE
eigenvalues in closed form: 1 − β_i‖k_i‖² once (eigenvector k_i) and 1 (d_k − 1 times, the complement of
k_i); gated DeltaNet multiplies all of them by α_i. ``eigenvalues`` returns them as (B, H, L, d_k)
(eig_dims (sample, head, time, state)), the k_i-eigenvalue first.

``chunked_delta_rule`` is the training form: chunks of T tokens with the UT transform, i.e. the in-chunk
pseudo-values U = (I + A)^{-1} diag(β)(V − diag(γ) K S_0) via one batched triangular solve for all chunks
(a blocked inverse under torch.compile), then a short loop over chunks (L/T steps, one matmul each) carrying
the state.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers import fla_ops
from eigsweep.mixers.base import QKVMixer
from eigsweep.mixers.blocks import (RMSNorm, causal_mask, float32_scan, gated_readout, inv_softplus, log_uniform,
                                    merge_heads, pad_to_chunks)


class DeltaNet(QKVMixer):
    eig_dims = ("sample", "head", "time", "state")
    # the chunk size splits the work and leaves the result unchanged (up to rounding). 128, not 64: on an H200 at
    # the paper's MQAR size the solo step was 2.47× softmax's at 128 against 2.67× / 2.62× at 64 (paired
    # timings, two runs), 14.6 against 18.0 ms in another run, and a compiled pack of 32 ran 512 run-steps/s
    # at 128 (484 at 64, an earlier session); benchmarks/README.md, eleventh and twelfth sessions
    chunk = 128
    gated = False       # log_alpha ≡ 0

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d = cfg.d_model
        self.beta_range = float(cfg.options.get("beta_range", 1.0))
        if not 0 < self.beta_range <= 2:
            raise ValueError(f"{type(self).__name__}: options.beta_range must lie in (0, 2], got {self.beta_range}")
        self.beta_proj = nn.Linear(d, self.n_heads, bias=True)
        self.norm = RMSNorm(self.head_dim)
        self.out = nn.Linear(d, d, bias=False)

    def log_alpha(self, u):
        """log α_i (B, H, L): 0 for plain DeltaNet (α ≡ 1)."""
        return u.new_zeros(u.shape[0], self.n_heads, u.shape[1])

    def features(self, u):
        """q (normalised, scaled), k (normalised), v (B, H, L, head_dim); β and log α (B, H, L)."""
        q, k, v, _ = self.qkv_heads(u)
        beta = self.beta_range * torch.sigmoid(self.beta_proj(u)).transpose(1, 2)
        return dict(q=F.normalize(q, dim=-1) / math.sqrt(self.head_dim), k=F.normalize(k, dim=-1), v=v,
                    beta=beta, log_alpha=self.log_alpha(u))

    def forward(self, u):
        f = self.features(u)
        y = chunked_delta_rule(f["q"], f["k"], f["v"], f["beta"], f["log_alpha"], self.chunk, self.gated)
        return self.readout(y, u)

    def eigenvalues(self, u):
        """(B, H, L, d_k): α(1 − β‖k‖²) first (the informative one), then α (d_k − 1 times)."""
        f = self.features(u)
        k, alpha = f["k"], torch.exp(f["log_alpha"])[..., None]
        along_k = 1 - f["beta"] * k.pow(2).sum(-1)
        return alpha * torch.cat([along_k[..., None], torch.ones_like(k[..., 1:])], dim=-1)

    def dsf(self, u):
        f = self.features(u)
        k, beta = f["k"], f["beta"][..., None, None]
        eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
        lam = torch.exp(f["log_alpha"])[..., None, None] * (eye - beta * k[..., :, None] * k[..., None, :])
        return DSF(lam=lam, inp=beta * k[..., :, None] * f["v"][..., None, :], C=f["q"])

    def readout(self, y, u):
        return self.out(merge_heads(self.norm(y)))


class GatedDeltaNet(DeltaNet):
    # 64: since the tenth session's changes its solo step on an H200 was 2.72× softmax's at 64 against 2.95× /
    # 3.06× at 128 (paired timings), 16.5 against 17.6 ms in another run; a compiled pack of 32 ran 449 run-steps/s
    # at 64 and 463 at 128 in one run (3%, within run-to-run noise); benchmarks/README.md, twelfth session.
    # (Before those changes 128 had been faster: 22.8 / 24.9 against 29.0 / 31.3 ms.)
    chunk = 64
    gated = True

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        d, H = cfg.d_model, self.n_heads
        self.dt_proj = nn.Linear(d, H, bias=False)
        self.dt_bias = nn.Parameter(inv_softplus(torch.exp(log_uniform(H))))
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(1, 16)))
        self.out_gate = nn.Linear(d, d, bias=False)

    def log_alpha(self, u):
        dt = F.softplus(self.dt_proj(u) + self.dt_bias)                       # (B, L, H)
        return (-torch.exp(self.A_log) * dt).transpose(1, 2)                   # (B, H, L)

    def readout(self, y, u):
        return gated_readout(y, u, self.norm, self.out_gate, self.out)


def unit_lower_inverse(M: torch.Tensor) -> torch.Tensor:
    """(…, T, T) unit lower-triangular M → M^{-1} by recursive halving (the blocked inversion LAPACK's trtri
    does): M = [[M11, 0], [M21, M22]] has M^{-1} = [[X11, 0], [−X22 M21 X11, X22]] with X11, X22 the inverses
    of the two diagonal blocks, which are inverted together, one level down (log2 T levels of two batched
    matmuls). T a power of 2. Only batched matmuls and copies: under torch.compile this replaces one batched
    triangular solve, whose cuBLAS kernel (batch_trsm) took 31% of a compiled DeltaNet pack's step on an H200."""
    T = M.shape[-1]
    if T == 1:
        return torch.ones_like(M)
    h = T // 2
    X = unit_lower_inverse(torch.stack([M[..., :h, :h], M[..., h:, h:]]))       # (2, …, h, h)
    X11, X22 = X[0], X[1]
    mm = torch.matmul if h > 8 else small_matmul
    X21 = -mm(mm(X22, M[..., h:, :h]), X11)
    top = torch.cat([X11, torch.zeros_like(X11)], dim=-1)
    return torch.cat([top, torch.cat([X21, X22], dim=-1)], dim=-2)


def small_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for matrices of a few rows, as a broadcast product and a sum (Inductor fuses it; a batched GEMM
    of 1 × 1 to 8 × 8 matrices wastes the library kernel)."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


def unit_lower_solve(M: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """M^{-1} rhs for unit lower-triangular M (…, T, T): one triangular solve eagerly (fewest launches), the
    blocked inverse under torch.compile when T is a power of 2 (the same values; tests/test_model.py)."""
    T = M.shape[-1]
    if torch.compiler.is_compiling() and T & (T - 1) == 0:
        return unit_lower_inverse(M) @ rhs
    return torch.linalg.solve_triangular(M, rhs, upper=False, unitriangular=True)


def chunked_delta_rule(q, k, v, beta, log_alpha, chunk=64, gated=True):
    """o_i = S_iᵀ q_i for S_i = α_i (I − β_i k_i k_iᵀ) S_{i-1} + β_i k_i v_iᵀ, S_{-1} = 0.

    q, k (B, H, L, N), v (B, H, L, P), beta (B, H, L), log_alpha (B, H, L) (0: α ≡ 1; ``gated=False`` says it is
    0). Returns o (B, H, L, P). On CUDA with fla installed (fla_ops.DELTA_RULE_ON_CUDA) fla's kernels, which take
    bf16 (the inputs as they come: cast once, inside the op); else delta_rule_torch, in float32 at least.
    """
    if fla_ops.DELTA_RULE_ON_CUDA and fla_ops.available(q, gated):
        return fla_ops.delta_rule(q, k, v, beta, log_alpha, gated)[0]
    return delta_rule_torch(q, k, v, beta, log_alpha, chunk)


@float32_scan
def delta_rule_torch(q, k, v, beta, log_alpha, chunk):
    """chunked_delta_rule's torch form, with chunks of ``chunk`` tokens, in float32 at least and outside autocast
    (blocks.float32_scan: the blocked inverse's matmuls build on each other level by level, which bf16 would not
    survive).

    In a chunk with entering state S_0 and in-chunk decays γ_t = α_1⋯α_t: S_t = α_t S_{t-1} + k_t u_tᵀ with
    u_t = β_t (v_t − α_t S_{t-1}ᵀ k_t), so U = (I + A)^{-1} diag(β) (V − diag(γ) K S_0) = U_v − W S_0 with
    A_tj = β_t (γ_t/γ_j) k_tᵀ k_j (j < t); then O = diag(γ) Q S_0 + (QKᵀ ⊙ Γ)_{j≤t} U and
    S_T = γ_T S_0 + (K ⊙ γ_T/γ_j)ᵀ U. Written as S_T = (γ_T I − K_decᵀ W) S_0 + K_decᵀ U_v and
    O = (Q_dec − attn W) S_0 + attn U_v, everything but the state's one matmul per chunk is batched over chunks.
    """
    B, H, L, N = q.shape
    P = v.shape[-1]
    T = min(chunk, L)
    # padded tokens have k = 0, β = 0, α = 1: they leave the state unchanged
    q, k, v, beta, log_alpha = pad_to_chunks(T, 2, q, k, v, beta, log_alpha)
    n = q.shape[2] // T
    q, k, v = (t.reshape(B, H, n, T, t.shape[-1]) for t in (q, k, v))
    beta, g = beta.reshape(B, H, n, T), log_alpha.reshape(B, H, n, T).cumsum(-1)   # g_t = log γ_t
    strict = causal_mask(T, q.device).tril(-1)
    causal = causal_mask(T, q.device)
    diff = g[..., :, None] - g[..., None, :]                                       # log γ_t/γ_j
    Gam = torch.exp(diff.masked_fill(~causal, float("-inf")))                      # (B, H, n, T, T)
    KK, QK = (torch.cat([k, q], dim=-2) @ k.transpose(-1, -2)).split(T, dim=-2)     # kkᵀ, qkᵀ: one matmul
    A = (beta[..., None] * KK * Gam).masked_fill(~strict, 0)
    eye = torch.eye(T, dtype=q.dtype, device=q.device)
    rhs = torch.cat([beta[..., None] * v, (beta * torch.exp(g))[..., None] * k], dim=-1)
    sol = unit_lower_solve(eye + A, rhs)                                           # [U_v | W]: U = U_v − W S_0
    attn = QK * Gam                                                                # masked by Gam
    q_dec = q * torch.exp(g)[..., None]
    k_dec_t = (k * torch.exp(g[..., -1:] - g)[..., None]).transpose(-1, -2)       # (B, H, n, N, T)
    gamma_end = torch.exp(g[..., -1])[..., None, None]                             # (B, H, n, 1, 1)
    inject, KW = (k_dec_t @ sol).split([P, N], dim=-1)                             # K_decᵀU_v, K_decᵀW
    trans = gamma_end * torch.eye(N, dtype=q.dtype, device=q.device) - KW          # (B, H, n, N, N)
    attn_U_v, attn_W = (attn @ sol).split([P, N], dim=-1)
    # the states entering each chunk: S_0 = 0, S_{c+1} = trans_c S_c + inject_c (one matmul per chunk;
    # unbind, not index: the backward then stacks the chunks' gradients once)
    states, S = [q.new_zeros(B, H, N, P)], None
    for trans_c, inject_c in zip(trans.unbind(2)[:-1], inject.unbind(2)[:-1]):
        S = inject_c if S is None else trans_c @ S + inject_c
        states.append(S)
    S_in = torch.stack(states, dim=2)                                              # (B, H, n, N, P)
    out = (q_dec - attn_W) @ S_in + attn_U_v
    return out.reshape(B, H, n * T, P)[:, :, :L]
