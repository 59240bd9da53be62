"""The batched inverse (mixers/inverse_triton.py) and S4's discretisation through it.

CPU (normal suite): the op is torch.linalg's inverse with its gradient, vmapped and compiled; S4's Ā and B̄
equal the bilinear formulas solved directly; importing S4 does not import Triton. Where Triton is installed the
Gauss–Jordan kernel runs through its interpreter (TRITON_INTERPRET=1) and matches. GPU (``-m gpu``): the kernel
on CUDA, and S4's forward and gradients with the kernel equal those with torch.linalg.
"""

import pytest
import torch
from torch.func import vmap

from eigsweep.config import ModelConfig
from eigsweep.mixers import inverse_triton as inv
from eigsweep.mixers.s4 import S4
from conftest import assert_importing_does_not_import_triton, relative_error, run_in_triton_interpreter

gpu = pytest.mark.skipif(not torch.cuda.is_available() or inv._triton() is None, reason="needs CUDA and Triton")


def s4_matrices(n_state: int, channels: int, seed: int, strength: float, device="cpu") -> torch.Tensor:
    """S4's I − ΔA/2 (channels, n, n) in float64, with its trainable parts drawn at ``strength`` around the
    HiPPO initialisation (0: HiPPO itself) and Δ up to 10× its initial range (0.001–1)."""
    torch.manual_seed(seed)
    m = S4(ModelConfig(d_model=channels, d_state=n_state), 0).double()
    with torch.no_grad():
        m.A_skew.normal_(0, strength)
        m.A_log_damp.add_(strength * torch.randn(n_state, dtype=torch.float64))
        m.A_low_rank.mul_(1 + strength * torch.rand(n_state, dtype=torch.float64))
        m.log_dt.copy_(torch.linspace(-6.9, 0.0, channels, dtype=torch.float64))
    dt = torch.exp(m.log_dt)[:, None, None]
    return (torch.eye(n_state, dtype=torch.float64) - dt / 2 * m.state_matrix()).detach().to(device)


def test_the_op_is_the_inverse_with_its_gradient():
    M = s4_matrices(7, 5, seed=0, strength=1.0).requires_grad_()
    Y = inv.inverse(M)
    torch.testing.assert_close(Y, torch.linalg.inv(M.detach()), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(Y @ M.detach(), torch.eye(7, dtype=torch.float64).expand(5, 7, 7), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(inv.inverse, (M[:2, :4, :4].detach().clone().requires_grad_(),))
    torch.library.opcheck(inv.inverse, (M.detach().mT.requires_grad_(),))    # fake impl = the op (strides too)
    w = torch.randn(5, 7, 7, dtype=torch.float64)
    g = torch.autograd.grad((Y * w).sum(), M)[0]
    g_ref = torch.autograd.grad((torch.linalg.inv(M) * w).sum(), M)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-13)


def test_the_op_vmapped_and_compiled_is_each_members_inverse():
    """A pack's call: members vmapped (the rule folds them into the batch of matrices), and compiled."""
    M = torch.stack([s4_matrices(6, 4, seed=s, strength=0.5) for s in range(3)]).requires_grad_()
    w = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    ref = torch.linalg.inv(M)
    g_ref = torch.autograd.grad((ref * w).sum(), M)[0]
    for fn in (vmap(inv.inverse), torch.compile(vmap(inv.inverse), fullgraph=True, backend="aot_eager")):
        Y = fn(M)
        torch.testing.assert_close(Y, ref.detach(), rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(torch.autograd.grad((Y * w).sum(), M)[0], g_ref, rtol=1e-12, atol=1e-13)


def test_s4_discretisation_is_the_bilinear_formula():
    """Ā = (I − ΔA/2)⁻¹(I + ΔA/2) and B̄ = (I − ΔA/2)⁻¹ΔB, solved directly (torch.linalg.solve), float64."""
    torch.manual_seed(3)
    m = S4(ModelConfig(d_model=4, d_state=9), 0).double()
    with torch.no_grad():
        m.A_skew.normal_(0, 0.3)
    f = m.features(None)
    A, I = m.state_matrix(), torch.eye(9, dtype=torch.float64)
    dt = torch.exp(m.log_dt)[:, None, None]
    torch.testing.assert_close(f["Abar"], torch.linalg.solve(I - dt / 2 * A, I + dt / 2 * A), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(f["Bbar"], torch.linalg.solve(I - dt / 2 * A, dt[..., 0] * m.B), rtol=1e-12,
                               atol=1e-13)


def test_importing_does_not_import_triton():
    assert_importing_does_not_import_triton("eigsweep.mixers.s4")
    assert not inv.fused_available(torch.eye(3))                       # CPU: torch.linalg


def check_kernel(device: str) -> None:
    """The kernel (float32) against the float64 inverse: S4's matrices at n 128 (the paper's state) and at 5, 33
    (padded blocks), from HiPPO to strongly trained parameters and Δ up to 1; relative error ≤ 1e-4 of the
    largest entry (float32 elimination; these matrices' condition numbers reach ~10²)."""
    for n, channels, strength in [(128, 4, 0.0), (128, 4, 3.0), (5, 3, 1.0), (33, 2, 10.0)]:
        M = s4_matrices(n, channels, seed=n, strength=strength, device=device)
        got = inv.fused_inverse(M.float())
        assert got.dtype == torch.float32 and torch.isfinite(got).all()
        err = relative_error(got, torch.linalg.inv(M))
        assert err <= 1e-4, f"n {n}, strength {strength}: error {err:.1e}"


def test_the_kernel_in_the_triton_interpreter():
    run_in_triton_interpreter("test_inverse_triton", "check_kernel('cpu')")


@pytest.mark.gpu
@gpu
def test_the_kernel_on_cuda():
    check_kernel("cuda")


@pytest.mark.gpu
@gpu
def test_s4_on_cuda_with_the_kernel_equals_torch_linalg(monkeypatch):
    """An S4 layer (d 128, state 128, L 512) on CUDA in float32: output and parameter gradients with the kernel vs
    with torch.linalg's inverse."""
    torch.manual_seed(0)
    m = S4(ModelConfig(d_model=128, d_state=128), 0).cuda()
    with torch.no_grad():
        m.A_skew.normal_(0, 0.5)
    u = torch.randn(2, 512, 128, device="cuda")
    outs = []
    for kernel in (True, False):
        monkeypatch.setattr(inv, "fused_available", lambda M, k=kernel: k)
        y = m(u)
        outs.append([y] + list(torch.autograd.grad((y * y).sum(), list(m.parameters()))))
    for name, a, b in zip(["y"] + [n for n, _ in m.named_parameters()], *outs):
        assert relative_error(a, b) <= 1e-3, name
