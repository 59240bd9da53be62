"""The element-wise linear scan op (fused Triton kernels) against the torch form of scan.linear_scan.

CPU (normal suite): the op with its torch body (float64: values and gradients through its registered formula,
vmapped, compiled, opcheck) equals the torch form; the dispatch keeps the torch form and importing the scans does
not import Triton; where Triton is installed, the kernels run through its interpreter (TRITON_INTERPRET=1) and
match. GPU (``-m gpu``): the same check on CUDA, and RG-LRU on CUDA (the op), eager and compiled, equals the same
mixer forced onto the torch form.
"""

import pytest
import torch

from eigsweep.config import ModelConfig
from eigsweep.mixers import linear_scan_triton as lst
from eigsweep.mixers import scan
from eigsweep.mixers.rglru import RGLRU
from conftest import assert_importing_does_not_import_triton, run_in_triton_interpreter

gpu = pytest.mark.skipif(not torch.cuda.is_available() or lst._triton() is None, reason="needs CUDA and Triton")


def assert_close_to_max(got, ref, what, tol=1e-5):
    err = ((got.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-6)).item()
    assert err <= tol, f"{what}: max error {err:.2e} of the largest value"


def check_fused_linear_scan(device: str, force_kernels: bool = False) -> None:
    """Forward and both gradients of the op with its kernels equal the torch form in float64: time lengths 1
    and 37 (not a power of two), channel counts across blocks (280 > 128), extra trailing dims; and vmapped over
    a pack's 3 members, each its own. ``force_kernels``: on CPU too (under TRITON_INTERPRET=1)."""
    if force_kernels:
        lst.fused_available = lambda t: True
    assert lst.fused_available(torch.zeros(1, device=device)), "the op would not run its kernels"
    g = torch.Generator().manual_seed(0)
    for shape in [(2, 37, 5), (3, 9, 2, 140), (1, 1, 3)]:
        a = torch.rand(*shape, generator=g, dtype=torch.float64).to(device).requires_grad_()
        b = torch.randn(*shape, generator=g, dtype=torch.float64).to(device).requires_grad_()
        w = torch.randn(*shape, generator=g, dtype=torch.float64).to(device)
        h = scan.linear_scan_op(a.float(), b.float())
        grads = torch.autograd.grad((h.double() * w).sum(), (a, b))
        h_ref = scan._LinearScan.apply(a, b)
        grads_ref = torch.autograd.grad((h_ref * w).sum(), (a, b))
        assert h.dtype == torch.float32 and h.shape == a.shape
        assert_close_to_max(h, h_ref, f"h {shape}")
        for name, gr, gr_ref in zip("ab", grads, grads_ref):
            assert_close_to_max(gr, gr_ref, f"d{name} {shape}")
    M = 3
    a = torch.rand(M, 2, 21, 6, generator=g, dtype=torch.float64).to(device).requires_grad_()
    b = torch.randn(M, 2, 21, 6, generator=g, dtype=torch.float64).to(device).requires_grad_()
    w = torch.randn(M, 2, 21, 6, generator=g, dtype=torch.float64).to(device)
    h = torch.func.vmap(scan.linear_scan_op)(a.float(), b.float())
    grads = torch.autograd.grad((h.double() * w).sum(), (a, b))
    h_ref = torch.stack([scan._LinearScan.apply(a[m], b[m]) for m in range(M)])
    grads_ref = torch.autograd.grad((h_ref * w).sum(), (a, b))
    assert_close_to_max(h, h_ref, "vmapped h")
    for name, gr, gr_ref in zip("ab", grads, grads_ref):
        assert_close_to_max(gr, gr_ref, f"vmapped d{name}")


def test_cpu_keeps_the_torch_form_and_does_not_import_triton():
    a, b = torch.rand(2, 9, 3), torch.randn(2, 9, 3)
    assert not lst.fused_available(b) and not scan.linear_scan_available(b)
    assert torch.equal(scan.linear_scan(a, b), scan._LinearScan.apply(a, b))
    assert_importing_does_not_import_triton("eigsweep.mixers.scan", "eigsweep.mixers.rglru")


def test_the_op_is_the_torch_form_with_its_gradient_vmapped_and_compiled():
    """The op with its torch body (float64, CPU): values and gradients through its registered formula equal the
    torch form's (its own backward); vmapped over a pack's 3 members (a shared by all, or each its own) and
    compiled."""
    g = torch.Generator().manual_seed(3)
    a = torch.rand(3, 2, 19, 4, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(3, 2, 19, 4, generator=g, dtype=torch.float64).requires_grad_()
    w = torch.randn(3, 2, 19, 4, generator=g, dtype=torch.float64)
    torch.library.opcheck(scan.linear_scan_op, (a[0], b[0]))
    torch.library.opcheck(scan.linear_scan_backward, (a[0].detach(), b[0].detach(), w[0]))
    cases = [("the op", lambda x, y: torch.stack([scan.linear_scan_op(x[m], y[m]) for m in range(3)]), a)]
    for in_dims, a_m in [(0, a), ((None, 0), a[0])]:
        vmapped = torch.func.vmap(scan.linear_scan_op, in_dims=in_dims)
        cases += [(f"vmapped, in_dims {in_dims}", vmapped, a_m),
                  (f"vmapped and compiled, in_dims {in_dims}",
                   torch.compile(vmapped, fullgraph=True, backend="aot_eager"), a_m)]
    for what, fn, a_m in cases:
        ref = torch.stack([scan._LinearScan.apply(a_m.expand_as(b)[m], b[m]) for m in range(3)])
        grads_ref = torch.autograd.grad((ref * w).sum(), (a, b))
        h = fn(a_m, b)
        torch.testing.assert_close(h, ref.detach(), rtol=1e-13, atol=1e-14, msg=what)
        for name, gr, gr_ref in zip("ab", torch.autograd.grad((h * w).sum(), (a, b)), grads_ref):
            torch.testing.assert_close(gr, gr_ref, rtol=1e-12, atol=1e-13, msg=f"d{name}, {what}")


def test_fused_linear_scan_under_the_triton_interpreter():
    run_in_triton_interpreter("test_linear_scan_triton", "check_fused_linear_scan('cpu', force_kernels=True)")


@pytest.mark.gpu
@gpu
def test_fused_linear_scan_on_cuda():
    check_fused_linear_scan("cuda")


@pytest.mark.gpu
@gpu
def test_rglru_on_cuda_uses_the_fused_scan_and_matches(monkeypatch):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_state=8, expand=2)
    m = RGLRU(cfg).cuda()
    u = torch.randn(3, 70, cfg.d_model, device="cuda")
    assert lst.fused_available(u) and scan.linear_scan_available(u)
    calls, kernels = [], lst.fused_scan
    monkeypatch.setattr(lst, "fused_scan", lambda *t: calls.append(1) or kernels(*t))
    runs = []
    for mixer in (m, torch.compile(m)):            # eager, then compiled: the op stays one call with its kernels
        calls.clear()
        y = mixer(u)
        runs.append((y, torch.autograd.grad(y.square().sum(), list(m.parameters()))))
        assert calls, "the kernels did not run"
    monkeypatch.setattr(scan, "linear_scan_available", lambda t: False)
    y_ref = m(u)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), list(m.parameters()))
    for y, grads in runs:
        assert_close_to_max(y, y_ref, "mixer output", tol=1e-4)
        for (name, _), gr, gr_ref in zip(m.named_parameters(), grads, grads_ref):
            assert_close_to_max(gr, gr_ref, f"d{name}", tol=1e-4)
