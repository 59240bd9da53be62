"""The fla ops (mixers/fla_ops: flash-linear-attention's delta rule and SSD kernels) against the mixers' own forms.

CPU (normal suite): the ops with their torch bodies (float64: values, the autograd formula through the backward
op, vmap rules with shared and per-member inputs, torch.compile, opcheck) equal deltanet.delta_rule_torch and
scan's SSD torch form differentiated by autograd; the CPU keeps the own forms (the ops' kernels never run there).
GPU (``-m gpu``, fla installed): fla's kernels in bf16 against the own forms in float64 on the same CUDA inputs,
within bf16's rounding; vmapped and compiled; DeltaNet, gated DeltaNet and Mamba-2 through them equal the same
mixers on their own forms (output and every parameter's gradient), eager and compiled.
"""

import functools

import pytest
import torch
from torch.func import vmap

from eigsweep.config import ModelConfig
from eigsweep.mixers import deltanet, fla_ops, scan
from eigsweep.mixers.deltanet import DeltaNet, GatedDeltaNet
from eigsweep.mixers.mamba2 import Mamba2
from conftest import relative_error

gpu = pytest.mark.skipif(not torch.cuda.is_available() or fla_ops.kernels() is None,
                         reason="needs CUDA and fla (fla-core)")


def delta_inputs(b, H, L, N, P, gen, device="cpu", dtype=torch.float64):
    """q (scaled, normalised), k (normalised), v, β ∈ (0, 1), log α ≤ 0: leaves."""
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)      # noqa: E731
    q = torch.nn.functional.normalize(r(b, H, L, N), dim=-1) / N ** 0.5
    k = torch.nn.functional.normalize(r(b, H, L, N), dim=-1)
    beta, log_alpha = torch.sigmoid(r(b, H, L)), -0.2 * torch.rand(b, H, L, generator=gen, dtype=torch.float64)
    return [t.to(device, dtype).requires_grad_() for t in (q, k, r(b, H, L, P), beta, log_alpha)]


def ssd_inputs(b, L, H, P, N, gen, device="cpu", dtype=torch.float64):
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)      # noqa: E731
    X, a = r(b, L, H, P), -0.5 * torch.rand(b, L, H, generator=gen, dtype=torch.float64)
    return [t.to(device, dtype).requires_grad_() for t in (X, a, r(b, L, N) / 4, r(b, L, N) / 4)]


CASES = {   # name: (op, the own form, inputs)
    "delta": (lambda *t: fla_ops.delta_rule(*t, False)[0],
              lambda q, k, v, b, g: deltanet.delta_rule_torch(q, k, v, b, torch.zeros_like(g), 32), delta_inputs),
    "gated": (lambda *t: fla_ops.delta_rule(*t, True)[0],
              lambda *t: deltanet.delta_rule_torch(*t, 32), delta_inputs),
    "ssd": (fla_ops.ssd, lambda *t: scan._ssd_torch(*t, 32)[0], ssd_inputs),
}


def grads_of(y, ins, w):
    return torch.autograd.grad((y * w).sum(), ins, allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("case", list(CASES))
def test_op_is_the_own_form_with_its_gradient_vmapped_and_compiled(case):
    """float64 on CPU: the op's values and gradients through its backward op equal the own form's by autograd
    (L a multiple of fla's chunk and not); vmapped over 3 members (the first input shared by all, or each its
    own), eagerly and compiled; opcheck on the forward op; the backward op vmapped = each member's."""
    op, own, make = CASES[case]
    gen = torch.Generator().manual_seed(0)
    for L in (2 * fla_ops.CHUNK, 70):
        ins = make(2, L, 2, 8, 6, gen) if case == "ssd" else make(2, 2, L, 8, 6, gen)
        y, y_ref = op(*ins), own(*ins)
        w = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-13)
        for gr, gr_ref in zip(grads_of(y, ins, w), grads_of(y_ref, ins, w)):
            torch.testing.assert_close(gr, gr_ref, rtol=1e-11, atol=1e-12)
    ins = make(6, 40, 2, 4, 3, gen) if case == "ssd" else make(6, 2, 40, 4, 3, gen)
    torch.library.opcheck(fla_ops.ssd if case == "ssd" else fla_ops.delta_rule,
                          tuple(ins) + (() if case == "ssd" else (case == "gated",)))
    # (not the backward op by itself: opcheck's modes cannot read the tensors of torch.func.vjp, its CPU body;
    # the forward's opcheck runs it through autograd)
    members = [t.unflatten(0, (3, 2)) for t in ins]                          # 3 members of 2 sequences
    # the backward op vmapped (as under vmap(grad(…))) = each member's
    dy = torch.randn((3,) + tuple(own(*(m[0] for m in members)).shape), generator=gen, dtype=torch.float64)
    if case == "ssd":
        back, args = fla_ops.ssd_backward, [m.detach() for m in members] + [dy]
    else:
        A = fla_ops.delta_rule(*ins, case == "gated")[1].unflatten(0, (3, 2))
        back = functools.partial(fla_ops.delta_rule_backward, gated=case == "gated")
        args = [m.detach() for m in members] + [A, dy]
    for got, each in zip(vmap(back)(*args), zip(*(back(*(a[m] for a in args)) for m in range(3)))):
        torch.testing.assert_close(got, torch.stack(each), rtol=0, atol=0)
    torch._dynamo.reset()         # vmap's wrapper is one code object: earlier tests' graphs count to its limit
    w = torch.randn((3,) + tuple(own(*(m[0] for m in members)).shape), generator=gen, dtype=torch.float64)
    for in_dims in (0, (None,) + (0,) * (len(ins) - 1)):
        first = members[0] if in_dims == 0 else members[0][0]
        f = vmap(op, in_dims=in_dims)
        for what, fn in [("vmapped", f), ("vmapped, compiled", torch.compile(f, fullgraph=True, backend="aot_eager"))]:
            y = fn(first, *members[1:])
            y_ref = torch.stack([own(first if in_dims != 0 else first[m], *(t[m] for t in members[1:]))
                                 for m in range(3)])
            torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-13, msg=f"{what}, in_dims {in_dims}")
            for gr, gr_ref in zip(grads_of(y, ins, w), grads_of(y_ref, ins, w)):
                torch.testing.assert_close(gr, gr_ref, rtol=1e-11, atol=1e-12, msg=f"{what}, in_dims {in_dims}")


def test_cpu_keeps_the_own_forms(monkeypatch):
    """Off CUDA the mixers never take the ops (their own forms run, with their own chunk sizes)."""
    assert not fla_ops.available(torch.zeros(2), False) and not fla_ops.available(torch.zeros(2), True)
    calls = []
    monkeypatch.setattr(fla_ops, "delta_rule", lambda *t: calls.append(1))
    monkeypatch.setattr(fla_ops, "ssd", lambda *t: calls.append(1))
    gen = torch.Generator().manual_seed(1)
    deltanet.chunked_delta_rule(*delta_inputs(1, 1, 20, 4, 4, gen, dtype=torch.float32))
    scan.ssd_chunked(*ssd_inputs(1, 20, 2, 4, 4, gen, dtype=torch.float32), 8)
    assert not calls


@pytest.mark.parametrize("capability, triton, right", [((9, 0), "3.6.0", False), ((9, 0), "3.4.0", False),
                                                       ((9, 0), "3.7.1", True), ((9, 0), "3.3.1", True),
                                                       ((8, 0), "3.6.0", True), ((10, 0), "3.6.0", True)])
def test_gated_kernels_are_refused_where_fla_refuses_them(monkeypatch, capability, triton, right):
    """fla's own guard (its issue 640): no gated kernels on a Hopper GPU (capability 9.x) with Triton 3.4.0 to
    3.7.0; read from the versions and the device, without importing either."""
    import importlib.metadata
    monkeypatch.setattr(importlib.metadata, "version", lambda name: triton if name == "triton" else "0")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    assert fla_ops.gated_kernels_right(0) is right


# --- GPU ------------------------------------------------------------------------------------------------------

BF16_TOL = 3e-2      # relative to the float64 values' largest magnitude: bf16 storage of the inputs (8 bits)
GATED_REFUSED = "fla refuses its gated kernels here (its issue 640: Triton 3.4 to 3.7.0 on a Hopper GPU)"


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("case", list(CASES))
def test_fla_kernels_on_cuda_equal_the_own_form(case):
    """fla's kernels (bf16 inputs, float32 in and out of the op) against the own form in float64 on the same
    values: L 512 and 150 (not a multiple of 64), the paper's widths; vmapped (3 members) = each member."""
    op, own, make = CASES[case]
    if case != "delta" and not fla_ops.gated_kernels_right(0):
        pytest.skip(GATED_REFUSED)
    gen = torch.Generator().manual_seed(0)
    for L in (512, 150):
        ins = make(4, L, 8, 32, 128, gen, "cuda") if case == "ssd" else make(4, 1, L, 128, 128, gen, "cuda")
        ins32 = [t.detach().float().requires_grad_() for t in ins]
        y, y_ref = op(*ins32), own(*ins)
        assert y.dtype == torch.float32
        w = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64).cuda()
        assert relative_error(y, y_ref) <= BF16_TOL, f"y, L {L}: {relative_error(y, y_ref):.2e}"
        for i, (gr, gr_ref) in enumerate(zip(grads_of(y.double(), ins32, w), grads_of(y_ref, ins, w))):
            if case == "delta" and i == 4:
                assert not gr.any(), "DeltaNet's log α has no gradient"
                continue
            assert relative_error(gr, gr_ref) <= BF16_TOL, f"input {i}, L {L}: {relative_error(gr, gr_ref):.2e}"
    members = [t.detach().float().unflatten(0, (2, 2)).requires_grad_() for t in ins]
    y = vmap(op)(*members)
    y_each = torch.stack([op(*(t[m] for t in members)) for m in range(2)])
    assert relative_error(y, y_each) <= 1e-6


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("mixer", [DeltaNet, GatedDeltaNet, Mamba2])
def test_mixers_on_cuda_through_fla_equal_their_own_forms(monkeypatch, mixer, compiled):
    """The mixer with fla's kernels (eager or compiled) against the same mixer eager on its own form: output and
    every parameter's gradient within bf16's rounding; the kernels ran, or, for the gated ones where fla refuses
    them (gated_kernels_right), did not."""
    torch.manual_seed(0)
    m = mixer(ModelConfig(d_model=128, n_layers=1, n_heads=1, d_state=128, head_dim=32)).cuda()
    u = torch.randn(4, 150, 128, device="cuda")
    params = list(m.parameters())
    calls = []
    kernels = fla_ops.kernels()
    monkeypatch.setattr(fla_ops, "kernels", lambda: calls.append(1) or kernels)
    y = (torch.compile(m) if compiled else m)(u)
    grads = torch.autograd.grad(y.square().sum(), params)
    expected = mixer is DeltaNet or fla_ops.gated_kernels_right(0)
    assert bool(calls) == expected, "fla's kernels ran" if calls else "fla's kernels did not run"
    monkeypatch.setattr(fla_ops, "DELTA_RULE_ON_CUDA", False)
    monkeypatch.setattr(fla_ops, "SSD_ON_CUDA", False)
    y_ref = m(u)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), params)
    assert relative_error(y, y_ref) <= BF16_TOL
    for (name, _), gr, gr_ref in zip(m.named_parameters(), grads, grads_ref):
        assert relative_error(gr, gr_ref) <= BF16_TOL, f"d{name}: {relative_error(gr, gr_ref):.2e}"
