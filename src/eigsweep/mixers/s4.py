"""S4 with a dense HiPPO-LegS state matrix and bilinear discretisation.

One SISO SSM per channel h (H = d_model) with a shared, learned dense A (N x N, N = d_state, init HiPPO-LegS),
per-channel B_h (init √(2n+1)), C_h (normal), step Δ_h (log-uniform [1e-3, 0.1]) and D_h:

    Ā_h = (I − Δ_h A/2)^{-1}(I + Δ_h A/2),   B̄_h = (I − Δ_h A/2)^{-1} Δ_h B_h,   y = C_h h + D_h u.

Λ = Ā_h is not diagonal in this basis: the DSF gives the full matrices (lam of shape (1, H, 1, N, N)) and
eigenvalues() the eigenvalues of Ā_h (complex dtype; a real matrix, so real or in conjugate pairs). At init A is
lower triangular, so λ_{h,n} = (1 − Δ_h(n+1)/2)/(1 + Δ_h(n+1)/2) exactly (real, in (−1, 1)).
Forward: the kernel K_l = C_h Ā_h^l B̄_h by Krylov doubling (log₂L matrix products) and an FFT convolution
(the dense form of S4's convolution mode; no NPLR / Cauchy kernel). Then the position-wise GELU + GLU output.
"""
from __future__ import annotations

import torch
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer
from eigsweep.mixers.lti import GLUOutput, causal_fft_conv, hippo_legs, log_uniform


class S4(Mixer):
    no_weight_decay = ("A", "B", "log_dt")
    eig_dims = ("head", "state")
    complex_eigenvalues = True

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        H, N = cfg.d_model, cfg.d_state
        A, B = hippo_legs(N)
        self.A = nn.Parameter(A.float())
        self.B = nn.Parameter(B.float().repeat(H, 1))
        self.C = nn.Parameter(torch.randn(H, N) * 0.5 ** 0.5)
        self.log_dt = nn.Parameter(log_uniform(H))
        self.D = nn.Parameter(torch.randn(H))
        self.out = GLUOutput(H)

    def features(self):
        """The discretised (Ā (H, N, N), B̄ (H, N)), in the parameters' precision (never in autocast's bf16)."""
        with torch.autocast(self.A.device.type, enabled=False):
            return self._discretise()

    def _discretise(self):
        N = self.A.shape[0]
        dt = torch.exp(self.log_dt)[:, None, None]
        I = torch.eye(N, dtype=self.A.dtype, device=self.A.device)
        left = I - dt / 2 * self.A
        Abar = torch.linalg.solve(left, I + dt / 2 * self.A)
        Bbar = torch.linalg.solve(left, dt[..., 0] * self.B)
        return Abar, Bbar

    def kernel(self, L):
        """K_{h,l} = C_h Ā_h^l B̄_h for l < L by doubling: [X, Ā^{2^k} X] with X the Krylov block so far."""
        Abar, Bbar = self.features()
        X, P = Bbar[..., None], Abar                                       # (H, N, 1), Ā
        while X.shape[-1] < L:
            X = torch.cat([X, P @ X], dim=-1)
            if X.shape[-1] < L:
                P = P @ P
        with torch.autocast(X.device.type, enabled=False):
            return torch.einsum("hn,hnl->hl", self.C, X[..., :L])

    def forward(self, u):
        K = self.kernel(u.shape[1])
        y = causal_fft_conv(u.transpose(1, 2), K).transpose(1, 2) + u * self.D
        return self.out(y)

    def eigenvalues(self, u=None):
        return torch.linalg.eigvals(self.features()[0])                    # (H, N)

    def dsf(self, u):
        Abar, Bbar = self.features()
        inp = Bbar[None, :, None, :, None] * u.transpose(1, 2)[..., None, None]
        return DSF(lam=Abar[None, :, None], inp=inp, C=self.C[None, :, None],
                   D=(u * self.D).transpose(1, 2)[..., None])

    def readout(self, y, u):
        return self.out(y.squeeze(-1).transpose(1, 2))
