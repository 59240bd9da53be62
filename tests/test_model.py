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
