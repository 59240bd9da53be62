"""Training throughput at the paper's MQAR size: today's solo path, the new solo path, packs; MFU.

    python benchmarks/throughput.py                       # on CUDA: vocab 8192, L 512, 64 pairs, d 128, ...
    python benchmarks/throughput.py --device cpu --vocab 64 --seq-len 32 --kv 4 --d-model 16 --batch 8 \\
        --packs 1 4 --models softmax --all-models softmax linear         # a quick smoke run

Run-steps/s (training steps summed over the runs trained at once, evaluation excluded) for:
- "solo 0041d10": the step loop of main at commit 0041d10, copied below (a CPU permutation of the training set
  per step, logits at every position, the loss read every step, float32/TF32, unfused AdamW);
- "solo": eigsweep.train.Trainer.train_step (see train.py);
- "pack N": eigsweep.pack.Pack.train_step with N members (seeds), until memory ends;
- "compiled" (models in --compile): the largest pack (or those of --variant-packs) and the solo path with
  torch.compile (loss and update);
  "bf16 mixer" (models in --bf16): the mixer under bf16 autocast too (model.BF16_MIXERS; Mamba-2's and
  DeltaNet's chunked scans stay in float32, blocks.float32_scan), eager and compiled;
  the loss on CUDA is the fused per-row cross-entropy (eigsweep.cross_entropy) everywhere but in "solo 0041d10";
  "compiled, one-hot loss" / "compiled, F.cross_entropy" (--loss-forms): compiled with loss_fn's torch form
  (a one-hot comparison) or with F.cross_entropy instead, the references for the fused loss in the same run;
  "compiled, conv op" / "compiled, torch conv" (--conv-forms): ShortConv by the fused conv_triton op / by its
  torch form (blocks.FUSED_CONV_ON_CUDA), the op and its reference in one run;
  "compiled, SSD op" / "compiled, torch SSD" (--ssd-forms): Mamba-2's SSD by the ssd_triton kernels (scan.ssd_op)
  / by scan.ssd_chunked's torch form (with fla's SSD off);
  "compiled, scan stand-in (a ceiling, not a model)" (--scan-ceiling): Mamba-2's or a DeltaNet's scan replaced by
  cheap element-wise work, the rate the rest of the step allows;
  "compiled, fla delta rule" / "compiled, own delta rule" (--fla-delta-forms), "compiled, fla SSD" / "compiled,
  own SSD" (--fla-ssd-forms): the DeltaNets' delta rule and Mamba-2's SSD by flash-linear-attention's kernels
  (mixers/fla_ops, bf16; on where fla is installed) / by the mixers' own forms;
  "compiled, last block at labels" / "compiled, last block whole" (--last-block-forms): the model's last block
  at the labelled positions only / over every position, its output gathered (model.LAST_BLOCK_AT_POSITIONS).
MFU: model FLOPs of one step of the new path (counted by torch.utils.flop_counter: forward + backward, logits at
labelled positions; the scans counted on their own forms, as the counter cannot see into fla's kernels) ×
run-steps/s, over the bf16 matmul rate measured in the same run (8192³ matmuls). First,
ms/step of every registered model on the new solo path, as a ratio to softmax.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import platform
import time
import traceback
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from eigsweep import model as model_module
from eigsweep import train as train_module
from eigsweep import registry
from eigsweep.mixers import blocks, fla_ops, scan
from eigsweep.mixers import deltanet as deltanet_module
from eigsweep.mixers import mamba2 as mamba2_module
from eigsweep.config import EvalConfig, ModelConfig, RunSpec, TrainConfig
from eigsweep.pack import Pack
from eigsweep.train import Trainer, lr_factor


def cache_task_data():
    """Generate each MQAR data set once per benchmark run (every Trainer/Pack would otherwise regenerate it)."""
    cls, cache = registry.task_class("mqar"), {}
    load = cls.load
    cls.load = lambda self: cache.setdefault(repr(self.params), load(self)) if repr(self.params) not in cache \
        else cache[repr(self.params)]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device, n=8192, repeat=20) -> float:
    """Measured bf16 matmul FLOP/s (the MFU reference)."""
    if device.type != "cuda":
        n, repeat = 1024, 3
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    sync(device)
    return 2 * n**3 * repeat / (time.perf_counter() - t)


def make_spec(args, arch, seed=0, lr=1e-3) -> RunSpec:
    return RunSpec(
        sweep="bench", arch=arch, task="mqar_bench", modification="none", seed=seed, lr=lr,
        task_params=dict(name="mqar", vocab_size=args.vocab, seq_len=args.seq_len, num_kv_pairs=args.kv,
                         n_train=args.n_train, n_test=64),
        model=ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=1, d_state=args.d_state,
                          head_dim=64 if args.d_model >= 64 else 8, expand=2),
        train=TrainConfig(steps=100_000, batch_size=args.batch, device=args.device, eval_every=10**9),
        eval=EvalConfig(n_samples=4, batch_size=64))


def time_steps(step, device, warmup, repeat) -> float:
    """Seconds per call of step() (median of 3 timed blocks of ``repeat`` calls after ``warmup``)."""
    for _ in range(warmup):
        step()
    sync(device)
    blocks = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeat):
            step()
        sync(device)
        blocks.append((time.perf_counter() - t) / repeat)
    return sorted(blocks)[1]


def paired_ratio(step, ref_step, device, repeat, rounds=5) -> tuple[float, float, float]:
    """Median, smallest and largest over ``rounds`` of (time of ``repeat`` calls of step) / (the same of
    ref_step), the two timed in alternating blocks: a host-bound step's speed drifts within a run (softmax's
    eager step took 5.0–7.2 ms across one session's runs), a ratio of two blocks timed back to back far less."""
    for f in (step, ref_step):
        for _ in range(3):
            f()
    sync(device)
    ratios = []
    for _ in range(rounds):
        seconds = []
        for f in (step, ref_step):
            t = time.perf_counter()
            for _ in range(repeat):
                f()
            sync(device)
            seconds.append(time.perf_counter() - t)
        ratios.append(seconds[0] / seconds[1])
    ratios.sort()
    return ratios[rounds // 2], ratios[0], ratios[-1]


# ---- the step loop of main at commit 0041d10 (train.py), kept as the baseline -------------------------------
def old_batch_indices(seed: int, step: int, batch_size: int, n: int) -> torch.Tensor:
    start = step * batch_size
    idx = []
    while len(idx) < batch_size:
        epoch, offset = divmod(start + len(idx), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        idx.extend(perm[offset : offset + batch_size - len(idx)].tolist())
    return torch.tensor(idx)


def old_step_fn(trainer: Trainer):
    """0041d10's per-step work on the same model and data (kept on the CPU, as it was)."""
    spec, tc, model, device = trainer.spec, trainer.spec.train, trainer.model, trainer.device
    data = trainer.data
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, betas=tuple(tc.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc.warmup_steps, tc.steps, tc.min_lr_ratio))
    state = dict(step=0)

    def step():
        idx = old_batch_indices(spec.seed, state["step"], tc.batch_size, len(data.train_x))
        xb, yb = data.train_x[idx].to(device), data.train_y[idx].to(device)
        logits = model(xb)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), yb.reshape(-1), ignore_index=-100)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            return
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        sched.step()
        state["step"] += 1
    return step


def step_flops(trainer: Trainer) -> float:
    """FLOPs of one training step, counted on the mixers' own scans (the counter cannot see inside fla's ops)."""
    x, pos, y = trainer.tensors.batch(trainer.order.indices(0)[0])
    with FlopCounterMode(display=False) as counter, mock.patch.object(fla_ops, "DELTA_RULE_ON_CUDA", False), \
            mock.patch.object(fla_ops, "SSD_ON_CUDA", False):
        trainer.batch_loss(x, pos, y).backward()
    trainer.opt.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


@contextlib.contextmanager
def bf16_mixer(arch: str | None, on: bool = True):
    """Models built inside run ``arch``'s mixer under bf16 autocast (``on``) or in float32 (model.BF16_MIXERS),
    whatever the default; no change if arch is None."""
    saved = model_module.BF16_MIXERS
    if arch:
        model_module.BF16_MIXERS = saved | {arch} if on else saved - {arch}
    try:
        yield
    finally:
        model_module.BF16_MIXERS = saved


# module switches that a pair of compiled variants times one way and the other in the same run: option →
# (module, flag, the variant's label with the flag on, with it off)
SWITCHES = {
    "conv_forms": (blocks, "FUSED_CONV_ON_CUDA", "conv op", "torch conv"),              # ShortConv by conv_triton
    "ssd_forms": (scan, "FUSED_SSD_ON_CUDA", "SSD op", "torch SSD"),   # Mamba-2's SSD by ssd_triton (fla's off)
    "fla_delta_forms": (fla_ops, "DELTA_RULE_ON_CUDA", "fla delta rule", "own delta rule"),   # the DeltaNets
    "fla_ssd_forms": (fla_ops, "SSD_ON_CUDA", "fla SSD", "own SSD"),                          # Mamba-2
    "last_block_forms": (model_module, "LAST_BLOCK_AT_POSITIONS", "last block at labels", "last block whole"),
}


def ssd_stand_in(X, log_lam, Bm, Cm, chunk):
    """Not Mamba-2's SSD: element-wise work that reads every input and gives each a gradient (--scan-ceiling)."""
    return X * torch.sigmoid(log_lam)[..., None] + (Bm * Cm).sum(-1)[..., None, None]


def delta_rule_stand_in(q, k, v, beta, log_alpha, chunk=64, gated=True):
    """Not the delta rule: element-wise work that reads every input and gives each a gradient (--scan-ceiling)."""
    return v * beta[..., None] + (q * k).sum(-1, keepdim=True) + log_alpha[..., None]


# --scan-ceiling: arch → (module, name, stand-in): the compiled pack with its scan replaced by cheap element-wise
# work, the rate the rest of the step allows (a ceiling for work on the scan alone; not a model)
SCAN_STAND_INS = {"mamba2": (mamba2_module, "ssd_chunked", ssd_stand_in),
                  "deltanet": (deltanet_module, "chunked_delta_rule", delta_rule_stand_in),
                  "gated_deltanet": (deltanet_module, "chunked_delta_rule", delta_rule_stand_in)}


@contextlib.contextmanager
def step_form(loss: str, switch: tuple = ()):
    """Code built and run inside computes the loss as ``loss``: "fused" (cross_entropy.ce_rows on CUDA, the
    default), "one-hot" (loss_fn's torch.compile form) or "F.cross_entropy"; ``switch`` (module, flag, value)
    sets one of SWITCHES' flags meanwhile."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(train_module, "FUSED_LOSS_ON_CUDA", loss == "fused"))
        stack.enter_context(mock.patch.object(train_module, "ONE_HOT_LOSS_WHEN_COMPILED", loss != "F.cross_entropy"))
        if switch:
            stack.enter_context(mock.patch.object(*switch))
        yield


def free(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--kv", type=int, default=64)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-state", type=int, default=128)
    p.add_argument("--n-train", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--models", nargs="*", default=["softmax", "mamba2", "deltanet"])
    p.add_argument("--packs", nargs="*", type=int, default=[1, 4, 16, 32])
    p.add_argument("--compile", nargs="*", default=["softmax", "mamba2", "deltanet"],
                   help="models whose solo path and largest pack are also timed with torch.compile")
    p.add_argument("--bf16", nargs="*", default=[], help="models whose solo path and largest pack are also timed "
                   "with the mixer under bf16 autocast (added to model.BF16_MIXERS), eager and compiled")
    p.add_argument("--variant-packs", nargs="*", type=int, default=None, help="pack sizes (of --packs that fit) "
                   "that the compiled/bf16 variants are timed at (default: the largest that fit)")
    p.add_argument("--no-solo-variants", action="store_true", help="time the compiled/fp32 variants on the "
                   "largest pack only")
    p.add_argument("--scan-ceiling", action="store_true", help="also the compiled pack with the scan replaced by "
                   "cheap element-wise work (SCAN_STAND_INS: Mamba-2, the DeltaNets): what the rest of the step allows"
                   " (with the mixer under bf16 autocast too for models in --bf16)")
    p.add_argument("--loss-forms", action="store_true", help="the compiled variant also with loss_fn's one-hot "
                   "form and with F.cross_entropy as the loss (the references for the fused cross-entropy)")
    for option, (module, flag, on, off) in SWITCHES.items():
        p.add_argument(f"--{option.replace('_', '-')}", action="store_true", help=f"the compiled variant also as "
                       f'"{on}" and as "{off}" ({module.__name__}.{flag} on / off)')
    p.add_argument("--all-models", nargs="*", default=list(registry.MIXERS))
    p.add_argument("--solo-compiled", action="store_true", help="the first table also times each of --all-models "
                   "solo with torch.compile (a ratio to softmax compiled; EIGSWEEP_COMPILE_MODE applies)")
    p.add_argument("--paired", action="store_true", help="the first table also gives each model's ratio to "
                   "softmax timed in alternating blocks (median and range of 5 rounds; a softmax Trainer stays "
                   "built beside the model's)")
    p.add_argument("--chunk", nargs="*", default=[], metavar="ARCH=T", help="chunked mixers' chunk sizes for this "
                   "run (the mixer class's `chunk`, e.g. deltanet=128 gated_deltanet=64): how work is split, not "
                   "what is computed")
    args = p.parse_args()
    for item in args.chunk:
        arch, _, size = item.partition("=")
        registry.mixer_class(arch).chunk = int(size)
        print(f"# {arch}: chunk {size}")
    cache_task_data()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# {datetime.date.today()} · {name} · torch {torch.__version__}")
    print(f"# MQAR vocab {args.vocab}, L {args.seq_len}, {args.kv} pairs, d {args.d_model}, {args.layers} layers, "
          f"state {args.d_state}, batch {args.batch}", flush=True)
    peak = matmul_rate(device)
    print(f"# measured matmul rate: {peak / 1e12:.0f} TFLOP/s ({'bf16' if device.type == 'cuda' else 'fp32'})",
          flush=True)
    paths = [False, True] if args.solo_compiled else [False]
    paired = " paired × softmax (median, range) |" if args.paired else ""
    print("| model | solo ms/step (new path) | × softmax |" + paired + (" solo compiled ms/step | × softmax compiled |"
          + paired) * args.solo_compiled + "\n|---|---:|---:|" + "---:" * args.paired
          + ("|---:|---:" + "|---:" * args.paired) * args.solo_compiled + "|", flush=True)
    ref, ref_trainer = {}, {}
    for arch in args.all_models:
        cells = []
        for comp in paths:
            try:
                trainer = Trainer(make_spec(args, arch), compile=comp)
                ms = 1000 * time_steps(trainer.train_step, device, 3, max(3, args.repeat // 2))
                if args.paired and arch != "softmax":
                    if comp not in ref_trainer:
                        ref_trainer[comp] = Trainer(make_spec(args, "softmax"), compile=comp)
                    mid, lo, hi = paired_ratio(trainer.train_step, ref_trainer[comp].train_step, device, args.repeat)
            except Exception as e:  # noqa: BLE001  a model that cannot run at this size is reported, not fatal
                cells += [f"failed: {type(e).__name__}: {str(e)[:60]}", ""] + [""] * args.paired
                continue
            finally:
                trainer = None
                free(device)
            if arch == "softmax":
                ref[comp] = ms
            cells += [f"{ms:.2f}", f"{ms / ref[comp]:.2f}" if comp in ref else "–"]
            if args.paired:
                cells.append("1" if arch == "softmax" else f"{mid:.2f} ({lo:.2f}–{hi:.2f})")
        print(f"| {arch} | " + " | ".join(cells) + " |", flush=True)
    ref_trainer = None
    free(device)

    print("\n| model | path | run-steps/s | ms/step | × solo 0041d10 | MFU |", flush=True)
    print("|---|---|---:|---:|---:|---:|", flush=True)
    for arch in args.models:
        trainer = Trainer(make_spec(args, arch))
        flops = step_flops(trainer)
        base = 1 / time_steps(old_step_fn(trainer), device, 3, args.repeat)

        def row(path, rate):
            print(f"| {arch} | {path} | {rate:,.0f} | {1000 / rate:.2f} | {rate / base:.1f} | "
                  f"{100 * flops * rate / peak:.1f}% |", flush=True)
        row("solo 0041d10", base)
        trainer = Trainer(make_spec(args, arch))
        row("solo", 1 / time_steps(trainer.train_step, device, 5, args.repeat))
        del trainer
        free(device)
        fitted = []
        for n in args.packs:
            try:
                pack = Pack([make_spec(args, arch, seed=s, lr=1e-3 * (1 + s % 4)) for s in range(n)], ["-"] * n)
                row(f"pack {n}", n / time_steps(pack.train_step, device, 3, args.repeat))
                fitted.append(n)
            except torch.cuda.OutOfMemoryError:
                print(f"| {arch} | pack {n} | out of memory | | | |", flush=True)
                break
            finally:
                pack = None
                free(device)
        # label, compile, bf16, loss, switch
        variants = [("compiled", True, False, "fused", ())] if arch in args.compile else []
        if arch in args.compile and args.loss_forms:
            variants += [("compiled, one-hot loss", True, False, "one-hot", ()),
                         ("compiled, F.cross_entropy", True, False, "F.cross_entropy", ())]
        for option, (module, flag, on, off) in SWITCHES.items():
            if arch in args.compile and getattr(args, option):
                variants += [(f"compiled, {label}", True, False, "fused", (module, flag, value))
                             for label, value in ((on, True), (off, False))]
        if arch in args.compile and args.scan_ceiling and arch in SCAN_STAND_INS:
            variants += [(f"{'bf16 mixer, ' * bf16}compiled, scan stand-in (a ceiling, not a model)", True, bf16,
                          "fused", SCAN_STAND_INS[arch]) for bf16 in [False] + [True] * (arch in args.bf16)]
        if arch in args.bf16:
            variants += [("bf16 mixer", False, True, "fused", ())] + (
                [("bf16 mixer, compiled", True, True, "fused", ())] if arch in args.compile else [])
        for label, comp, bf16, loss, switch in variants:
            sizes = fitted[-1:] if args.variant_packs is None else [n for n in args.variant_packs if n in fitted]
            for n in sizes + ([] if args.no_solo_variants else [1]):
                path = f"solo, {label}" if n == 1 else f"pack {n}, {label}"
                try:
                    with bf16_mixer(arch if bf16 else None):
                        if n == 1:
                            runner = Trainer(make_spec(args, arch), compile=comp)
                        else:
                            runner = Pack([make_spec(args, arch, seed=s, lr=1e-3 * (1 + s % 4)) for s in range(n)],
                                          ["-"] * n, compile=comp)
                    with step_form(loss, switch):    # compiled at the first timed call
                        row(path, n / time_steps(runner.train_step, device, 5, args.repeat))
                except Exception as e:  # noqa: BLE001  compile support varies; report, go on
                    print(f"| {arch} | {path} | failed: {type(e).__name__}: {str(e)[:80]} | | | |", flush=True)
                    traceback.print_exc()
                runner = None
                free(device)

if __name__ == "__main__":
    main()
