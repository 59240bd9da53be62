"""The Dynamical Systems Framework form of a sequence mixer, and its token-by-token unrolling.

    h_i = Λ_i h_{i-1} + B_i u_i,   y_i = C_i h_i + D_i u_i,   h_{-1} = 0

Per (batch, head) the state h is an N x P matrix. Λ_i is either diagonal over N (``lam`` of shape
(B, H, L, N), broadcast over P) or a full N x N matrix (``lam`` of shape (B, H, L, N, N), e.g. DeltaNet).
``inp`` holds the already-formed input term B_i u_i (B, H, L, N, P), ``C`` the read-out (B, H, L, N) with
y_i[p] = sum_n C_i[n] h_i[n, p], and ``D`` the feed-through D_i u_i (B, H, L, P) or None.
Any of them may have size-1 (broadcast) batch/time dimensions, as LTI models do.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DSF:
    lam: torch.Tensor
    inp: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor | None = None

    @property
    def full_transition(self) -> bool:
        return self.lam.dim() == 5

    def transition_eigenvalues(self) -> torch.Tensor:
        """Eigenvalues of each Λ_i: its diagonal, or a numerical eigensolve for full matrices."""
        if self.full_transition:
            return torch.linalg.eigvals(self.lam)
        return self.lam


def unroll(dsf: DSF) -> torch.Tensor:
    """Step the recurrence token by token; returns y of shape (B, H, L, P)."""
    inp = dsf.inp
    B, H, L, N, P = inp.shape
    dtype = torch.promote_types(torch.promote_types(inp.dtype, dsf.lam.dtype), dsf.C.dtype)
    lam = dsf.lam.expand(B, H, L, *dsf.lam.shape[3:]).to(dtype)
    C = dsf.C.expand(B, H, L, N).to(dtype)
    h = torch.zeros(B, H, N, P, dtype=dtype, device=inp.device)
    ys = []
    for i in range(L):
        if dsf.full_transition:
            h = lam[:, :, i] @ h + inp[:, :, i]
        else:
            h = lam[:, :, i, :, None] * h + inp[:, :, i]
        ys.append(torch.einsum("bhn,bhnp->bhp", C[:, :, i], h))
    y = torch.stack(ys, dim=2)
    if dsf.D is not None:
        y = y + dsf.D.expand(B, H, L, P)
    return y
