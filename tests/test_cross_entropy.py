"""The head's per-row cross-entropy op (cross_entropy.ce_rows) against F.cross_entropy.

CPU (normal suite): the op's torch body, its autograd formula (logits and bias), its vmap rule (a pack's
stacked call, each member's own bias) and its torch.compile form, in float64; train.head_loss routed through
the op (as on CUDA) equals loss_fn of the head's logits, value and gradients; importing it does not import
Triton. Where Triton is installed its kernels run through the interpreter (TRITON_INTERPRET=1) on CPU and
match. GPU (``-m gpu``): the kernels on CUDA in bf16 and float32, and head_loss on CUDA (the fused op, compiled)
against loss_fn of the head's logits.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from eigsweep import cross_entropy as ce
from eigsweep import train as train_mod
from conftest import assert_importing_does_not_import_triton, run_in_triton_interpreter

gpu = pytest.mark.skipif(not torch.cuda.is_available() or ce._triton() is None, reason="needs CUDA and Triton")


def case(n=40, v=37, dtype=torch.float64, device="cpu", seed=0, scale=3.0, members=()):
    """z (*members, n, v) and bias (*members, v) as leaves, targets with every fifth row and the first row
    of each member ignored (−100)."""
    gen = torch.Generator().manual_seed(seed)
    z = (scale * torch.randn(*members, n, v, generator=gen, dtype=torch.float64)).to(device, dtype).requires_grad_()
    bias = torch.randn(*members, v, generator=gen, dtype=torch.float64).to(device, torch.float32 if dtype !=
                                                                             torch.float64 else dtype)
    y = torch.randint(0, v, (*members, n), generator=gen)
    y[..., ::5] = -100
    return z, bias.requires_grad_(), y.to(device)


def reference(z, bias, y, weights):
    """(per-row nll, d Σ weights·nll / d z, / d bias), all by F.cross_entropy on float64 logits z + bias."""
    zd, bd = z.detach().double().requires_grad_(), bias.detach().double().requires_grad_()
    logits = zd + bd.unsqueeze(-2)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100,
                          reduction="none").view(y.shape)
    gz, gb = torch.autograd.grad((nll * weights.double()).sum(), (zd, bd))
    return nll.detach(), gz, gb


def check_rows(rows, backward, z, bias, y, tol):
    """rows(z, bias, y) → (nll, lse) and backward(grad, z, bias, y, lse) → (dz, dbias) against the float64
    reference; ignored rows: nll 0, gradient 0."""
    weights = torch.linspace(0.5, 2.0, y.numel(), device=z.device).view(y.shape)
    ref_nll, ref_gz, ref_gb = reference(z, bias, y, weights)
    nll, lse = rows(z.detach(), bias.detach(), y)
    assert nll.shape == y.shape and (nll.dtype == torch.float32 or nll.dtype == z.dtype == torch.float64)
    torch.testing.assert_close(nll.double(), ref_nll, rtol=tol, atol=tol)
    ref_lse = torch.logsumexp(z.detach().double() + bias.detach().double().unsqueeze(-2), -1)
    torch.testing.assert_close(lse.double(), ref_lse, rtol=tol, atol=tol)
    assert (nll[y == -100] == 0).all()
    gz, gb = backward(weights.to(nll.dtype), z.detach(), bias.detach(), y, lse)
    assert gz.dtype == z.dtype and gz.shape == z.shape and gb.dtype == bias.dtype and gb.shape == bias.shape
    assert (gz[y == -100] == 0).all()
    torch.testing.assert_close(gz.double(), ref_gz, rtol=0, atol=tol * ref_gz.abs().max().item())
    torch.testing.assert_close(gb.double(), ref_gb, rtol=0, atol=tol * ref_gb.abs().max().item())


@pytest.fixture
def opaque_body(monkeypatch):
    """The op's torch body made opaque to autograd, as the kernels are: gradients then flow only through the
    op's registered formula (a vmap rule that called the body, not the op, would lose them)."""
    for name in ("reference_rows", "reference_rows_backward"):
        fn = getattr(ce, name)
        monkeypatch.setattr(ce, name, lambda *ts, fn=fn: fn(*(t.detach() for t in ts)))


def test_the_op_is_the_cross_entropy_per_row_with_its_gradient():
    z, bias, y = case()
    check_rows(ce.ce_rows, ce.ce_rows_backward, z, bias, y, 1e-13)
    nll, _ = ce.ce_rows(z, bias, y)                                   # through autograd
    weights = torch.linspace(0.5, 2.0, len(y), dtype=torch.float64)
    gz, gb = torch.autograd.grad((nll * weights).sum(), (z, bias))
    _, ref_gz, ref_gb = reference(z, bias, y, weights)
    torch.testing.assert_close(gz, ref_gz, rtol=1e-13, atol=1e-16)
    torch.testing.assert_close(gb, ref_gb, rtol=1e-13, atol=1e-15)


def test_the_op_vmapped_and_compiled_is_each_members_cross_entropy(opaque_body):
    """A pack's call: vmap over members (one stacked call, each member's own bias), the mean over labelled rows,
    compiled."""
    z, bias, y = case(n=12, v=29, members=(3,))

    def member(zm, bm, ym):
        nll, _ = ce.ce_rows(zm, bm, ym)
        return nll.sum() / (ym != -100).sum()

    def ref(zz, bb):
        return torch.stack([F.cross_entropy(zz[i] + bb[i], y[i], ignore_index=-100) for i in range(3)])

    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    g_ref = torch.autograd.grad((ref(z, bias) * weights).sum(), (z, bias))
    for fn in (vmap(member), torch.compile(vmap(member), fullgraph=True, backend="aot_eager")):
        out = fn(z, bias, y)
        torch.testing.assert_close(out, ref(z, bias).detach(), rtol=1e-14, atol=0)
        for g, r in zip(torch.autograd.grad((out * weights).sum(), (z, bias)), g_ref):
            torch.testing.assert_close(g, r, rtol=1e-13, atol=1e-15)


def test_head_loss_through_the_op_equals_the_head_then_loss_fn(monkeypatch, opaque_body):
    """train.head_loss where the op runs (CUDA: forced here on CPU) against loss_fn of the head's logits, under
    vmap (a pack: stacked heads), value and gradients (h, weight, bias); nothing labelled: NaN, as
    F.cross_entropy."""
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(3, 10, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 13, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 13, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 13, (3, 10), generator=gen)
    y[:, ::4] = -100
    plain = vmap(lambda hh, ww, bb, yy: train_mod.loss_fn(F.linear(hh, ww, bb), yy))(h, w, b, y)
    g_plain = torch.autograd.grad(plain.sum(), (h, w, b))
    assert torch.equal(vmap(train_mod.head_loss)(h, w, b, y), plain)   # off CUDA: loss_fn of the head, as it was
    calls = []
    monkeypatch.setattr(ce, "runs_fused", lambda t: calls.append(t.shape) or True)
    via_op = vmap(train_mod.head_loss)(h, w, b, y)
    g_op = torch.autograd.grad(via_op.sum(), (h, w, b))
    assert calls, "head_loss did not take the op"
    torch.testing.assert_close(via_op, plain, rtol=1e-14, atol=0)
    for g, r in zip(g_op, g_plain):
        torch.testing.assert_close(g, r, rtol=1e-13, atol=1e-15)
    assert torch.isnan(train_mod.head_loss(h[0].detach(), w[0], b[0], torch.full((10,), -100)))
    monkeypatch.setattr(train_mod, "FUSED_LOSS_ON_CUDA", False)
    calls.clear()
    train_mod.head_loss(h[0], w[0], b[0], y[0])
    assert not calls


def test_importing_does_not_import_triton():
    assert_importing_does_not_import_triton("eigsweep.cross_entropy", "eigsweep.train")
    assert not ce.runs_fused(torch.zeros(2, 3))                       # CPU: never the kernels


def interpreter_check():
    """The kernels on CPU (TRITON_INTERPRET=1): V over one forward block (the online log-sum-exp's loop) and
    under one backward block, rows not a multiple of either kernel's rows a program, members stacked; float32
    and bf16."""
    saved = ce.FWD_BLOCK, ce.FWD_ROWS, ce.BWD_ROWS
    ce.FWD_BLOCK, ce.FWD_ROWS, ce.BWD_ROWS = 256, 8, 16
    try:
        for v, members in ((300, ()), (700, (3,))):
            z, bias, y = case(n=21, v=v, dtype=torch.float32, members=members)
            check_rows(ce.fused_rows, ce.fused_rows_backward, z, bias, y, 2e-6)
        z, bias, y = case(n=21, v=300, dtype=torch.bfloat16, members=(2,))
        check_rows(ce.fused_rows, ce.fused_rows_backward, z, bias, y, 1e-2)
    finally:
        ce.FWD_BLOCK, ce.FWD_ROWS, ce.BWD_ROWS = saved


def test_the_kernels_in_the_triton_interpreter():
    run_in_triton_interpreter("test_cross_entropy", "interpreter_check()")


@pytest.mark.gpu
@gpu
def test_the_kernels_on_cuda():
    for v, members in ((8192, (4,)), (ce.FWD_BLOCK + 37, ()), (300, (3,))):
        z, bias, y = case(n=1000, v=v, dtype=torch.float32, device="cuda", members=members)
        check_rows(ce.ce_rows if not members else ce.rows, ce.ce_rows_backward if not members else ce.rows_backward,
                   z, bias, y, 2e-6)
        z, bias, y = case(n=1000, v=v, dtype=torch.bfloat16, device="cuda", members=members)
        check_rows(ce.rows, ce.rows_backward, z, bias, y, 1e-2)


@pytest.mark.gpu
@gpu
def test_head_loss_on_cuda_is_the_cross_entropy():
    """head_loss on CUDA under bf16 autocast (the fused op, vmapped as in a pack, compiled) against loss_fn of
    F.linear on the same inputs: value to 1e-3 relative (bf16 logits), gradients to 2% of their largest."""
    gen = torch.Generator().manual_seed(2)
    h, w, b = (torch.randn(*s, generator=gen).cuda().requires_grad_() for s in ((4, 256, 128), (4, 8192, 128),
                                                                            (4, 8192)))
    y = torch.randint(0, 8192, (4, 256), generator=gen).cuda()
    y[:, ::3] = -100
    monkey = train_mod.FUSED_LOSS_ON_CUDA
    with torch.autocast("cuda", dtype=torch.bfloat16):
        train_mod.FUSED_LOSS_ON_CUDA = False
        ref = vmap(train_mod.head_loss)(h, w, b, y)
        train_mod.FUSED_LOSS_ON_CUDA = monkey
        g_ref = torch.autograd.grad(ref.sum(), (h, w, b))
        assert ce.runs_fused(h)
        for fn in (vmap(train_mod.head_loss), torch.compile(vmap(train_mod.head_loss), fullgraph=True)):
            out = fn(h, w, b, y)
            torch.testing.assert_close(out, ref.detach(), rtol=1e-3, atol=0)
            for g, r in zip(torch.autograd.grad(out.sum(), (h, w, b)), g_ref):
                torch.testing.assert_close(g.float(), r.float(), rtol=0, atol=2e-2 * r.abs().max().item())
