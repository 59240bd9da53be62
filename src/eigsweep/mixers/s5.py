"""S5: one MIMO diagonal SSM with a shared state, diagonalised HiPPO-N init, zero-order hold.

State of P = d_state real dimensions held as P/2 complex modes (conjugate symmetry). Λ from the eigenvalues
−½ + iω of HiPPO-N (its eigenvectors V map the lecun-normal B (P x H) and C (H x P) into the eigenbasis:
B̃ = Vᴴ B, C̃ = C V), per-mode step Δ_p (log-uniform [1e-3, 0.1]):

    λ_p = exp(Λ_p Δ_p),  B̄ = (λ − 1)/Λ · B̃,  h_i = λ ⊙ h_{i-1} + B̄ u_i,  y_i = 2 Re(C̃ h_i) + D ⊙ u_i.

eigenvalues() returns all P eigenvalues of the real system (λ and λ̄). Forward: diagonal scan by FFT, then the
position-wise GELU + GLU output. DSF: one head; the read-out C̃ is folded into the state's columns
(h_i[p, c] = C̃[c, p] h_i[p]), exact because Λ is diagonal and C̃ constant, so C_DSF = 1.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer
from eigsweep.mixers.blocks import GLUOutput, as_complex, complex_param, hippo_n_eig, log_uniform, with_conjugates
from eigsweep.mixers.scan import diagonal_scan


class S5(Mixer):
    no_weight_decay = ("log_neg_re", "lam_im", "log_dt")
    eig_dims = ("state",)
    complex_eigenvalues = True

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        H, P = cfg.d_model, cfg.d_state
        M = max(1, P // 2)
        lam, V = hippo_n_eig(2 * M)
        lam, V = lam[M:], V[:, M:]                                         # the modes with ω > 0
        B = torch.randn(2 * M, H, dtype=torch.float64) / math.sqrt(H)       # lecun normal
        C = torch.randn(H, 2 * M, dtype=torch.float64) / math.sqrt(2 * M)
        self.log_neg_re = nn.Parameter(torch.log(-lam.real).float())
        self.lam_im = nn.Parameter(lam.imag.float())
        self.B = complex_param(V.conj().T @ B.to(V.dtype))                  # (M, H)
        self.C = complex_param(C.to(V.dtype) @ V)                           # (H, M)
        self.log_dt = nn.Parameter(log_uniform(M))
        self.D = nn.Parameter(torch.randn(H))
        self.out = GLUOutput(H)

    def features(self, u):
        """log λ (M,) and the state input B̄ u (B, L, M)."""
        Lam = torch.complex(-torch.exp(self.log_neg_re), self.lam_im)
        log_lam = Lam * torch.exp(self.log_dt)
        Bbar = (torch.expm1(log_lam) / Lam)[:, None] * as_complex(self.B)
        return dict(log_lam=log_lam, x=u.to(Bbar.dtype) @ Bbar.T)

    def forward(self, u):
        f = self.features(u)
        h = diagonal_scan(f["x"], f["log_lam"])
        return self.out(2 * (h @ as_complex(self.C).T).real + u * self.D)

    def eigenvalues(self, u):
        return with_conjugates(torch.exp(self.features(u)["log_lam"]))    # (P,)

    def dsf(self, u):
        f = self.features(u)
        C = as_complex(self.C)
        inp = with_conjugates(f["x"][..., :, None] * C.T, dim=-2)[:, None]  # (B, 1, L, P, H)
        return DSF(lam=with_conjugates(torch.exp(f["log_lam"]))[None, None, None], inp=inp,
                   C=torch.ones(1, 1, 1, inp.shape[-2], dtype=u.dtype, device=u.device),
                   D=(u * self.D)[:, None])

    def readout(self, y, u):
        return self.out(y.real[:, 0])
