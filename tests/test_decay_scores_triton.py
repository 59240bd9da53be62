"""The intra-chunk decay scores op (Triton kernels) against a float64 torch reference, and GLA with and without it.

CPU (normal suite): the op with its torch body (values, its autograd formula, vmap rules, torch.compile, opcheck)
equals the reference differentiated by autograd; scan.chunked_decay_attention keeps the torch form and importing
GLA does not import Triton. Where Triton is installed, the kernels run through its interpreter
(TRITON_INTERPRET=1) and match. GPU (``-m gpu``): the same check on CUDA; scan.chunked_decay_attention and the
GLA mixer on CUDA (the op), eager and compiled, equal the same forced onto the torch form.
"""

import pytest
import torch
from torch.func import vmap

from eigsweep.config import ModelConfig
from eigsweep.mixers import decay_scores_triton as dst
from eigsweep.mixers import scan
from eigsweep.mixers.gla import GatedLinearAttention
from conftest import assert_importing_does_not_import_triton, run_in_triton_interpreter

gpu = pytest.mark.skipif(not torch.cuda.is_available() or dst._triton() is None, reason="needs CUDA and Triton")


def assert_close_to_max(got, ref, what, tol=1e-5, floor=1e-6):
    """Finite, and max |got − ref| ≤ tol · max(|ref|, floor)."""
    assert torch.isfinite(got).all(), f"{what}: not finite"
    err = ((got.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(floor)).item()
    assert err <= tol, f"{what}: max error {err:.2e} of the largest value"


def reference_scores(q, k, g):
    """S_ij = Σ_n q_in k_jn exp(g_in − g_jn) for j ≤ i, else 0, by broadcasting (…, T, T, N)."""
    T = q.shape[-2]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()[..., None]
    decay = torch.exp((g[..., :, None, :] - g[..., None, :, :]).masked_fill(~causal, float("-inf")))
    return (q[..., :, None, :] * k[..., None, :, :] * decay).sum(-1)


def inputs(shape, strength, gen, device):
    """q, k (float64, leaves) and g = in-chunk cumsum of log a ∈ [−strength, 0) per token (a float64 leaf)."""
    q, k = (torch.randn(*shape, generator=gen, dtype=torch.float64) for _ in range(2))
    g = (-strength * torch.rand(*shape, generator=gen, dtype=torch.float64)).cumsum(-2)
    return [t.to(device).requires_grad_() for t in (q, k, g)]


def check_decay_scores(device: str, force_kernels: bool = False) -> None:
    """Forward and the gradients for q, k, g of the op with its kernels equal the float64 reference: chunk sizes
    16, 11 (not a power of two) and 1, N across channel blocks and not a multiple of one (70 > 2·32), decays
    from mild to −20 per token (exp(g_i − g_j) down to underflow: no overflow, no NaN); the gradient ignores dS
    above the diagonal. Vmapped over a pack's 3 members (g shared by all, or each its own), each its own.
    ``force_kernels``: the op takes its kernels on CPU too (under TRITON_INTERPRET=1)."""
    if force_kernels:
        dst.fused_available = lambda t: True
    assert dst.fused_available(torch.zeros(1, device=device)), "the op would not run its kernels"
    gen = torch.Generator().manual_seed(0)
    for shape, strength in [((2, 3, 16, 70), 0.1), ((2, 3, 16, 70), 20.0), ((3, 11, 40), 2.0), ((4, 1, 5), 20.0)]:
        q, k, g = inputs(shape, strength, gen, device)
        w = torch.randn(*shape[:-1], shape[-2], generator=gen, dtype=torch.float64).to(device)
        S = dst.decay_scores(q.float(), k.float(), g.float())
        grads = torch.autograd.grad((S.double() * w).sum(), (q, k, g))
        S_ref = reference_scores(q, k, g)
        grads_ref = torch.autograd.grad((S_ref * w).sum(), (q, k, g))
        what = f"{shape} log a ≥ −{strength}"
        assert S.dtype == torch.float32 and S.shape == S_ref.shape
        assert_close_to_max(S, S_ref, f"S {what}")
        # dg = q dq − k dk: its float32 rounding scales with |q dq| (the diagonal cancels; for T = 1, dg = 0)
        floors = [1e-6, 1e-6, (q * grads_ref[0]).abs().max()]
        for name, gr, gr_ref, floor in zip("qkg", grads, grads_ref, floors):
            assert_close_to_max(gr, gr_ref, f"d{name} {what}", floor=floor)
    M = 3
    q, k, g = inputs((M, 2, 16, 40), 2.0, gen, device)
    w = torch.randn(M, 2, 16, 16, generator=gen, dtype=torch.float64).to(device)
    for g_m, in_dims in [(g, 0), (g[0], (0, 0, None))]:
        S = torch.func.vmap(dst.decay_scores, in_dims=in_dims)(q.float(), k.float(), g_m.float())
        grads = torch.autograd.grad((S.double() * w).sum(), (q, k, g))
        S_each = torch.stack([dst.decay_scores(q[m].float(), k[m].float(), g_m.expand_as(q)[m].float())
                              for m in range(M)])
        grads_each = torch.autograd.grad((S_each.double() * w).sum(), (q, k, g))
        assert_close_to_max(S, S_each, f"vmapped S, in_dims {in_dims}", tol=1e-6)
        for name, gr, gr_each in zip("qkg", grads, grads_each):
            assert_close_to_max(gr, gr_each, f"vmapped d{name}, in_dims {in_dims}", tol=1e-6)


def test_cpu_keeps_the_torch_form_and_does_not_import_triton():
    assert not dst.fused_available(torch.zeros(2)) and not scan.decay_scores_available(torch.zeros(2))
    assert_importing_does_not_import_triton("eigsweep.mixers.scan", "eigsweep.mixers.gla")


def test_the_op_is_the_reference_with_its_gradient_vmapped_and_compiled():
    """The op with its torch body (float64, CPU): values and gradients through its registered formula equal the
    reference differentiated by autograd; vmapped over 3 members (g shared or each its own) and compiled."""
    gen = torch.Generator().manual_seed(2)
    q, k, g = inputs((3, 2, 11, 20), 3.0, gen, "cpu")
    w = torch.randn(3, 2, 11, 11, generator=gen, dtype=torch.float64)
    torch.library.opcheck(dst.decay_scores, (q, k, g))
    torch.library.opcheck(dst.decay_scores_backward, (q.detach(), k.detach(), g.detach(), w))
    cases = [("the op", lambda a, b, c: dst.decay_scores(a, b, c), g)]
    for in_dims, g_m in [(0, g), ((0, 0, None), g[0])]:
        vmapped = vmap(dst.decay_scores, in_dims=in_dims)
        cases += [(f"vmapped, in_dims {in_dims}", vmapped, g_m),
                  (f"vmapped and compiled, in_dims {in_dims}",
                   torch.compile(vmapped, fullgraph=True, backend="aot_eager"), g_m)]
    for what, fn, g_m in cases:
        S_ref = torch.stack([dst.reference_scores(q[m], k[m], g_m.expand_as(q)[m]) for m in range(3)])
        grads_ref = torch.autograd.grad((S_ref * w).sum(), (q, k, g))
        S = fn(q, k, g_m)
        torch.testing.assert_close(S, S_ref.detach(), rtol=1e-13, atol=1e-14, msg=what)
        for name, gr, gr_ref in zip("qkg", torch.autograd.grad((S * w).sum(), (q, k, g)), grads_ref):
            torch.testing.assert_close(gr, gr_ref, rtol=1e-12, atol=1e-13, msg=f"d{name}, {what}")


def test_decay_scores_under_the_triton_interpreter():
    run_in_triton_interpreter("test_decay_scores_triton", "check_decay_scores('cpu', force_kernels=True)")


@pytest.mark.gpu
@gpu
def test_decay_scores_on_cuda():
    check_decay_scores("cuda")


def grads_fused_and_torch(f, params, monkeypatch):
    """f() and the gradients of f().square().sum() for params, with the fused scores and with the torch form."""
    out = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(scan, "decay_scores_available", lambda t: False)
        y = f()
        out.append((y, torch.autograd.grad(y.square().sum(), params)))
    return out


@pytest.mark.gpu
@gpu
def test_chunked_decay_attention_on_cuda_uses_the_fused_scores_and_matches(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 70, n, generator=gen).cuda().requires_grad_() for n in (40, 40, 24))
    log_a = (-3 * torch.rand(2, 3, 70, 40, generator=gen)).cuda().requires_grad_()
    assert scan.decay_scores_available(q)
    f = lambda: scan.chunked_decay_attention(q, k, v, log_a, 16)
    (y, grads), (y_ref, grads_ref) = grads_fused_and_torch(f, (q, k, v, log_a), monkeypatch)
    assert_close_to_max(y, y_ref, "y", tol=1e-4)
    for name, gr, gr_ref in zip(["q", "k", "v", "log a"], grads, grads_ref):
        assert_close_to_max(gr, gr_ref, f"d{name}", tol=1e-4)


@pytest.mark.gpu
@gpu
def test_gla_on_cuda_uses_the_fused_scores_and_matches(monkeypatch):
    torch.manual_seed(0)
    m = GatedLinearAttention(ModelConfig(d_model=96, n_layers=1, n_heads=2)).cuda()      # d_k = 48
    u = torch.randn(3, 70, 96, device="cuda")
    (y, grads), (y_ref, grads_ref) = grads_fused_and_torch(lambda: m(u), list(m.parameters()), monkeypatch)
    assert_close_to_max(y, y_ref, "mixer output", tol=1e-4)
    for (name, _), gr, gr_ref in zip(m.named_parameters(), grads, grads_ref):
        assert_close_to_max(gr, gr_ref, f"d{name}", tol=1e-4)


@pytest.mark.gpu
@gpu
def test_gla_compiled_on_cuda_runs_the_kernels_and_matches(monkeypatch):
    """Under torch.compile the op stays one call and runs its kernels: compiled GLA equals eager GLA on the torch
    form (the compiled graph fell back to that form before the op)."""
    torch.manual_seed(0)
    m = GatedLinearAttention(ModelConfig(d_model=96, n_layers=1, n_heads=2)).cuda()
    u = torch.randn(3, 70, 96, device="cuda")
    params = list(m.parameters())
    calls, kernels = [], dst.fused_scores
    monkeypatch.setattr(dst, "fused_scores", lambda *a: calls.append(1) or kernels(*a))
    y = torch.compile(m)(u)
    grads = torch.autograd.grad(y.square().sum(), params)
    assert calls, "the compiled graph did not run the kernels"
    monkeypatch.setattr(scan, "decay_scores_available", lambda t: False)
    y_ref = m(u)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), params)
    assert_close_to_max(y, y_ref, "mixer output", tol=1e-4)
    for (name, _), gr, gr_ref in zip(m.named_parameters(), grads, grads_ref):
        assert_close_to_max(gr, gr_ref, f"d{name}", tol=1e-4)
