"""The short causal convolution op (mixers/conv_triton.py) against ShortConv's torch form.

CPU (normal suite): the op with its torch body (float64: values and gradients through its registered formula,
vmapped over a pack's members with their own weights, compiled, opcheck) equals ShortConv's shifted products
differentiated by autograd; ShortConv on CPU keeps the torch form and importing it does not import Triton. Where
Triton is installed, the kernels run through its interpreter (TRITON_INTERPRET=1) and match. GPU (``-m gpu``):
the same check on CUDA; a Mamba-2 mixer on CUDA with the op (blocks.FUSED_CONV_ON_CUDA, on by default since
these passed on a GPU), eager and compiled, equals the same forced onto the torch form.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from eigsweep.config import ModelConfig
from eigsweep.mixers import blocks, fla_ops
from eigsweep.mixers import conv_triton as ct
from eigsweep.mixers.mamba2 import Mamba2
from conftest import assert_importing_does_not_import_triton, relative_error, run_in_triton_interpreter

gpu = pytest.mark.skipif(not torch.cuda.is_available() or ct._triton() is None, reason="needs CUDA and Triton")


def inputs(M, B, L, C, K, device="cpu", seed=0):
    """x (M, B, L, C), w (M, C, K), b (M, C) float64 leaves, and weights for a loss Σ w·y."""
    gen = torch.Generator().manual_seed(seed)
    x, w, b, out_w = (torch.randn(*shape, generator=gen, dtype=torch.float64).to(device)
                      for shape in [(M, B, L, C), (M, C, K), (M, C), (M, B, L, C)])
    return [t.requires_grad_() for t in (x, w, b)], out_w


def torch_form(x, w, b, silu):
    """ShortConv's torch form for each member, differentiated by autograd."""
    return ct.reference_conv(x, w, b, silu)


def test_the_op_is_the_shifted_products_with_their_gradient_vmapped_and_compiled():
    (x, w, b), out_w = inputs(3, 2, 13, 5, 4)
    torch.library.opcheck(ct.causal_conv_stacked, (x, w, b, True))
    torch.library.opcheck(ct.causal_conv_backward, (out_w, x.detach(), w.detach(), b.detach(), False))
    member = lambda xm, wm, bm, silu: ct.causal_conv(xm, wm, bm, silu)   # noqa: E731
    for silu in (True, False):
        ref = torch_form(x, w, b, silu)
        g_ref = torch.autograd.grad((ref * out_w).sum(), (x, w, b))
        calls = [("stacked op", lambda *a: ct.causal_conv_stacked(*a, silu)),
                 ("vmapped", vmap(lambda xm, wm, bm: member(xm, wm, bm, silu))),
                 ("vmapped and compiled", torch.compile(vmap(lambda xm, wm, bm: member(xm, wm, bm, silu)),
                                                        fullgraph=True, backend="aot_eager"))]
        for what, fn in calls:
            y = fn(x, w, b)
            torch.testing.assert_close(y, ref.detach(), rtol=1e-13, atol=1e-14, msg=f"{what}, silu {silu}")
            for name, g, r in zip("xwb", torch.autograd.grad((y * out_w).sum(), (x, w, b)), g_ref):
                torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-13, msg=f"d{name}, {what}, silu {silu}")


def test_short_conv_on_cpu_keeps_the_torch_form_and_does_not_import_triton(monkeypatch):
    monkeypatch.setattr(blocks, "FUSED_CONV_ON_CUDA", True)
    conv = blocks.ShortConv(6, 4).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    calls = []
    monkeypatch.setattr(blocks, "causal_conv", lambda *a: calls.append(1))
    torch.testing.assert_close(conv(x), F.silu(conv.shifted(x)), rtol=0, atol=0)
    assert not calls and not ct.fused_available(x)
    assert_importing_does_not_import_triton("eigsweep.mixers.blocks", "eigsweep.mixers.conv_triton")


def test_short_conv_through_the_op_equals_its_torch_form(monkeypatch):
    """ShortConv where the op runs (CUDA with blocks.FUSED_CONV_ON_CUDA: forced here on CPU, the op's torch body)
    against its torch form, vmapped over a pack's 3 members with their own parameters, with and without the
    SiLU."""
    from torch.func import functional_call, stack_module_state

    monkeypatch.setattr(blocks, "FUSED_CONV_ON_CUDA", True)
    for act in (True, False):
        torch.manual_seed(1)
        convs = [blocks.ShortConv(5, 3, activation=act).double() for _ in range(3)]
        params, _ = stack_module_state(convs)
        x = torch.randn(3, 2, 11, 5, dtype=torch.float64, requires_grad=True)
        run = lambda: vmap(lambda p, xi: functional_call(convs[0], p, (xi,)))(params, x)   # noqa: E731
        monkeypatch.setattr(blocks, "runs_fused", lambda t: False)
        ref = run()
        g_ref = torch.autograd.grad(ref.square().sum(), [x, *params.values()])
        monkeypatch.setattr(blocks, "runs_fused", lambda t: True)
        y = run()
        torch.testing.assert_close(y, ref, rtol=1e-13, atol=1e-14)
        for g, r in zip(torch.autograd.grad(y.square().sum(), [x, *params.values()]), g_ref):
            torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-13)


def check_kernels(device: str, force_kernels: bool = False) -> None:
    """The op with its kernels (float32) against the float64 torch form: lengths 1, 37 and 70 (across time
    blocks of 32), channel counts across blocks of 128 (130) and not a power of two, kernel sizes 4 and 3, with
    and without the SiLU; values and the three gradients, relative error ≤ 1e-5 of the largest entry; vmapped
    over a pack's members. ``force_kernels``: on CPU too (under TRITON_INTERPRET=1)."""
    if force_kernels:
        ct.fused_available = lambda t: True
    for shape in [(2, 3, 37, 5, 4), (1, 2, 70, 130, 4), (3, 1, 1, 7, 3)]:
        (x, w, b), out_w = inputs(*shape, device=device, seed=shape[2])
        for silu, sliced in [(True, False), (False, False), (True, True)]:
            # sliced: x a slice of a wider tensor's channels, read in place (Mamba-2's x, B, C)
            xf = torch.cat([x, x[..., :3]], -1).float()[..., : x.shape[-1]] if sliced else x.float()
            assert xf.is_contiguous() != sliced
            y = ct.causal_conv_stacked(xf, w.float(), b.float(), silu)
            assert y.dtype == torch.float32
            grads = torch.autograd.grad((y.double() * out_w).sum(), (x, w, b))
            ref = torch_form(x, w, b, silu)
            grads_ref = torch.autograd.grad((ref * out_w).sum(), (x, w, b))
            assert relative_error(y, ref) <= 1e-5, f"y {shape} silu {silu} sliced {sliced}"
            for name, g, r in zip("xwb", grads, grads_ref):
                assert relative_error(g, r) <= 1e-5, f"d{name} {shape} silu {silu} sliced {sliced}"
            y_v = vmap(lambda xm, wm, bm: ct.causal_conv(xm, wm, bm, silu))(x.float(), w.float(), b.float())
            assert relative_error(y_v, ref) <= 1e-5, f"vmapped y {shape} silu {silu}"


def test_the_kernels_in_the_triton_interpreter():
    run_in_triton_interpreter("test_conv_triton", "check_kernels('cpu', force_kernels=True)")


@pytest.mark.gpu
@gpu
def test_the_kernels_on_cuda():
    check_kernels("cuda")


@pytest.mark.gpu
@gpu
def test_mamba2_on_cuda_with_the_op_equals_the_torch_form(monkeypatch):
    """A Mamba-2 mixer (its conv over x, B, C: 512 channels) on CUDA, eager and compiled, against the same with
    ShortConv forced onto its torch form (cuDNN's grouped convolution)."""
    torch.manual_seed(0)
    m = Mamba2(ModelConfig(d_model=128, d_state=128, expand=2, head_dim=64), 0).cuda()
    u = torch.randn(2, 300, 128, device="cuda")
    params = list(m.parameters())
    outs = []
    monkeypatch.setattr(fla_ops, "SSD_ON_CUDA", False)     # the SSD in float32 (fla's is bf16): the conv is tested
    monkeypatch.setattr(blocks, "FUSED_CONV_ON_CUDA", True)
    for fused, compile in [(True, False), (True, True), (False, False)]:
        monkeypatch.setattr(blocks, "runs_fused", (lambda t: True) if fused else (lambda t: False))
        y = (torch.compile(m) if compile else m)(u)
        outs.append([y, *torch.autograd.grad(y.square().sum(), params)])
    for got in outs[:2]:
        for (name, _), g, r in zip([("y", None), *m.named_parameters()], got, outs[2]):
            assert relative_error(g, r) <= 1e-3, name
