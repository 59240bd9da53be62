"""LRU (Linear Recurrent Unit): a MIMO complex diagonal recurrence with exponential parametrisation.

    λ = exp(−exp(ν) + i·exp(θ)),  h_i = λ ⊙ h_{i-1} + γ ⊙ (B u_i),  y_i = Re(C h_i) + D ⊙ u_i,

N = d_state complex modes (no conjugate symmetry, so the N complex λ are the eigenvalues reported), γ =
√(1 − |λ|²) (learned as log γ, initialised from λ). Init: |λ|² uniform on [r_min², r_max²] (uniform on the
ring [0.9, 0.99] in area), phase uniform on [0, max_phase] (2π); options ``lru_r_min``, ``lru_r_max``,
``lru_max_phase``. B, C complex normal scaled 1/√(2H), 1/√N. Forward: diagonal scan by FFT, then the
position-wise GELU + GLU output. DSF: one head, C folded into the state's columns (as in S5), C_DSF = 1.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from eigsweep.dsf import DSF
from eigsweep.mixers.base import Mixer
from eigsweep.mixers.blocks import GLUOutput, as_complex, complex_param
from eigsweep.mixers.scan import diagonal_scan


class LRU(Mixer):
    no_weight_decay = ("nu_log", "theta_log", "gamma_log")
    eig_dims = ("state",)
    complex_eigenvalues = True

    def __init__(self, cfg, layer_idx=0):
        super().__init__(cfg, layer_idx)
        H, N = cfg.d_model, cfg.d_state
        r_min = cfg.options.get("lru_r_min", 0.9)
        r_max = cfg.options.get("lru_r_max", 0.99)
        max_phase = cfg.options.get("lru_max_phase", 2 * math.pi)
        r2 = torch.empty(N, dtype=torch.float64).uniform_(r_min ** 2, r_max ** 2)
        self.nu_log = nn.Parameter(torch.log(-0.5 * torch.log(r2)).float())   # |λ| = exp(−exp(ν))
        self.theta_log = nn.Parameter(torch.log(max_phase * torch.rand(N, dtype=torch.float64)).float())
        self.gamma_log = nn.Parameter(0.5 * torch.log(1 - r2).float())
        self.B = complex_param(torch.randn(N, H, dtype=torch.complex128) / math.sqrt(H))  # E|B|² = 1/H: 1/√(2H) per part
        self.C = complex_param(torch.randn(H, N, dtype=torch.complex128) / math.sqrt(N))
        self.D = nn.Parameter(torch.randn(H))
        self.out = GLUOutput(H)

    def features(self, u):
        """log λ = −exp(ν) + i·exp(θ) (N,) and the state input γ ⊙ B u (B, L, N)."""
        Bn = torch.exp(self.gamma_log)[:, None] * as_complex(self.B)
        return dict(log_lam=torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)),
                    x=u.to(Bn.dtype) @ Bn.T)

    def forward(self, u):
        f = self.features(u)
        h = diagonal_scan(f["x"], f["log_lam"])
        return self.out((h @ as_complex(self.C).T).real + u * self.D)

    def eigenvalues(self, u):
        return torch.exp(self.features(u)["log_lam"])                      # (N,)

    def dsf(self, u):
        f = self.features(u)
        inp = (f["x"][..., :, None] * as_complex(self.C).T)[:, None]       # (B, 1, L, N, H)
        return DSF(lam=torch.exp(f["log_lam"])[None, None, None], inp=inp,
                   C=torch.ones(1, 1, 1, inp.shape[-2], dtype=u.dtype, device=u.device),
                   D=(u * self.D)[:, None])

    def readout(self, y, u):
        return self.out(y.real[:, 0])
