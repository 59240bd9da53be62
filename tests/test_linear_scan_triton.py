"""The fused (Triton) element-wise linear scan against the torch form of scan.linear_scan.

CPU (normal suite): the dispatch keeps the torch form and importing the scans does not import Triton; where
Triton is installed, the kernels run through its interpreter (TRITON_INTERPRET=1) and match. GPU (``-m gpu``):
the same check on CUDA, and RG-LRU on CUDA (fused) equals the same mixer forced onto the torch form.
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


def check_fused_linear_scan(device: str) -> None:
    """Forward and both gradients of the fused scan equal the torch form in float64: time lengths 1 and 37
    (not a power of two), channel counts across blocks (280 > 128), extra trailing dims; and vmapped over a
    pack's 3 members, each its own."""
    g = torch.Generator().manual_seed(0)
    for shape in [(2, 37, 5), (3, 9, 2, 140), (1, 1, 3)]:
        a = torch.rand(*shape, generator=g, dtype=torch.float64).to(device).requires_grad_()
        b = torch.randn(*shape, generator=g, dtype=torch.float64).to(device).requires_grad_()
        w = torch.randn(*shape, generator=g, dtype=torch.float64).to(device)
        h = lst.fused_linear_scan(a.float(), b.float())
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
    h = torch.func.vmap(lst.fused_linear_scan)(a.float(), b.float())
    grads = torch.autograd.grad((h.double() * w).sum(), (a, b))
    h_ref = torch.stack([scan._LinearScan.apply(a[m], b[m]) for m in range(M)])
    grads_ref = torch.autograd.grad((h_ref * w).sum(), (a, b))
    assert_close_to_max(h, h_ref, "vmapped h")
    for name, gr, gr_ref in zip("ab", grads, grads_ref):
        assert_close_to_max(gr, gr_ref, f"vmapped d{name}")


def test_cpu_keeps_the_torch_form_and_does_not_import_triton():
    a, b = torch.rand(2, 9, 3), torch.randn(2, 9, 3)
    assert not lst.fused_available(b)
    assert torch.equal(scan.linear_scan(a, b), scan._LinearScan.apply(a, b))
    assert_importing_does_not_import_triton("eigsweep.mixers.scan", "eigsweep.mixers.rglru")


def test_fused_linear_scan_under_the_triton_interpreter():
    run_in_triton_interpreter("test_linear_scan_triton", "check_fused_linear_scan('cpu')")


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
    assert lst.fused_available(u)
    y = m(u)
    grads = torch.autograd.grad(y.square().sum(), list(m.parameters()))
    monkeypatch.setattr(scan, "fused_available", lambda t: False)
    y_ref = m(u)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), list(m.parameters()))
    assert_close_to_max(y, y_ref, "mixer output", tol=1e-4)
    for (name, _), gr, gr_ref in zip(m.named_parameters(), grads, grads_ref):
        assert_close_to_max(gr, gr_ref, f"d{name}", tol=1e-4)
