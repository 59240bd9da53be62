"""S4 with a dense state matrix kept stable by construction, HiPPO-LegS initialisation, bilinear discretisation.

One SISO SSM per channel h (H = d_model) with a shared, learned dense A (N x N, N = d_state), per-channel B_h
(init √(2n+1)), C_h (normal), step Δ_h (log-uniform [1e-3, 0.1]) and D_h:

    Ā_h = (I − Δ_h A/2)^{-1}(I + Δ_h A/2),   B̄_h = (I − Δ_h A/2)^{-1} Δ_h B_h,   y = C_h h + D_h u.

Parameterisation of A: a skew-symmetric part plus a negative definite one,

    A = (W − Wᵀ) + (Tᵀ − T) − diag(exp(d)) − P Pᵀ,    T = tril(P Pᵀ, −1),

the real, dense counterpart of the stable normal-plus-low-rank form A = Λ − P Pᴴ with Re Λ = −exp(·) < 0 that
the S4 line uses to keep S4 stable (Gu et al., "How to Train Your HiPPO", 2022: the low-rank term tied, P = Q,
and the real part of the diagonal constrained negative through an exponential). For ANY parameter values
A + Aᵀ = −2 diag(exp(d)) − 2 P Pᵀ ≺ 0, so every eigenvalue μ of A has Re μ < 0 (Re xᴴAx < 0), and the bilinear
map λ = (1 + Δμ/2)/(1 − Δμ/2) with Δ > 0 puts every eigenvalue of Ā strictly inside the unit circle.
At initialisation (W = 0, d = log ½, P_n = √(n + ½)) A is exactly HiPPO-LegS: lower triangular with
A_nk = −√(2n+1)√(2k+1) below the diagonal and −½ − P_n² = −(n + 1) on it (the upper triangle cancels exactly).

Λ = Ā_h is not diagonal in this basis: the DSF gives the full matrices (lam of shape (1, H, 1, N, N)) and
eigenvalues() the eigenvalues of Ā_h (complex dtype; a real matrix, so real or in conjugate pairs).
Forward: the kernel K_l = C_h Ā_h^l B̄_h by Krylov doubling (log₂L matrix products) and an FFT convolution
(the dense form of S4's convolution mode; no Cauchy kernel). Then the position-wise GELU + GLU output.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer
from eigsweep.mixers.blocks import GLUOutput, log_uniform
from eigsweep.mixers.inverse_triton import inverse
from eigsweep.mixers.scan import causal_fft_conv


class S4(Mixer):
    no_weight_decay = ("A_skew", "A_log_damp", "A_low_rank", "B", "log_dt")
    eig_dims = ("head", "state")
    complex_eigenvalues = True

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        H, N = cfg.d_model, cfg.d_state
        n = torch.arange(N, dtype=torch.float64)
        self.A_skew = nn.Parameter(torch.zeros(N, N))                          # W
        self.A_log_damp = nn.Parameter(torch.full((N,), math.log(0.5)))        # d
        self.A_low_rank = nn.Parameter(torch.sqrt(n + 0.5).float())            # P
        self.B = nn.Parameter(torch.sqrt(2 * n + 1).float().repeat(H, 1))
        self.C = nn.Parameter(torch.randn(H, N) * 0.5 ** 0.5)
        self.log_dt = nn.Parameter(log_uniform(H))
        self.D = nn.Parameter(torch.randn(H))
        self.out = GLUOutput(H)

    def state_matrix(self) -> torch.Tensor:
        """A (N, N) = skew-symmetric + negative definite (see the module docstring)."""
        W, P = self.A_skew, self.A_low_rank
        PP = P[:, None] * P[None, :]
        T = PP.tril(-1)
        return (W - W.T) + (T.T - T) - torch.diag(torch.exp(self.A_log_damp)) - PP

    def features(self, u):
        """The discretised Ā (H, N, N) and B̄ (H, N), from parameters alone (u is not read), in the
        parameters' precision (never in autocast's bf16)."""
        with torch.autocast(self.A_skew.device.type, enabled=False):
            A = self.state_matrix()
            I = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
            dt = torch.exp(self.log_dt)[:, None, None]
            # M = I − ΔA/2 (H, N, N) has a positive definite symmetric part for any parameters, so it is
            # invertible and needs no pivoting (inverse_triton: one kernel on CUDA); then, as I + ΔA/2 = 2I − M,
            # Ā = M⁻¹(I + ΔA/2) = 2M⁻¹ − I and B̄ = M⁻¹ ΔB
            M_inv = inverse(I - dt / 2 * A)
            return dict(Abar=2 * M_inv - I, Bbar=(M_inv @ (dt[..., 0] * self.B)[..., None])[..., 0])

    def kernel(self, f, L):
        """K_{h,l} = C_h Ā_h^l B̄_h (H, L) for l < L by doubling: [X, Ā^{2^k} X] with X the Krylov block so far."""
        X, P = f["Bbar"][..., None], f["Abar"]                               # (H, N, 1), Ā
        while X.shape[-1] < L:
            X = torch.cat([X, P @ X], dim=-1)
            if X.shape[-1] < L:
                P = P @ P
        with torch.autocast(X.device.type, enabled=False):
            return torch.einsum("hn,hnl->hl", self.C, X[..., :L])

    def forward(self, u):
        K = self.kernel(self.features(u), u.shape[1])
        y = causal_fft_conv(u.transpose(1, 2), K).transpose(1, 2) + u * self.D
        return self.out(y)

    def eigenvalues(self, u):
        return torch.linalg.eigvals(self.features(u)["Abar"])                # (H, N)

    def dsf(self, u):
        f = self.features(u)
        inp = f["Bbar"][None, :, None, :, None] * u.transpose(1, 2)[..., None, None]
        return DSF(lam=f["Abar"][None, :, None], inp=inp, C=self.C[None, :, None],
                   D=(u * self.D).transpose(1, 2)[..., None])

    def readout(self, y, u):
        return self.out(y.squeeze(-1).transpose(1, 2))
