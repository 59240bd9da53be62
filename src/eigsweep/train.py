"""Train one run and write its result file.

AdamW, linear warm-up + cosine decay, gradient clipping, periodic evaluation, early stop at a target
accuracy. The batch order is a pure function of (seed, step), so a run resumed from a checkpoint continues
exactly as an uninterrupted one would (bit-identical on CPU).

The step is built for small models on a big GPU: the training data lives on the device and batches are
drawn there, token tasks compute logits, and the model's last block, at labelled positions only (MQAR labels
64 of 512; model.LAST_BLOCK_AT_POSITIONS), CUDA runs
under bf16 autocast (see model.BF16_MIXERS) with a fused AdamW, and the loop never waits for the device:
losses stay on it and are read at evaluations, spectrum steps and checkpoints, where a non-finite loss marks
the run diverged from its first non-finite step. ``EIGSWEEP_COMPILE=1`` (or ``compile=True``) wraps the
loss in torch.compile; it changes speed, not results, so it is no part of the run's configuration.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from eigsweep import cross_entropy, registry, spectrum
from eigsweep.config import RunSpec
from eigsweep.jobs import load_checkpoint_or_none, save_checkpoint
from eigsweep.model import build_model
from eigsweep.results import build_result, write_atomic
from eigsweep.tasks.base import IGNORE

log = logging.getLogger("eigsweep.train")


class Preempted(Exception):
    """Training stopped on request after writing a checkpoint; resubmit to resume."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def setup_device(tc) -> torch.device:
    """The device of a run's (or pack's) train settings, with its CPU threads and TF32 matmuls on CUDA set."""
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    device = resolve_device(tc.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def compile_requested(compile: bool | None) -> bool:
    return os.environ.get("EIGSWEEP_COMPILE", "0") not in ("", "0") if compile is None else compile


def compiled(fn):
    """torch.compile with static shapes. A second Pack or Trainer of another model in one process (a sweep's
    packs, a benchmark's models) recompiles the same method for new shapes; Dynamo's automatic dynamic shapes
    would then make sizes symbolic, which vmap's batched tensors cannot handle ("RuntimeError when making fake
    tensor call"). ``EIGSWEEP_COMPILE_MODE`` passes torch.compile's ``mode`` (e.g. max-autotune-no-cudagraphs:
    Inductor times its own matmul kernels against cuBLAS, minutes of compiling); unset: the default mode.

    torch 2.11's Inductor failed an assertion in its loop reordering after fusion (``reorder_loops_by_dep_pair``)
    for the output-gate packs of softmax and linear attention on an H200; they then trained eagerly at a third
    of the speed. Compiled without that reordering they ran at 200 and 172 steps/s
    (``benchmarks/compile_probe.py``). So an Inductor error at a call turns the reordering off for the process and
    compiles again; a failed compile has run nothing, so the retried call is the same call."""
    from torch._inductor.exc import InductorError

    graph = torch.compile(fn, dynamic=False, mode=os.environ.get("EIGSWEEP_COMPILE_MODE") or None)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return graph(*args, **kwargs)
        except InductorError:
            if not torch._inductor.config.loop_ordering_after_fusion:
                raise
            log.warning("Inductor failed to compile %s; compiling again without loop reordering after fusion",
                        getattr(fn, "__qualname__", fn), exc_info=True)
            torch._inductor.config.loop_ordering_after_fusion = False
            return graph(*args, **kwargs)
    return call


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class BatchOrder:
    """Batch indices (members, batch) at any step for one seed per member: epochs are seeded permutations
    drawn on the device, one per epoch (not per step), so any step is reproducible from (seed, step)."""

    def __init__(self, seeds: list[int], batch_size: int, n: int, device):
        self.seeds, self.batch_size, self.n, self.device = list(seeds), batch_size, n, torch.device(device)
        self.perms = {}   # epoch -> (members, n), the last two epochs kept

    def epoch(self, e: int) -> torch.Tensor:
        if e not in self.perms:
            g = torch.Generator(self.device)
            rows = []
            for s in self.seeds:
                g.manual_seed(s * 1_000_003 + e)
                rows.append(torch.randperm(self.n, generator=g, device=self.device))
            self.perms = {k: v for k, v in self.perms.items() if k == e - 1}
            self.perms[e] = torch.stack(rows)
        return self.perms[e]

    def indices(self, step: int) -> torch.Tensor:
        start, parts, need = step * self.batch_size, [], self.batch_size
        while need:
            e, offset = divmod(start, self.n)
            part = self.epoch(e)[:, offset : offset + need]
            parts.append(part)
            start, need = start + part.shape[1], need - part.shape[1]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def labelled_positions(y: torch.Tensor):
    """Token targets (N, L) → (positions (N, K), labels (N, K)): the K = max labelled-per-row positions of
    each row (unlabelled fill positions carry −100), so the head sees K positions instead of L. Sequence
    targets (N,), and token targets labelled at over half the positions → (None, y)."""
    if y.dim() != 2:
        return None, y
    mask = y != IGNORE
    k = max(1, int(mask.sum(1).max()))
    if 2 * k > y.shape[1]:   # mostly labelled (language modelling): all positions, no index tensor
        return None, y
    positions = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :k]
    return positions, y.gather(1, positions)


def flat_logits(logits: torch.Tensor) -> torch.Tensor:
    """(…, classes) → (N, classes), half-precision logits in float32 for the cross-entropy."""
    logits = logits.reshape(-1, logits.shape[-1])
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


ONE_HOT_LOSS_WHEN_COMPILED = True   # loss_fn's compiled form (False: F.cross_entropy there too; for benchmarks)
FUSED_LOSS_ON_CUDA = True           # head_loss by the fused cross_entropy.ce_rows on CUDA (False: for benchmarks)


def head_loss(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """loss_fn of the head's logits F.linear(h, weight, bias) (h: the model's output with head=False). On CUDA
    with Triton, the fused per-row op (cross_entropy.ce_rows) on the matmul h·weightᵀ (bf16 under autocast) and
    the bias instead: one pass over it forward, one backward; the biased logits are never written."""
    if not (FUSED_LOSS_ON_CUDA and cross_entropy.runs_fused(h)):
        return loss_fn(F.linear(h, weight, bias), y)
    z = F.linear(h, weight)
    y = y.reshape(-1)
    nll, _ = cross_entropy.ce_rows(z.reshape(-1, z.shape[-1]), bias, y)
    return nll.sum() / (y != IGNORE).sum()         # all ignored: 0/0 = NaN, as F.cross_entropy


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled targets (−100: ignored). Under torch.compile the same value is
    written with a one-hot comparison instead of F.cross_entropy's gather: Inductor then makes the loss one
    reduction over the classes and its gradient one element-wise pass (softmax − one-hot), where the gather's
    backward first writes a zero tensor the size of the logits and scatters into it (a pack of 32 at the
    paper's MQAR size: 1 G logits). Eagerly the comparison would be that large tensor, so eager code keeps
    F.cross_entropy. The two agree in float64 (tests/test_training.py)."""
    logits, y = flat_logits(logits), y.reshape(-1)
    if not (ONE_HOT_LOSS_WHEN_COMPILED and torch.compiler.is_compiling()):
        return F.cross_entropy(logits, y, ignore_index=IGNORE)
    onehot = torch.arange(logits.shape[-1], device=logits.device) == y[:, None]   # (N, classes), never stored
    nll = torch.logsumexp(logits, -1) - torch.where(onehot, logits, 0).sum(-1)
    valid = y != IGNORE
    return torch.where(valid, nll, 0).sum() / valid.sum()      # all ignored: 0/0 = NaN, as F.cross_entropy


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def eval_sums(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(summed loss, correct, labelled count) of one batch, as one tensor (no host synchronisation)."""
    logits, y = flat_logits(logits), y.reshape(-1)
    mask = y != IGNORE
    loss = F.cross_entropy(logits, y, ignore_index=IGNORE, reduction="sum")
    return torch.stack([loss, ((logits.argmax(-1) == y) & mask).sum().to(loss.dtype), mask.sum().to(loss.dtype)])


def eval_result(sums) -> dict:
    loss_sum, correct, total = (float(v) for v in sums)
    loss = loss_sum / max(total, 1)
    return dict(acc=correct / max(total, 1), loss=loss, ppl=math.exp(min(loss, 700.0)))


@torch.no_grad()
def evaluate(model, x, y, batch_size: int, device, positions=None) -> dict:
    """Accuracy over labelled positions (token targets) or sequences, mean loss, perplexity; ``positions``
    (from labelled_positions) restricts the logits to labelled positions, with the same result."""
    model.eval()
    sums = 0
    with autocast(torch.device(device)):
        for s in range(0, len(x), batch_size):
            pos = None if positions is None else positions[s : s + batch_size].to(device)
            sums = sums + eval_sums(model(x[s : s + batch_size].to(device), pos), y[s : s + batch_size].to(device))
    model.train()
    return eval_result(sums.tolist())


class TaskTensors:
    """A task's splits on the device, token targets as (positions, labels) at labelled positions."""

    def __init__(self, spec: RunSpec, device, dtype=None):
        task = registry.task_class(spec.task_name)(**{k: v for k, v in spec.task_params.items() if k != "name"})
        task.check_available()
        self.data = d = task.load()
        fix = (lambda t: t.to(dtype) if dtype is not None and t.is_floating_point() else t)
        n_test = min(len(d.test_x), spec.eval.max_test_examples)
        self.train_x = fix(d.train_x).to(device)
        self.train_pos, self.train_y = labelled_positions(d.train_y)
        self.train_pos = None if self.train_pos is None else self.train_pos.to(device)
        self.train_y = self.train_y.to(device)
        # evaluation splits: name -> (x, positions or None, labels) on the device; "val" where the task has one
        self.splits = {}
        for name, x, y in (("test", d.test_x, d.test_y), ("val", d.val_x, d.val_y)):
            if x is not None:
                pos, labels = labelled_positions(y[:n_test])
                self.splits[name] = (fix(x[:n_test]).to(device), None if pos is None else pos.to(device),
                                     labels.to(device))
        self.eval_batch = fix(d.test_x[: spec.eval.n_samples])          # fixed batch for the spectra

    @property
    def stop_split(self) -> str:
        """The split whose accuracy decides the early stop (and, in the figures, the learning rate)."""
        return "val" if "val" in self.splits else "test"

    def batch(self, idx: torch.Tensor):
        pos = None if self.train_pos is None else self.train_pos[idx]
        return self.train_x[idx], pos, self.train_y[idx]


def new_curve() -> dict:
    """A run's curves: training loss per step; accuracy, loss and perplexity per evaluation (val_*: only
    filled for tasks with a validation split)."""
    return dict(train_step=[], train_loss=[], eval_step=[], test_acc=[], test_loss=[], test_ppl=[], val_acc=[],
                val_loss=[])


def record_eval(curve: dict, step: int, results: dict[str, dict]) -> None:
    """Append one evaluation ({split: evaluate()'s dict}) to ``curve``."""
    curve["eval_step"].append(step)
    for split, r in results.items():
        curve.setdefault(f"{split}_acc", []).append(r["acc"])
        curve.setdefault(f"{split}_loss", []).append(r["loss"])
        if split == "test":
            curve["test_ppl"].append(r["ppl"])


def new_model(spec: RunSpec, data, device, dtype=None):
    """The run's model, initialised from its seed (what a pack member starts from, too)."""
    torch.manual_seed(spec.seed)
    model = build_model(spec.arch, vocab_size=data.vocab_size, n_outputs=data.n_outputs, target=data.target,
                        input_dim=data.input_dim, max_len=data.train_x.shape[1], pad_id=data.pad_id, cfg=spec.model)
    return model.to(device=device, dtype=dtype)


def no_decay_names(model) -> set[str]:
    """Parameters without weight decay: 1-D ones and those a module lists in ``no_weight_decay``."""
    exempt = {id(getattr(m, n)) for m in model.modules() for n in getattr(m, "no_weight_decay", ())}
    return {name for name, p in model.named_parameters() if p.dim() < 2 or id(p) in exempt}


class Trainer:
    def __init__(self, spec: RunSpec, checkpoint_path: str | Path | None = None, dtype: torch.dtype | None = None,
                 compile: bool | None = None):
        """``dtype``: train in this dtype (tests use float64); None: the model's own (float32)."""
        self.spec = spec
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.stop_requested = False
        tc = spec.train
        self.device = setup_device(tc)
        self.tensors = TaskTensors(spec, self.device, dtype)
        self.data = self.tensors.data
        self.eval_batch = self.tensors.eval_batch
        self.model = new_model(spec, self.data, self.device, dtype)
        exempt = no_decay_names(self.model)
        named = list(self.model.named_parameters())
        self.opt = torch.optim.AdamW(
            [dict(params=[p for n, p in named if n not in exempt], weight_decay=tc.weight_decay),
             dict(params=[p for n, p in named if n in exempt], weight_decay=0.0)],
            lr=spec.lr, betas=tuple(tc.betas), fused=self.device.type == "cuda")
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, tc.warmup_steps, tc.steps, tc.min_lr_ratio))
        self.order = BatchOrder([spec.seed], tc.batch_size, len(self.tensors.train_x), self.device)
        self.loss = compiled(self.batch_loss) if compile_requested(compile) else self.batch_loss
        self.pending = []     # losses on the device since the last read
        self.step = 0
        self.curve = new_curve()
        self.stages, self.during = {}, {}
        self.status = "ok"
        self.done = False
        self.elapsed = 0.0
        if self.checkpoint_path and self.checkpoint_path.exists():
            self.load_checkpoint()

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return dict(model=self.model.state_dict(), opt=self.opt.state_dict(), sched=self.sched.state_dict(),
                    step=self.step, curve=self.curve, stages=self.stages, during=self.during,
                    status=self.status, done=self.done, elapsed=self.elapsed, config_hash=self.spec.config_hash())

    def save_checkpoint(self) -> None:
        if self.checkpoint_path:
            save_checkpoint(self.state_dict(), self.checkpoint_path)

    def load_checkpoint(self) -> None:
        state = load_checkpoint_or_none(self.checkpoint_path, self.device, self.spec.config_hash())
        if state is None:   # missing, corrupt (moved aside) or for another configuration: start from scratch
            return
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        for k in ("step", "curve", "stages", "during", "status", "done", "elapsed"):
            setattr(self, k, state[k])
        log.info("resumed %s from step %d", self.spec.run_id, self.step)

    # -- training ------------------------------------------------------------------------------
    def measure(self):
        return spectrum.measure(self.model, self.eval_batch)

    def evaluate(self) -> dict:
        """Evaluate on every split, record it; the early-stop split's result (validation where there is one)."""
        results = {name: evaluate(self.model, x, y, self.spec.eval.batch_size, self.device, pos)
                   for name, (x, pos, y) in self.tensors.splits.items()}
        record_eval(self.curve, self.step, results)
        return results[self.tensors.stop_split]

    def batch_loss(self, x, positions, y):
        with autocast(self.device):
            return head_loss(self.model(x, positions, head=False), self.model.head.weight, self.model.head.bias, y)

    def train_step(self) -> None:
        """One optimisation step, queued on the device (nothing here waits for it)."""
        torch.compiler.cudagraph_mark_step_begin()   # a new step (EIGSWEEP_COMPILE_MODE=reduce-overhead: CUDA graphs)
        x, positions, y = self.tensors.batch(self.order.indices(self.step)[0])
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x, positions, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.train.grad_clip)
        self.opt.step()
        self.sched.step()
        self.step += 1
        self.pending.append(loss.detach().clone())   # a CUDA graph's output is overwritten at its next replay

    def read_losses(self) -> bool:
        """Move the queued losses into the curve (one synchronisation); False if the run diverged, which it
        did at its first non-finite loss: the step count and curve then end just before it."""
        if not self.pending:
            return self.status == "ok"
        values = torch.stack(self.pending).tolist()
        first = self.step - len(values)
        self.pending = []
        for i, v in enumerate(values):
            if not math.isfinite(v):
                log.warning("%s diverged at step %d (loss %s)", self.spec.run_id, first + i, v)
                self.status, self.done, self.step = "diverged", True, first + i
                return False
            self.curve["train_step"].append(first + i + 1)
            self.curve["train_loss"].append(v)
        return True

    def train(self) -> None:
        tc, spec = self.spec.train, self.spec
        spectrum_steps = set(tc.spectrum_steps)
        if "init" not in self.stages:
            self.stages["init"] = self.during[0] = self.measure()
        start = time.perf_counter() - self.elapsed
        self.model.train()
        while not self.done and self.step < tc.steps:
            if self.stop_requested:
                if not self.read_losses():
                    break
                self.elapsed = time.perf_counter() - start
                self.save_checkpoint()
                raise Preempted(f"{spec.run_id}: stopped at step {self.step}, checkpoint saved")
            self.train_step()
            evaluating = self.step % tc.eval_every == 0 or self.step == tc.steps
            checkpointing = tc.checkpoint_every and self.step % tc.checkpoint_every == 0
            if not (evaluating or checkpointing or self.step in spectrum_steps):
                continue
            if not self.read_losses():
                break
            if self.step in spectrum_steps:
                self.during[self.step] = self.measure()
            if evaluating:
                r = self.evaluate()
                log.info("%s step %d loss %.4f %s acc %.4f", spec.run_id, self.step, self.curve["train_loss"][-1],
                         self.tensors.stop_split, r["acc"])
                if r["acc"] >= tc.target_acc:
                    log.info("%s reached target accuracy %.3f at step %d", spec.run_id, tc.target_acc, self.step)
                    self.done = True
            if checkpointing:
                self.elapsed = time.perf_counter() - start
                self.save_checkpoint()
        self.read_losses()
        self.done = True
        if self.status == "ok" and (not self.curve["eval_step"] or self.curve["eval_step"][-1] != self.step):
            self.evaluate()
        if "trained" not in self.stages:
            self.stages["trained"] = self.measure() if self.status == "ok" else nan_like(self.stages["init"])
            if self.status == "ok":
                self.during[self.step] = self.stages["trained"]
        self.elapsed = time.perf_counter() - start

    def result(self):
        curve = dict(self.curve, steps_done=self.step)
        return build_result(self.spec, self.stages, self.during, curve, self.status, self.elapsed, str(self.device))


def nan_like(ds):
    """The spectrum of a diverged model: same shape, all NaN (counts zero)."""
    out = ds.copy(deep=True)
    for v in out.data_vars:
        if out[v].dtype.kind == "f":
            out[v][...] = 0.0 if "count" in v or v.startswith("n_") else float("nan")
    return out


def train_run(spec: RunSpec, out_path: str | Path, checkpoint_path: str | Path | None = None, on_start=None,
              **trainer_options):
    """Train ``spec`` and write its result file atomically to ``out_path``; returns the Dataset.

    ``on_start(trainer)``, if given, is called before training (eigsweep.slurm uses it to route the Slurm
    preemption signal to ``trainer.stop_requested``)."""
    trainer = Trainer(spec, checkpoint_path, **trainer_options)
    if on_start is not None:
        on_start(trainer)
    trainer.train()
    ds = trainer.result()
    write_atomic(ds, out_path)
    if trainer.checkpoint_path:
        trainer.checkpoint_path.unlink(missing_ok=True)
    return ds
