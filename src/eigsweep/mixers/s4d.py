"""S4D: one diagonal complex SSM per channel, zero-order hold, S4D-Lin (default) or S4D-Inv init.

Per channel h (H = d_model channels) and mode n (N/2 complex modes, conjugate-symmetric, so N = d_state real
dimensions): A_n = −exp(a_re) + i a_im, λ_{h,n} = exp(Δ_h A_{h,n}), B̄ = (λ − 1)/A · B, and
y = 2 Re Σ_n C_n h_n + D u. The real system has the eigenvalues λ and λ̄; eigenvalues() returns both (N per
channel, conjugate pairs). Forward: the kernel K_l = 2 Re Σ_n C_n B̄_n λ_n^l and an FFT convolution.
Then the S4/S5 position-wise output (GELU, GLU). Options: ``s4d_init`` = "lin" | "inv".
"""
from __future__ import annotations

import math

import torch
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer
from eigsweep.mixers.blocks import GLUOutput, as_complex, complex_param, log_uniform, with_conjugates
from eigsweep.mixers.scan import causal_fft_conv


class S4D(Mixer):
    no_weight_decay = ("log_neg_re", "A_im", "log_dt")
    eig_dims = ("head", "state")
    complex_eigenvalues = True

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        H, M = cfg.d_model, max(1, cfg.d_state // 2)
        init = cfg.options.get("s4d_init", "lin")
        n = torch.arange(M, dtype=torch.float64)
        if init == "lin":
            im = math.pi * n
        elif init == "inv":
            im = (2 * M / math.pi) * (2 * M / (2 * n + 1) - 1)  # S4D-Inv (N = 2M)
        else:
            raise ValueError(f"s4d: options.s4d_init must be 'lin' or 'inv', got {init!r}")
        self.log_neg_re = nn.Parameter(torch.full((H, M), math.log(0.5)))   # Re A = −½
        self.A_im = nn.Parameter(im.float().repeat(H, 1))
        self.log_dt = nn.Parameter(log_uniform(H))
        self.B = complex_param(torch.ones(H, M, dtype=torch.complex128))
        self.C = complex_param(torch.randn(H, M, dtype=torch.complex128))    # complex normal, E|C|² = 1
        self.D = nn.Parameter(torch.randn(H))
        self.out = GLUOutput(H)

    def features(self, u):
        """Per channel and mode: log λ = ΔA (H, M) and the discretised input weight B̄ (H, M); u is not read."""
        A = torch.complex(-torch.exp(self.log_neg_re), self.A_im)
        dtA = torch.exp(self.log_dt)[:, None] * A
        return dict(log_lam=dtA, Bbar=torch.expm1(dtA) / A * as_complex(self.B))

    def forward(self, u):
        f = self.features(u)
        L = u.shape[1]
        powers = torch.exp(f["log_lam"][..., None] * torch.arange(L, device=u.device, dtype=u.dtype))   # (H, M, L)
        K = 2 * torch.einsum("hm,hml->hl", as_complex(self.C) * f["Bbar"], powers).real
        y = causal_fft_conv(u.transpose(1, 2), K).transpose(1, 2) + u * self.D
        return self.out(y)

    def eigenvalues(self, u):
        return with_conjugates(torch.exp(self.features(u)["log_lam"]))     # (H, N)

    def dsf(self, u):
        f = self.features(u)
        lam = with_conjugates(torch.exp(f["log_lam"]))[None, :, None]      # (1, H, 1, N)
        inp = with_conjugates(f["Bbar"])[None, :, None, :, None] * u.transpose(1, 2)[..., None, None]
        C = with_conjugates(as_complex(self.C))[None, :, None]
        return DSF(lam=lam, inp=inp, C=C, D=(u * self.D).transpose(1, 2)[..., None])

    def readout(self, y, u):
        return self.out(y.real.squeeze(-1).transpose(1, 2))
