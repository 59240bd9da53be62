"""Train a pack of runs as one batched computation, writing each member's result file as it finishes.

Members share architecture, task, model shape and training settings (``packs.pack_key``); each has its own
seed (its initialisation is the solo run's), data order, learning rate and schedule. Their parameters are
stacked along a leading member dimension (torch.func.stack_module_state) and the SAME model code runs for
all of them through functional_call + vmap. Gradient clipping, AdamW and divergence are per member: a member
whose loss turns non-finite, or that reached its target accuracy, stops changing (its update is masked), and
its NaN never reaches the others. A member's result file is exactly its solo run's (spectra measured from its
own parameters loaded into a solo model), plus the attributes ``pack`` and ``pack_members``.

Once half of the stacked members have finished, the pack drops them from the stacked tensors (``compact``):
the rest train on at the cost of fewer members (a torch.compile'd pack recompiles once per halving). ``slots``
maps each stacked row to its member.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import time
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from eigsweep import registry, spectrum
from eigsweep.config import RunSpec
from eigsweep.jobs import load_checkpoint_or_none, save_checkpoint
from eigsweep.packs import pack_key
from eigsweep.results import build_result, write_atomic
from eigsweep.train import (BatchOrder, Preempted, TaskTensors, autocast, compile_requested, compiled,
                            eval_result, eval_sums, head_loss, lr_factor, nan_like, new_curve, new_model,
                            no_decay_names, record_eval, setup_device, train_run)

log = logging.getLogger("eigsweep.pack")
# attention kernels used under vmap: cuDNN's is left out (on an H200 its vmapped backward gave NaN gradients
# from the first step, and torch.compile cannot trace it)
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

__all__ = ["train_pack", "pack_key", "Pack", "StackedAdamW"]


class StackedAdamW:
    """AdamW (decoupled weight decay, bias-corrected, as torch.optim.AdamW) over stacked parameters
    (members, ...) with a learning rate per member and an ``active`` mask: masked members do not change,
    their moments and step counts included. Foreach ops over the parameter list."""

    def __init__(self, params: list[torch.Tensor], weight_decay: list[float], betas=(0.9, 0.999), eps=1e-8):
        self.params, self.weight_decay, self.betas, self.eps = params, weight_decay, tuple(betas), eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(params[0].shape[0], dtype=params[0].dtype, device=params[0].device)

    @torch.no_grad()
    def step(self, lr: torch.Tensor, active: torch.Tensor) -> None:
        """``lr`` and ``active`` (members,); gradients of inactive members are ignored (they may be NaN)."""
        beta1, beta2 = self.betas
        on = active.to(lr.dtype)
        has = [i for i, p in enumerate(self.params) if p.grad is not None]      # torch.optim skips the others
        params, wds = [self.params[i] for i in has], [self.weight_decay[i] for i in has]
        exp_avg, exp_avg_sq = [self.exp_avg[i] for i in has], [self.exp_avg_sq[i] for i in has]
        self.steps += on
        t = self.steps.clamp(min=1)
        step_size = on * lr / (1 - beta1 ** t)
        bc2_sqrt = (1 - beta2 ** t).sqrt()
        shape = lambda v, p: v.view(-1, *[1] * (p.dim() - 1))   # noqa: E731  (members,) -> broadcastable to p
        grads = [torch.where(shape(active, p), p.grad, 0) for p in params]
        # p *= 1 - lr·wd;  m += (1-β1)(g - m);  v = β2 v + (1-β2) g²  (β = 1, weight 0 for inactive members)
        torch._foreach_mul_(params, [1 - shape(on * lr * wd, p) for p, wd in zip(params, wds)])
        torch._foreach_add_(exp_avg, torch._foreach_mul(torch._foreach_sub(grads, exp_avg),
                                                        [shape(on * (1 - beta1), p) for p in params]))
        torch._foreach_mul_(exp_avg_sq, [shape(1 - on * (1 - beta2), p) for p in params])
        torch._foreach_add_(exp_avg_sq, torch._foreach_mul(torch._foreach_mul(grads, grads),
                                                           [shape(on * (1 - beta2), p) for p in params]))
        denom = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(exp_avg_sq),
                                                      [shape(bc2_sqrt, p) for p in params]), self.eps)
        torch._foreach_sub_(params, torch._foreach_mul(torch._foreach_div(exp_avg, denom),
                                                       [shape(step_size, p) for p in params]))

    def state_dict(self) -> dict:
        return dict(exp_avg=self.exp_avg, exp_avg_sq=self.exp_avg_sq, steps=self.steps)

    def load_state_dict(self, state: dict) -> None:
        for mine, theirs in ((self.exp_avg, state["exp_avg"]), (self.exp_avg_sq, state["exp_avg_sq"])):
            for a, b in zip(mine, theirs):
                a.copy_(b)
        self.steps.copy_(state["steps"])


def clip_per_member(grads: list[torch.Tensor], max_norm: float) -> None:
    """torch.nn.utils.clip_grad_norm_ for each member separately (norm over all of its parameters)."""
    sq = sum(g.pow(2).reshape(len(g), -1).sum(1) for g in grads)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [coef.view(-1, *[1] * (g.dim() - 1)) for g in grads])


class Member:
    """What a member keeps outside the stacked tensors: its curve, spectra, status, result."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.step = 0
        self.curve = new_curve()
        self.stages, self.during = {}, {}
        self.status, self.done, self.result, self.elapsed = "ok", False, None, 0.0


class Pack:
    def __init__(self, specs: list[RunSpec], outs: list, checkpoint_path=None, dtype: torch.dtype | None = None,
                 compile: bool | None = None):
        keys = {pack_key(s) for s in specs}
        if len(keys) != 1:
            raise ValueError(f"runs of different pack keys cannot share a pack: {sorted(keys)}")
        if len({s.run_id for s in specs}) != len(specs):
            raise ValueError("a pack holds each run once")
        self.specs, self.outs = list(specs), [Path(o) for o in outs]
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.stop_requested = False
        tc = self.tc = specs[0].train
        self.device = setup_device(tc)
        self.tensors = TaskTensors(specs[0], self.device, dtype)
        models = [new_model(s, self.tensors.data, self.device, dtype) for s in specs]
        self.solo = models[0]                       # member parameters are loaded into it to measure spectra
        self.base = copy.deepcopy(models[0]).to("meta")
        params, self.buffers = stack_module_state(models)
        del models
        self.names = list(params)
        self.params = [params[n].detach().requires_grad_() for n in self.names]
        exempt = no_decay_names(self.solo)
        self.opt = StackedAdamW(self.params, [0.0 if n in exempt else tc.weight_decay for n in self.names],
                                betas=tc.betas)
        self.lr = torch.tensor([[s.lr * lr_factor(t, s.train.warmup_steps, s.train.steps, s.train.min_lr_ratio)
                                 for t in range(tc.steps)] for s in specs],
                               dtype=self.params[0].dtype).T.contiguous().to(self.device)   # (steps, members)
        self.order = BatchOrder([s.seed for s in specs], tc.batch_size, len(self.tensors.train_x), self.device)
        self.active = torch.ones(len(specs), dtype=torch.bool, device=self.device)
        self.diverged_at = torch.full((len(specs),), -1, dtype=torch.long, device=self.device)
        self.slots = list(range(len(specs)))       # stacked row -> member index
        self.members = [Member(s) for s in specs]
        self.name = hashlib.sha256(" ".join(s.run_id for s in specs).encode()).hexdigest()[:12]
        use_compile = compile_requested(compile)
        self.loss = compiled(self.batch_loss) if use_compile else self.batch_loss
        self.update = compiled(self.clip_and_step) if use_compile else self.clip_and_step
        self.eval_sums = compiled(self.chunk_eval_sums) if use_compile else self.chunk_eval_sums
        self.pending = []
        self.step = 0
        self.elapsed = 0.0
        if self.checkpoint_path and self.checkpoint_path.exists():
            self.load_checkpoint()

    # -- the batched computation ----------------------------------------------------------------
    def forward(self, params, buffers, x, positions, head=True):
        return functional_call(self.base, (dict(zip(self.names, params)), buffers), (x, positions, head))

    def member_loss(self, params, buffers, x, positions, y):
        p = dict(zip(self.names, params))
        return head_loss(self.forward(params, buffers, x, positions, head=False), p["head.weight"], p["head.bias"], y)

    def batch_loss(self, x, positions, y):
        in_dims = (0, 0, 0, None if positions is None else 0, 0)
        with autocast(self.device), sdpa_kernel(SDPA_BACKENDS):
            return vmap(self.member_loss, in_dims=in_dims)(self.params, self.buffers, x, positions, y)

    def train_step(self) -> None:
        """One step of every member, queued on the device; members that stopped are computed but masked."""
        torch.compiler.cudagraph_mark_step_begin()   # a new step (EIGSWEEP_COMPILE_MODE=reduce-overhead: CUDA graphs)
        x, positions, y = self.tensors.batch(self.order.indices(self.step))
        for p in self.params:
            p.grad = None
        losses = self.loss(x, positions, y)
        losses.sum().backward()
        finite = torch.isfinite(losses.detach())
        self.diverged_at = torch.where(self.active & ~finite & (self.diverged_at < 0), self.step, self.diverged_at)
        self.active = self.active & finite
        self.update(self.lr[self.step], self.active)
        self.step += 1
        self.pending.append(losses.detach().clone())   # a CUDA graph's output is overwritten at its next replay

    @torch.no_grad()
    def clip_and_step(self, lr: torch.Tensor, active: torch.Tensor) -> None:
        """Per-member gradient clipping and AdamW (one fused graph under torch.compile: the stacked update is
        dozens of small broadcasting ops otherwise). A NaN gradient stays in its own member, whose update is
        masked from now on."""
        clip_per_member([p.grad for p in self.params if p.grad is not None], self.tc.grad_clip)
        self.opt.step(lr, active)

    def chunk_eval_sums(self, x, positions, y):
        """(rows, 3): each stacked row's loss sum, correct and labelled counts (eval_sums) on one chunk of an
        evaluation split, one vmapped forward (torch.compile'd with the pack: evaluations were ≈ 12% of an eager
        Mamba-2 pack's time)."""
        logits = vmap(self.forward, in_dims=(0, 0, None, None))(self.params, self.buffers, x, positions)
        return vmap(eval_sums, in_dims=(0, None))(logits, y)

    @torch.no_grad()
    def evaluate_all(self) -> list[dict[str, dict]]:
        """Per stacked row (``slots``), {split: accuracy, loss, perplexity} on every evaluation split."""
        bs = max(1, self.specs[0].eval.batch_size // len(self.slots))
        out = [{} for _ in self.slots]
        with autocast(self.device), sdpa_kernel(SDPA_BACKENDS):
            for split, (x, positions, y) in self.tensors.splits.items():
                sums = 0
                for s in range(0, len(x), bs):
                    pos = None if positions is None else positions[s : s + bs]
                    sums = sums + self.eval_sums(x[s : s + bs], pos, y[s : s + bs])
                for i, row in enumerate(sums.tolist()):
                    out[i][split] = eval_result(row)
        return out

    def load_member(self, i: int):
        """Member i's parameters in the solo model."""
        r = self.slots.index(i)
        with torch.no_grad():
            state = {n: p[r] for n, p in zip(self.names, self.params)}
            state.update({n: b[r] for n, b in self.buffers.items()})
            keys = self.solo.state_dict().keys()              # non-persistent buffers are not loaded
            self.solo.load_state_dict({k: v for k, v in state.items() if k in keys})
        return self.solo

    def measure(self, i: int):
        return spectrum.measure(self.load_member(i), self.tensors.eval_batch)

    # -- bookkeeping at read points -------------------------------------------------------------
    def running(self) -> list[int]:
        return [i for i, m in enumerate(self.members) if not m.done]

    def compact(self, rows: list[int]) -> None:
        """Keep only the stacked rows ``rows`` (members still training): parameters, buffers, optimiser state,
        learning rates, masks and batch order shrink to them; nothing of theirs changes."""
        assert not self.pending, "read the queued losses first"
        idx = torch.tensor(rows, device=self.device)
        with torch.no_grad():
            self.params = [p.detach()[idx].clone().requires_grad_() for p in self.params]
            self.buffers = {n: b[idx].clone() for n, b in self.buffers.items()}
        old = self.opt
        self.opt = StackedAdamW(self.params, old.weight_decay, betas=old.betas, eps=old.eps)
        self.opt.load_state_dict(dict(exp_avg=[t[idx] for t in old.exp_avg],
                                      exp_avg_sq=[t[idx] for t in old.exp_avg_sq], steps=old.steps[idx]))
        self.lr = self.lr[:, idx].contiguous()
        self.active, self.diverged_at = self.active[idx], self.diverged_at[idx]
        self.slots = [self.slots[r] for r in rows]
        self.order = BatchOrder([self.specs[i].seed for i in self.slots], self.tc.batch_size,
                                len(self.tensors.train_x), self.device)
        log.info("pack %s: %d members left in the stacked computation", self.name, len(rows))

    def compact_if_half_done(self) -> None:
        running = set(self.running())
        rows = [r for r, i in enumerate(self.slots) if i in running]
        if rows and len(rows) <= len(self.slots) // 2:
            self.compact(rows)

    @property
    def done(self) -> bool:
        """Training is over (every member finished, or the last step reached), as Trainer.done: eigsweep.slurm
        then lets a preemption signal pass, finishing being quicker than requeueing."""
        return not self.running() or self.step >= self.tc.steps

    def read_losses(self) -> None:
        """Move the queued losses into the members' curves (one synchronisation) and finish the members that
        diverged, at their first non-finite step."""
        if not self.pending:
            return
        losses = torch.stack(self.pending, dim=1).tolist()       # (stacked rows, pending)
        diverged_at = self.diverged_at.tolist()
        first = self.step - len(self.pending)
        self.pending = []
        running = set(self.running())
        for r, i in enumerate(self.slots):
            if i not in running:
                continue
            m, end = self.members[i], self.step if diverged_at[r] < 0 else diverged_at[r]
            m.curve["train_step"].extend(range(first + 1, end + 1))
            m.curve["train_loss"].extend(losses[r][: end - first])
            m.step = end
            if diverged_at[r] >= 0:
                log.warning("%s diverged at step %d", m.spec.run_id, end)
                m.status = "diverged"
                self.finish(i)

    def finish(self, i: int) -> None:
        """Member i stops changing; measure its trained spectrum and write its result file."""
        m = self.members[i]
        m.done = True
        self.active[self.slots.index(i)] = False
        m.elapsed = time.perf_counter() - self.started
        if m.status == "ok":
            m.stages["trained"] = m.during[m.step] = self.measure(i)
        else:
            m.stages["trained"] = nan_like(m.stages["init"])
        m.result = build_result(m.spec, m.stages, m.during, dict(m.curve, steps_done=m.step), m.status, m.elapsed,
                                str(self.device))
        m.result.attrs.update(pack=self.name, pack_members=" ".join(s.run_id for s in self.specs))
        write_atomic(m.result, self.outs[i])

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        members = [{k: getattr(m, k) for k in ("step", "curve", "stages", "during", "status", "done", "result",
                                               "elapsed")} for m in self.members]
        return dict(params=[p.detach() for p in self.params], buffers=self.buffers, opt=self.opt.state_dict(),
                    active=self.active, diverged_at=self.diverged_at, step=self.step, members=members,
                    elapsed=self.elapsed, config_hash=self.config_hash(), slots=self.slots)

    def config_hash(self) -> str:
        """The pack's identity: its members' config hashes, in order."""
        return ",".join(s.config_hash() for s in self.specs)

    def save_checkpoint(self) -> None:
        if self.checkpoint_path:
            save_checkpoint(self.state_dict(), self.checkpoint_path)

    def load_checkpoint(self) -> None:
        state = load_checkpoint_or_none(self.checkpoint_path, self.device, self.config_hash())
        if state is None:   # missing, corrupt (moved aside) or for another pack: start from scratch
            return
        if state.get("slots", self.slots) != self.slots:   # saved after compacting: compact the same way
            self.compact(state["slots"])
        with torch.no_grad():
            for p, q in zip(self.params, state["params"]):
                p.copy_(q)
            for n, b in state["buffers"].items():
                self.buffers[n].copy_(b)
        self.opt.load_state_dict(state["opt"])
        self.active, self.diverged_at = state["active"], state["diverged_at"]
        self.step, self.elapsed = state["step"], state["elapsed"]
        for m, ms in zip(self.members, state["members"]):
            for k, v in ms.items():
                setattr(m, k, v)
        log.info("resumed pack %s from step %d", self.name, self.step)

    # -- the loop -------------------------------------------------------------------------------
    def train(self) -> list:
        tc = self.tc
        spectrum_steps = set(tc.spectrum_steps)
        self.started = time.perf_counter() - self.elapsed
        for i in self.running():
            if "init" not in self.members[i].stages:
                self.members[i].stages["init"] = self.members[i].during[0] = self.measure(i)
        while self.running() and self.step < tc.steps:
            if self.stop_requested:
                self.read_losses()
                self.elapsed = time.perf_counter() - self.started
                self.save_checkpoint()
                raise Preempted(f"pack {self.name}: stopped at step {self.step}, checkpoint saved")
            self.train_step()
            evaluating = self.step % tc.eval_every == 0 or self.step == tc.steps
            checkpointing = tc.checkpoint_every and self.step % tc.checkpoint_every == 0
            if not (evaluating or checkpointing or self.step in spectrum_steps):
                continue
            self.read_losses()
            if self.step in spectrum_steps:
                for i in self.running():
                    self.members[i].during[self.step] = self.measure(i)
            if evaluating and self.running():
                results = self.evaluate_all()
                split = self.tensors.stop_split
                results = {i: results[r] for r, i in enumerate(self.slots)}      # by member
                running = self.running()
                log.info("pack %s step %d/%d: train loss %s; %s loss %s; %s acc %s", self.name, self.step, tc.steps,
                         " ".join(f"{self.members[i].curve['train_loss'][-1]:.4f}" for i in running), split,
                         " ".join(f"{results[i][split]['loss']:.4f}" for i in running), split,
                         " ".join(f"{results[i][split]['acc']:.4f}" for i in running))
                for i in running:
                    record_eval(self.members[i].curve, self.members[i].step, results[i])
                    if results[i][split]["acc"] >= self.specs[i].train.target_acc:
                        log.info("%s reached target accuracy at step %d", self.specs[i].run_id, self.step)
                        self.finish(i)
            self.compact_if_half_done()
            if checkpointing:
                self.elapsed = time.perf_counter() - self.started
                self.save_checkpoint()
        self.read_losses()
        for i in self.running():   # reached the last step
            self.finish(i)
        if self.checkpoint_path:
            self.checkpoint_path.unlink(missing_ok=True)
        return [m.result for m in self.members]


def train_pack(specs: list[RunSpec], outs: list, checkpoint=None, on_start=None, **options) -> list:
    """Train ``specs`` (one pack key) as one pack, writing each member's result file to ``outs`` as it
    finishes; returns their Datasets. A mixer marked ``packable=False`` trains its runs solo, one after the
    other (checkpoint ``<checkpoint>.<i>``), and so does a single run. ``on_start(pack)`` may route a
    preemption signal to ``pack.stop_requested``; ``options``: dtype, compile (True: the loss and the update run
    as torch.compile'd graphs, 2-2.5x the eager packs on an H200 after a compile of about half a minute; None: the
    EIGSWEEP_COMPILE environment variable decides; results are the same up to floating-point reordering)."""
    if len(specs) != len(outs):
        raise ValueError(f"{len(specs)} runs but {len(outs)} output paths")
    if len(specs) == 1 or not registry.mixer_info(specs[0].arch).packable:   # a pack of 1 is faster solo
        ckpt = (lambda i: f"{checkpoint}.{i}") if checkpoint else (lambda i: None)
        return [train_run(s, o, ckpt(i), on_start, **options) for i, (s, o) in enumerate(zip(specs, outs))]
    pack = Pack(specs, outs, checkpoint, **options)
    if on_start is not None:
        on_start(pack)
    return pack.train()
