"""The token model: pooling skips right-padding, the shared convolution, DeltaNet's blocked inverse and the chunked
forms under compile, and the last block computed at the labelled positions only."""
import pytest
import torch

from eigsweep import model as model_module
from eigsweep import registry
from eigsweep.model import build_model


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooling_ignores_padding(pooling):
    torch.manual_seed(0)
    model = build_model("softmax", vocab_size=20, n_outputs=3, target="sequence", pad_id=0, d_model=16,
                        n_heads=2, pooling=pooling).eval()
    seq = torch.randint(1, 20, (1, 9))
    padded = torch.cat([seq, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(seq), model(padded))      # causal mixers: padding comes after content
    unmasked = build_model("softmax", vocab_size=20, n_outputs=3, target="sequence", d_model=16, n_heads=2,
                           pooling=pooling).eval()
    unmasked.load_state_dict(model.state_dict())
    assert not torch.allclose(unmasked(seq), unmasked(padded))  # without pad_id the padding would count


def test_short_conv_grouped_convolution_equals_the_shifted_products():
    """ShortConv runs as one grouped convolution on CUDA and as K shifted products elsewhere: same values and
    gradients (float64), also vmapped over stacked members as a pack does."""
    from torch.func import functional_call, stack_module_state, vmap

    from eigsweep.mixers.blocks import ShortConv

    torch.manual_seed(0)
    convs = [ShortConv(6, 4).double() for _ in range(3)]
    x = torch.randn(3, 2, 10, 6, dtype=torch.float64, requires_grad=True)
    a, b = convs[0].shifted(x[0]), convs[0].depthwise(x[0])
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    ga, gb = (torch.autograd.grad(t.pow(2).sum(), [x, convs[0].conv.weight]) for t in (a, b))
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-12)
    params, _ = stack_module_state(convs)
    via = lambda name: vmap(lambda p, xi: functional_call(  # noqa: E731
        _Call(convs[0], name), ({f"c.{k}": v for k, v in p.items()},), (xi,)))(params, x)
    torch.testing.assert_close(via("shifted"), via("depthwise"), rtol=0, atol=1e-12)
    assert torch.allclose(via("shifted")[1], convs[1].shifted(x[1]))


class _Call(torch.nn.Module):
    def __init__(self, conv, name):
        super().__init__()
        self.c, self.name = conv, name

    def forward(self, x):
        return getattr(self.c, self.name)(x)


@pytest.mark.parametrize("T", [1, 2, 8, 64])
def test_unit_lower_inverse_is_the_inverse(T):
    """DeltaNet's blocked inverse (its chunk solve under torch.compile) against torch.linalg.inv, float64,
    batched, with entries as large as the delta rule's (|β k_tᵀk_j| ≤ 2)."""
    from eigsweep.mixers.deltanet import unit_lower_inverse

    torch.manual_seed(T)
    M = torch.eye(T, dtype=torch.float64) + (2 * torch.rand(3, 2, T, T, dtype=torch.float64) - 1).tril(-1) * 0.3
    X = unit_lower_inverse(M)
    torch.testing.assert_close(X, torch.linalg.inv(M), rtol=1e-10, atol=1e-10)
    assert torch.equal(X.triu(1), torch.zeros_like(X))        # lower triangular, as the inverse must be


@pytest.mark.parametrize("arch", ["deltanet", "gated_deltanet", "mamba2"])
def test_chunked_forms_under_compile_equal_the_eager_forms(arch, monkeypatch):
    """Under torch.compile DeltaNet's chunk solve is the blocked inverse and Mamba-2's state carried across
    chunks its recurrence: the same outputs and gradients as the eager forms (float64; the compiled branch
    taken by patching torch.compiler.is_compiling, so the comparison needs no compiler), at a length that pads
    the last chunk."""
    torch.manual_seed(0)
    model = build_model(arch, vocab_size=16, n_outputs=16, target="token", d_model=16, n_heads=2,
                        short_conv="qk").double()
    x = torch.randint(0, 16, (3, 21))

    def run():
        model.zero_grad(set_to_none=True)
        out = model(x)
        out.pow(2).sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    for mixer in (m for m in model.modules() if hasattr(m, "chunk")):
        mixer.chunk = 8
    eager_out, eager_grads = run()
    from eigsweep.mixers import deltanet, scan
    calls = []
    inverse, segsum = deltanet.unit_lower_inverse, scan.segsum
    monkeypatch.setattr(deltanet, "unit_lower_inverse", lambda M: calls.append(M.shape) or inverse(M))
    monkeypatch.setattr(scan, "segsum", lambda a: calls.append("segsum") or segsum(a))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    out, grads = run()
    if arch == "mamba2":       # eagerly segsum twice a layer (in-chunk decays and the carry), here once
        assert calls == ["segsum"] * 2
    else:                      # the blocked inverse ran, once a layer
        assert [s for s in calls if s[-1] == 8] == [(3, 2, 3, 8, 8)] * 2
    torch.testing.assert_close(out, eager_out, rtol=1e-10, atol=1e-12)
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("compiling", [False, True])
@pytest.mark.parametrize("scan", ["ssd_chunked", "chunked_delta_rule"])
def test_scans_run_in_float32_under_bf16_autocast(scan, compiling, monkeypatch):
    """Mamba-2's and DeltaNet's scans under bf16 autocast (a mixer in model.BF16_MIXERS: its projections in
    bf16, throughput.py --bf16) take bf16 inputs and compute exactly as in float32 outside autocast
    (blocks.float32_scan), eagerly and in their compiled branch (DeltaNet's blocked inverse, whose matmuls in
    bf16 were 0.4% off a triangular solve)."""
    from eigsweep.mixers.deltanet import chunked_delta_rule
    from eigsweep.mixers.scan import ssd_chunked

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
    gen = torch.Generator().manual_seed(0)
    if scan == "ssd_chunked":     # X (b, L, H, P), log λ (b, L, H), B, C (b, L, N)
        fn, shapes, decays = ssd_chunked, [(2, 70, 2, 8), (2, 70, 2), (2, 70, 16), (2, 70, 16)], [1]
    else:                         # q, k (B, H, L, N), v (B, H, L, P), β, log α (B, H, L)
        fn, shapes, decays = chunked_delta_rule, [(2, 2, 70, 8), (2, 2, 70, 8), (2, 2, 70, 8), (2, 2, 70),
                                                  (2, 2, 70)], [4]
    args = [torch.randn(s, generator=gen) for s in shapes]
    for i in decays:                                              # log-decays ≤ 0
        args[i] = -torch.rand(shapes[i], generator=gen)
    if scan == "chunked_delta_rule":
        args[0], args[1] = (torch.nn.functional.normalize(t, dim=-1) for t in args[:2])
        args[3] = torch.sigmoid(args[3])
    bf16 = [t.to(torch.bfloat16) for t in args]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fn(*bf16, 32)
    ref = fn(*(t.float() for t in bf16), 32)
    assert out.dtype == torch.float32
    assert torch.equal(out, ref)


@pytest.mark.parametrize("arch", sorted(registry.MIXERS))
def test_last_block_at_labelled_positions_equals_the_whole_sequence_gathered(arch, monkeypatch):
    """With logits at positions (B, K) only, the last block computes its output at those positions alone
    (Mixer.forward_at; softmax attention takes K queries): the same logits and gradients as the last block over
    every position with its output gathered (float64), with an output gate and an MLP, positions repeated
    within a row (train.labelled_positions pads short rows with a fill position), for every registered mixer;
    and vmapped over stacked members, as a pack runs it."""
    from torch.func import functional_call, stack_module_state, vmap

    torch.manual_seed(0)
    cfg = dict(d_model=16, n_heads=2, d_state=4, head_dim=8, output_gate=True, mlp_ratio=2)
    models = [build_model(arch, vocab_size=16, n_outputs=16, **cfg).double() for _ in range(2)]
    x = torch.randint(0, 16, (2, 3, 21))
    positions = torch.tensor([[[0, 5, 20, 20], [3, 4, 12, 19], [6, 6, 6, 6]],
                              [[20, 1, 7, 7], [9, 2, 0, 14], [11, 15, 17, 18]]])

    def run(model, xi, pi, on):
        monkeypatch.setattr(model_module, "LAST_BLOCK_AT_POSITIONS", on)
        model.zero_grad(set_to_none=True)
        out = model(xi, pi)
        out.pow(2).sum().backward()
        return out, [p.grad for p in model.parameters()]

    fast, fast_grads = run(models[0], x[0], positions[0], True)
    whole, whole_grads = run(models[0], x[0], positions[0], False)
    assert fast.shape == (3, 4, 16)
    torch.testing.assert_close(fast, whole, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast, models[0](x[0])[torch.arange(3)[:, None], positions[0]], rtol=1e-10,
                               atol=1e-12)
    for a, b in zip(fast_grads, whole_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    params, buffers = stack_module_state(models)
    members = vmap(lambda p, b, xi, pi: functional_call(models[0], (p, b), (xi, pi)))(params, buffers, x, positions)
    for m in range(2):
        torch.testing.assert_close(members[m], models[m](x[m], positions[m]), rtol=1e-10, atol=1e-12)


def test_softmax_attention_takes_queries_at_the_positions_only():
    """Softmax attention's forward_at is its own (K queries against every key), not the base class's gather."""
    from eigsweep.mixers.base import Mixer
    from eigsweep.mixers.softmax import SoftmaxAttention

    assert SoftmaxAttention.forward_at is not Mixer.forward_at
