"""The last block at the labelled positions only (model.LAST_BLOCK_AT_POSITIONS) against the last block over every
position, both under bf16 autocast, each against the same model in float64: is the shortcut as precise as the path
it replaces? Softmax attention at the paper's MQAR size (vocab 8192, L 512, 64 labelled positions, d 128, batch 64;
on CPU vocab 512 and no autocast); errors relative to the largest float64 value, logits and the worst/median
parameter gradient of mean(logits²).

    python3 benchmarks/last_block_precision.py
"""
from __future__ import annotations

import torch

from eigsweep import model as model_module
from eigsweep.model import build_model


def relative_error(got, ref):
    return ((got.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def main():
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vocab = 8192 if device == "cuda" else 512
    model = build_model("softmax", vocab_size=vocab, n_outputs=vocab, d_model=128).to(device)
    x = torch.randint(0, vocab, (64, 512), device=device)
    positions = torch.sort(torch.randint(0, 512, (64, 64), device=device), 1).values

    def run(at_positions, dtype):
        model_module.LAST_BLOCK_AT_POSITIONS = at_positions
        model.to(dtype)        # float32 → float64 → float32 is exact
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.float32 and device == "cuda"):
            out = model(x, positions).double()
        return out, torch.autograd.grad(out.square().mean(), list(model.parameters()))

    ref, ref_grads = run(False, torch.float64)
    precision = "bf16 autocast" if device == "cuda" else "float32"
    for at_positions in (True, False):
        out, grads = run(at_positions, torch.float32)
        errs = sorted(relative_error(g, r) for g, r in zip(grads, ref_grads))
        print(f"last block at labels {at_positions}: {precision} against float64: logits "
              f"{relative_error(out, ref):.2e}, gradients worst {errs[-1]:.2e}, median {errs[len(errs) // 2]:.2e}")


if __name__ == "__main__":
    main()
