"""The token model's pooling skips right-padding, so padded and unpadded sequences classify alike."""
import pytest
import torch

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
