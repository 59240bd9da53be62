"""Mamba-2's SSD op (scan.ssd_op, Triton kernels in ssd_triton) against the torch form differentiated by autograd.

CPU (normal suite): the op with its torch bodies (float64: values, its autograd formula = the kernels' adjoint
formulas in torch, vmap rules, torch.compile, opcheck) equals scan.ssd_chunked's torch form; the CPU keeps that
form and importing Mamba-2 does not import Triton. Where Triton is installed, the kernels run through its
interpreter (TRITON_INTERPRET=1) and match. GPU (``-m gpu``): the kernels on CUDA (exact float32 products
and the default TF32), and the Mamba-2 mixer eager and compiled with the op (scan.FUSED_SSD_ON_CUDA,
off by default: slower than the compiled torch form on an H200) against the same on the torch form.
"""

import pytest
import torch
from torch.func import vmap

from eigsweep.config import ModelConfig
from eigsweep.mixers import fla_ops, scan, ssd_triton
from eigsweep.mixers.mamba2 import Mamba2
from conftest import assert_importing_does_not_import_triton, relative_error, run_in_triton_interpreter

gpu = pytest.mark.skipif(not torch.cuda.is_available() or ssd_triton._triton() is None,
                         reason="needs CUDA and Triton")


def inputs(shape, strength, gen, device="cpu"):
    """X (b, L, H, P), log λ ∈ [−strength, 0) per token and head, B, C (b, L, N): float64 leaves."""
    b, L, H, P, N = shape
    X = torch.randn(b, L, H, P, generator=gen, dtype=torch.float64)
    a = -strength * torch.rand(b, L, H, generator=gen, dtype=torch.float64)
    B, C = (torch.randn(b, L, N, generator=gen, dtype=torch.float64) for _ in range(2))
    return [t.to(device).requires_grad_() for t in (X, a, B, C)]


def torch_form(X, a, B, C):
    return scan._ssd_torch(X, a, B, C, 32)[0]


def check_ssd(device: str, force_kernels: bool = False, tol: float = 1e-5) -> None:
    """y and the gradients for X, log λ, B, C by the kernels (float32) equal the float64 torch form: L a multiple
    of the chunk and not (padded), P and N below a power of two (masked; N 40 spans two of bwd_dbc's blocks),
    decays mild and strong (−20 a token: exp underflows to 0, no NaN; within 5 tol); d log λ within 5 tol more;
    a pack of 3 members vmapped equals each member by itself. ``force_kernels``: the op takes its kernels on CPU
    too (under TRITON_INTERPRET=1)."""
    if force_kernels:
        ssd_triton.fused_available = lambda t: True
    assert ssd_triton.fused_available(torch.zeros(1, device=device)), "the op would not run its kernels"
    gen = torch.Generator().manual_seed(0)
    for shape, strength in [((2, 128, 2, 32, 16), 0.5), ((1, 100, 3, 20, 40), 2.0), ((2, 70, 2, 16, 16), 20.0)]:
        X, a, B, C = inputs(shape, strength, gen, device)
        y_ref = torch_form(X, a, B, C)
        w = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64).to(device)
        grads_ref = torch.autograd.grad((y_ref * w).sum(), (X, a, B, C))
        y, S = scan.ssd_op(*(t.float() for t in (X, a, B, C)))
        grads = torch.autograd.grad((y.double() * w).sum(), (X, a, B, C))
        what = f"{shape} log λ ≥ −{strength}"
        # strong decays: the in-chunk cumsum s reaches −1,000 in float32, whose rounding enters exp(s_i − s_j)
        tol_c = tol * (5 if strength > 5 else 1)
        assert y.dtype == torch.float32 and torch.isfinite(y).all()
        assert relative_error(y, y_ref) <= tol_c, f"y {what}: {relative_error(y, y_ref):.2e}"
        # d log λ sums row and column sums of R that cancel: float32 rounding of the largest terms, 5× more room
        tols = [tol_c, 5 * tol_c, tol_c, tol_c]
        for name, gr, gr_ref, t in zip(["X", "log λ", "B", "C"], grads, grads_ref, tols):
            assert torch.isfinite(gr).all() and relative_error(gr, gr_ref) <= t, \
                f"d{name} {what}: {relative_error(gr, gr_ref):.2e}"
    X, a, B, C = inputs((2, 80, 2, 16, 16), 1.0, gen, device)                    # one member's inputs
    Xm, am, Bm, Cm = (torch.stack([t.detach() * (1 + 0.1 * m) for m in range(3)]).float().requires_grad_()
                      for t in (X, a, B, C))
    w = torch.randn(3, *X.shape, generator=gen).to(device)
    y = vmap(lambda *t: scan.ssd_op(*t)[0])(Xm, am, Bm, Cm)
    grads = torch.autograd.grad((y * w).sum(), (Xm, am, Bm, Cm))
    y_each = torch.stack([scan.ssd_op(Xm[m], am[m], Bm[m], Cm[m])[0] for m in range(3)])
    grads_each = torch.autograd.grad((y_each * w).sum(), (Xm, am, Bm, Cm))
    assert relative_error(y, y_each) <= 1e-6, "vmapped y"
    for name, gr, gr_each in zip(["X", "log λ", "B", "C"], grads, grads_each):
        assert relative_error(gr, gr_each) <= 1e-6, f"vmapped d{name}"


def test_cpu_keeps_the_torch_form_and_does_not_import_triton():
    assert not ssd_triton.fused_available(torch.zeros(2)) and not scan.ssd_available(torch.zeros(2))
    assert not scan.FUSED_SSD_ON_CUDA, "on by default only once faster than the compiled torch form on a GPU"
    assert_importing_does_not_import_triton("eigsweep.mixers.scan", "eigsweep.mixers.mamba2")


def test_the_op_is_the_torch_form_with_its_gradient_vmapped_and_compiled():
    """The op with its torch bodies (float64, CPU): values and gradients through its registered formula (the
    kernels' adjoint, written in torch) equal the torch form differentiated by autograd, for L a multiple of the
    kernels' chunk and not, strong decays; vmapped over 3 members (B shared by all, or each its own) and
    compiled."""
    gen = torch.Generator().manual_seed(2)
    for shape, strength in [((2, 2 * ssd_triton.CHUNK, 2, 8, 6), 1.0), ((1, 90, 3, 5, 7), 20.0)]:
        X, a, B, C = inputs(shape, strength, gen)
        y, S = scan.ssd_op(X, a, B, C)
        assert S.shape == (shape[0], ssd_triton.n_chunks(shape[1]), shape[2], shape[4], shape[3])
        y_ref = torch_form(X, a, B, C)
        w = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-13)
        for gr, gr_ref in zip(torch.autograd.grad((y * w).sum(), (X, a, B, C)),
                              torch.autograd.grad((y_ref * w).sum(), (X, a, B, C))):
            torch.testing.assert_close(gr, gr_ref, rtol=1e-11, atol=1e-12)
    X, a, B, C = inputs((6, 40, 2, 4, 3), 2.0, gen)
    torch.library.opcheck(scan.ssd_op, (X, a, B, C))
    S = scan.ssd_op(X, a, B, C)[1]
    torch.library.opcheck(scan.ssd_backward, (X.detach(), a.detach(), B.detach(), C.detach(), S, X.detach()))
    Xm, am, Bm, Cm = (t.unflatten(0, (3, 2)) for t in (X, a, B, C))              # 3 members of 2 sequences
    torch._dynamo.reset()         # vmap's wrapper is one code object: earlier tests' graphs count to its limit
    w = torch.randn(3, 2, 40, 2, 4, generator=gen, dtype=torch.float64)
    for in_dims, B_m in [(0, Bm), ((0, 0, None, 0), Bm[0])]:
        f = vmap(lambda *t: scan.ssd_op(*t)[0], in_dims=in_dims)
        for what, fn in [("vmapped", f), ("vmapped and compiled", torch.compile(f, fullgraph=True,
                                                                                 backend="aot_eager"))]:
            y = fn(Xm, am, B_m, Cm)
            y_ref = torch.stack([torch_form(Xm[m], am[m], B_m.expand_as(Bm)[m], Cm[m]) for m in range(3)])
            torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-13, msg=f"{what}, in_dims {in_dims}")
            for gr, gr_ref in zip(torch.autograd.grad((y * w).sum(), (X, a, B, C)),
                                  torch.autograd.grad((y_ref * w).sum(), (X, a, B, C))):
                torch.testing.assert_close(gr, gr_ref, rtol=1e-11, atol=1e-12, msg=f"{what}, in_dims {in_dims}")


def test_ssd_under_the_triton_interpreter():
    run_in_triton_interpreter("test_ssd_triton", "check_ssd('cpu', force_kernels=True)")


@pytest.mark.gpu
@gpu
def test_ssd_on_cuda_exact_products(monkeypatch):
    monkeypatch.setattr(ssd_triton, "DOT_PRECISION", "ieee")
    check_ssd("cuda")


@pytest.mark.gpu
@gpu
def test_ssd_on_cuda_tf32_products():
    """The default (TF32 products, as torch's matmuls in training): within TF32's rounding of the float64 form."""
    check_ssd("cuda", tol=5e-3)


# Compiled on CUDA, dt_bias's gradient (and in_proj's dt rows) came out wrong (relative error 0.39–92) while the
# output, A_log's, D's and the conv's gradients matched, with the backward by the kernels and by the torch formulas
# alike; the op alone compiled (inputs scaled, B and C sliced) was exact, and on CPU under Inductor with the kernels
# in Triton's interpreter Mamba-2 matched (thirteenth session, benchmarks/logs/...-session13/11-debug.log).
# Not understood: the op stays off (scan.FUSED_SSD_ON_CUDA) and that case is an expected failure until it is.
# Compiled without the op, at the same size, Mamba-2 is right ([False-True] passed, fourteenth session), and with
# the op only this size shows it (d 64, head 16, state 32, L 150; not L 128 or 64, nor the paper's d 128, head
# 64, state 128: benchmarks/mamba2_grads.py --op).
@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("op, compiled", [(True, False), (False, True), pytest.param(True, True, marks=(
    pytest.mark.xfail(strict=True, reason="compiled Mamba-2 with the SSD op on CUDA: wrong dt gradient")))])
def test_mamba2_on_cuda_equals_eager_torch_form(monkeypatch, op, compiled):
    """The Mamba-2 mixer on CUDA with the op (its kernels, exact float32 products) and/or compiled equals the same
    mixer eager on the torch form: output and every parameter's gradient."""
    monkeypatch.setattr(ssd_triton, "DOT_PRECISION", "ieee")
    monkeypatch.setattr(fla_ops, "SSD_ON_CUDA", False)     # fla's SSD comes first where installed
    monkeypatch.setattr(scan, "FUSED_SSD_ON_CUDA", op)
    torch.manual_seed(0)
    m = Mamba2(ModelConfig(d_model=64, n_layers=1, d_state=32, head_dim=16)).cuda()
    u = torch.randn(3, 150, 64, device="cuda")
    params = list(m.parameters())
    calls, kernels = [], ssd_triton.fused_forward
    monkeypatch.setattr(ssd_triton, "fused_forward", lambda *t: calls.append(1) or kernels(*t))
    y = (torch.compile(m) if compiled else m)(u)
    grads = torch.autograd.grad(y.square().sum(), params)
    assert bool(calls) == op, "the kernels ran" if calls else "the kernels did not run"
    monkeypatch.setattr(scan, "FUSED_SSD_ON_CUDA", False)
    y_ref = m(u)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), params)
    assert relative_error(y, y_ref) <= 1e-4
    for (name, _), gr, gr_ref in zip(m.named_parameters(), grads, grads_ref):
        assert relative_error(gr, gr_ref) <= 1e-4, f"d{name}: {relative_error(gr, gr_ref):.2e}"
