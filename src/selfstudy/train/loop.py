"""The one training loop: pretraining, finetuning and linear probes all run through :class:`Trainer`.

What it does, per optimizer step:

1. takes the next ``batch_size`` indices of this epoch's permutation (an epoch is a real pass over the
   data; a fresh permutation per epoch from an explicit, seeded ``torch.Generator``; the last partial
   batch is dropped) and gathers those rows of every data tensor, already on the device;
2. sets every parameter group's learning rate from the paper's schedule (:mod:`.schedule`);
3. calls ``step_fn(batch)`` under autocast (``bf16``/``fp16``) and back-propagates its ``"loss"``;
4. clips gradients if asked, steps the optimizer (through a ``GradScaler`` for ``fp16``);
5. every ``checkpoint_every`` steps and at the end writes ``out_dir/last.pt`` atomically: model,
   optimizer, scaler, position, every random state and any extra state objects.

Rerunning the same command resumes from ``last.pt`` and ends with the same weights as a run that was
never interrupted (bitwise on CPU in fp32): the permutation of the interrupted epoch is regenerated
from the generator state saved at its start, and every other random state is restored.

Callbacks (:class:`Callback` subclasses) hook into the run; one of them may end it early with
:meth:`Trainer.stop`, optionally after an annealing tail, and the run then ends as a planned one does
(final checkpoint, ``on_train_end``, barrier).

A non-finite loss stops training with :class:`TrainingDiverged`, naming the step; the loop checks
before every checkpoint it writes, so ``last.pt`` only ever holds finite weights. Losses are read back
from the device every ``sync_every`` steps (not every step, so a GPU is not stalled).

``out_dir/log.jsonl`` gets one JSON object per epoch (epoch, step, lr, mean of every scalar the step
returned, images/s, evaluation results). The epoch records also live in the checkpoint; on resume the
log is rewritten from them, so an epoch is never logged twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

from selfstudy.config import Config, option
from selfstudy.core import distributed
from selfstudy.core.constants import PRECISIONS
from selfstudy.core.device import autocast, autocast_dtype
from selfstudy.core.io import atomic_write_text
from selfstudy.errors import UserError
from selfstudy.train.allocator import retain_freed_memory
from selfstudy.train.checkpoint import (capture_rng, check_compatible, load_checkpoint, restore_rng,
                                        save_checkpoint)
from selfstudy.train.schedule import warmup_linear, warmup_steps

OPTIMIZERS = ("adam", "adamw", "sgd")
CHECKPOINT_FORMAT = 1
#: TrainConfig fields that do not change what a run computes, so a resumed run may change them.
_NOT_IDENTITY = ("threads", "checkpoint_every")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig(Config):
    """How to train. Defaults are the paper's (docs/PAPER.md §4.5, §6.1).

    Length: give ``epochs`` (real passes over the data, may be fractional) *or* ``steps``. Note that
    the paper's "epoch" was a fixed block of 50,000 samples (docs/PAPER.md §6.2), not a pass; here an epoch
    is always a pass over the training tensors. The resulting step count is then clamped to
    ``[min_steps, max_steps]`` (useful for tiny labelled subsets, where a pass is a single step).

    Warm-up: ``warmup_epochs`` passes of linear warm-up from 0 to ``lr``, capped at
    ``warmup_max_fraction`` of the run (so a run shorter than ``warmup_epochs / warmup_max_fraction``
    passes warms up for that fraction of its steps instead), then linear decay to ``final_lr`` at the
    last step.

    ``batch_size`` is the global batch: with several processes each takes ``batch_size / world``.
    ``weight_decay`` is Adam's L2 penalty for ``adam`` (the paper's), decoupled for ``adamw``.
    ``precision``: ``fp32``; ``bf16`` autocast (CPU or CUDA; opt-in on CPU, where it is faster on
    recent cores but changes the numbers); ``fp16`` autocast with loss scaling (CUDA only).
    ``checkpoint_every`` is in steps (0: only at the end). ``threads``: torch's intra-op threads; if
    unset, ``$SELFSTUDY_THREADS``; if that is unset too, torch's default.
    """

    config_name: ClassVar[str] = "train config"

    epochs: float | None = option(None, gt=0)
    steps: int | None = option(None, gt=0)
    min_steps: int = option(0, ge=0)
    max_steps: int | None = option(None, ge=1)
    batch_size: int = option(256, gt=0)
    lr: float = option(1e-3, ge=0)
    final_lr: float = option(1e-6, ge=0)
    weight_decay: float = option(1e-4, ge=0)
    betas: tuple[float, float] = option((0.8, 0.999), ge=0, lt=1, allowed="two numbers in [0, 1), e.g. (0.8, 0.999)")
    eps: float = option(1e-8, ge=0)
    sgd_momentum: float = option(0.9, ge=0)
    warmup_epochs: float = option(5.0, ge=0)
    warmup_max_fraction: float = option(0.1, ge=0, le=1)
    optimizer: str = option("adam", choices=OPTIMIZERS, style="choice", allowed=", ".join(OPTIMIZERS))
    precision: str = option("fp32", choices=PRECISIONS, style="choice", allowed=", ".join(PRECISIONS))
    channels_last: bool = False
    grad_clip: float | None = option(None, gt=0)
    checkpoint_every: int = option(500, ge=0, allowed="an integer >= 0 (0: only at the end)")
    seed: int = option(0, ge=0)
    threads: int | None = option(None, gt=0)

    def check(self) -> None:
        """Exactly one of ``epochs`` and ``steps``; ``max_steps`` no smaller than ``min_steps``."""
        if (self.epochs is None) == (self.steps is None):
            raise UserError(f"train config: give exactly one of epochs (passes over the data) or steps; "
                            f"got epochs={self.epochs!r}, steps={self.steps!r}")
        self.require(self.max_steps is None or self.max_steps >= max(1, self.min_steps), "max_steps",
                     f"an integer >= max(1, min_steps={self.min_steps}) or empty")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps in the run for ``steps_per_epoch`` batches per pass."""
        total = self.steps if self.steps is not None else max(1, int(round(self.epochs * steps_per_epoch)))
        total = max(total, self.min_steps)
        return min(total, self.max_steps) if self.max_steps is not None else total

    def identity(self) -> dict:
        """The fields that decide what the run computes (compared when resuming)."""
        d = dataclasses.asdict(self)
        for name in _NOT_IDENTITY:
            d.pop(name)
        return d


def resolve_threads(cfg_threads: int | None) -> int | None:
    """``cfg_threads``, else ``$SELFSTUDY_THREADS``, else None (torch's default). Validated."""
    if cfg_threads is not None:
        return cfg_threads
    env = os.environ.get("SELFSTUDY_THREADS", "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise UserError(f"SELFSTUDY_THREADS={env!r} is not allowed; it must be a positive integer")
    return int(env)


def _seed_for(seed: int, stream: int, rank: int) -> int:
    # Distinct, reproducible 63-bit seeds per (purpose, rank); avoids Python's randomised str hashing.
    return (seed * 0x9E3779B1 + stream * 0x85EBCA77 + rank * 0xC2B2AE3D) % (2 ** 63)


class Callback:
    """Hooks into :meth:`Trainer.run`: subclass and override what you need (each does nothing here).

    For every optimizer step, in this order: :meth:`after_optimizer_step` (before any checkpoint, so
    what it changes is saved with the step), the step's checkpoint if one is due, :meth:`on_step_end`;
    at the end of an epoch :meth:`on_epoch_end`; once, after the final checkpoint, :meth:`on_train_end`.

    To end a run early a hook calls :meth:`Trainer.stop`; the run then ends like a planned one. Raising
    from a hook aborts the run instead (the last checkpoint stays, and rerunning resumes from it).
    """

    def after_optimizer_step(self, trainer: "Trainer", step: int) -> None:
        """Right after optimizer step ``step`` (1-based count of steps done), before any checkpoint:
        where MoCo's key encoder and BYOL's target network take their moving-average update."""

    def on_step_end(self, trainer: "Trainer", step: int, outputs: Mapping[str, Any]) -> None:
        """After optimizer step ``step`` and any checkpoint it triggers; ``outputs`` is what
        ``step_fn`` returned."""

    def on_epoch_end(self, trainer: "Trainer", record: Mapping[str, Any]) -> None:
        """After an epoch's log record is written."""

    def on_train_end(self, trainer: "Trainer") -> None:
        """After the final checkpoint, whether the run used its whole plan or was stopped."""


class AfterStep(Callback):
    """Calls ``fn(steps_done, total_steps)`` right after every optimizer step (a pretraining method's
    :meth:`~selfstudy.methods.base.Method.after_step`)."""

    def __init__(self, fn: Callable[[int, int], None]):
        self.fn = fn

    def after_optimizer_step(self, trainer: "Trainer", step: int) -> None:
        self.fn(step, trainer.total_steps)


class Trainer:
    """Train ``module`` on tensors ``data`` by calling ``step_fn`` on batches.

    Args:
        module: the model; its parameters (or ``param_groups``) are optimised. Put it on the data's
            device first. Under ``torchrun`` it is wrapped in ``DistributedDataParallel``
            (:attr:`model`); :attr:`module` stays the bare one.
        cfg: a :class:`TrainConfig` (validated here).
        data: name -> tensor, all with the same first dimension N, all on the training device (images
            typically uint8 NHWC). A batch is ``{name: tensor[idx]}`` plus ``"index"`` (``idx``:
            int64 (B,) positions in these tensors, e.g. rows of CMC's memory bank) and
            ``"generator"`` (a ``torch.Generator`` on the device, seeded, for the step's random draws
            such as augmentation). The names ``index`` and ``generator`` are therefore reserved.
        step_fn: ``batch -> dict`` with ``"loss"`` (a scalar tensor); every other scalar tensor or
            number in the dict is averaged over the epoch and logged. Default: ``self.model(batch)``
            (which lets DDP's gradient hooks fire). It is responsible for converting inputs, e.g.
            to channels_last when ``cfg.channels_last`` (the module is converted here).
        out_dir: where ``last.pt`` and ``log.jsonl`` go; ``None`` trains without files or resume.
        param_groups: optimizer groups (``{"params": [...], "lr": peak, "final_lr": ..,
            "weight_decay": ..}``); missing keys come from ``cfg``; each group follows the schedule
            between its own peak and final rate. Default: all trainable parameters of ``module``.
        eval_fn: ``module -> dict`` of numbers, run under ``torch.no_grad`` with the module in eval
            mode every ``eval_every`` epochs and after the last step; results join the epoch record.
        callbacks: :class:`Callback` instances (anything else is a ``TypeError``).
        extra_state: name -> object with ``state_dict()``/``load_state_dict()`` saved in checkpoints.
        identity: plain values naming what is trained (backbone, method, dataset hash...); a
            checkpoint in ``out_dir`` with a different identity or config raises :class:`UserError`.
        progress: show a tqdm bar (only when stderr is a terminal, and only on rank 0).
        sync_every: read losses back from the device (progress bar, NaN check) every this many steps.
        find_unused_parameters: passed to ``DistributedDataParallel``.

    ``total_steps`` is the planned length, which the learning-rate schedule spans; :attr:`end_step` is
    where the run ends: the plan, or earlier after :meth:`stop`.
    """

    def __init__(self, module: nn.Module, cfg: TrainConfig, data: Mapping[str, torch.Tensor],
                 step_fn: Callable[[dict], Mapping[str, Any]] | None = None, *,
                 out_dir: str | os.PathLike | None = None,
                 param_groups: Sequence[Mapping[str, Any]] | None = None,
                 eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
                 eval_every: int | None = None,
                 callbacks: Sequence[Callback] = (),
                 extra_state: Mapping[str, Any] | None = None,
                 identity: Mapping[str, Any] | None = None,
                 progress: bool = True,
                 desc: str = "train",
                 sync_every: int = 10,
                 find_unused_parameters: bool = False):
        self.cfg = cfg.validate()
        if not data:
            raise UserError("nothing to train on: the data dict is empty")
        reserved = sorted({"index", "generator"} & set(data))
        if reserved:
            raise ValueError(f"data must not hold {reserved}: the Trainer sets batch['index'] (positions "
                             f"in the data tensors) and batch['generator']; drop load_split's 'index'")
        sizes = {name: len(t) for name, t in data.items()}
        if len(set(sizes.values())) != 1:
            raise UserError(f"data tensors differ in length: {sizes}")
        self.data = dict(data)
        self.num_samples = next(iter(sizes.values()))
        self.device = next(iter(self.data.values())).device
        self.module = module
        self.dist = distributed.current()
        if self.cfg.batch_size % self.dist.world:
            raise UserError(f"batch_size {self.cfg.batch_size} must be divisible by the number of "
                            f"processes ({self.dist.world})")
        self.steps_per_epoch = self.num_samples // self.cfg.batch_size
        if self.steps_per_epoch < 1:
            raise UserError(f"batch_size {self.cfg.batch_size} is larger than the {self.num_samples} "
                            f"training samples; use batch_size <= {self.num_samples}")
        self.total_steps = self.cfg.total_steps(self.steps_per_epoch)
        self.warmup = warmup_steps(self.cfg.warmup_epochs, self.steps_per_epoch, self.total_steps,
                                   self.cfg.warmup_max_fraction)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.eval_fn, self.eval_every = eval_fn, eval_every
        if eval_every is not None and not (isinstance(eval_every, int) and eval_every > 0):
            raise UserError(f"eval_every={eval_every!r} is not allowed; it must be an integer > 0 or None")
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be selfstudy.train.loop.Callback instances, got "
                                f"{type(cb).__name__}")
        self.extra_state = dict(extra_state or {})
        self.identity = {"train": self.cfg.identity(), "num_samples": self.num_samples,
                         "world": self.dist.world, **dict(identity or {})}
        self.progress = progress
        self.desc = desc
        self.sync_every = max(1, int(sync_every))

        threads = resolve_threads(self.cfg.threads)
        if threads is not None:
            torch.set_num_threads(threads)
        if self.device.type == "cpu":
            retain_freed_memory()  # no page faults on every step's activations (see .allocator)
        self._setup_precision()
        if self.cfg.channels_last:
            self.module.to(memory_format=torch.channels_last)
        self.model = self._wrap(module, find_unused_parameters)
        self.step_fn = step_fn if step_fn is not None else (lambda batch: self.model(batch))
        self.optimizer = self._build_optimizer(param_groups)
        self.scaler = torch.amp.GradScaler("cuda") if self.cfg.precision == "fp16" else None

        # Two streams of randomness: the epoch permutations (identical on every rank, so the ranks
        # split one permutation) and the step draws (different per rank), on the data's device.
        self.perm_gen = torch.Generator().manual_seed(_seed_for(self.cfg.seed, 1, 0))
        self.step_gen = torch.Generator(device=self.device).manual_seed(
            _seed_for(self.cfg.seed, 2, self.dist.rank))

        self.step = 0          # optimizer steps done
        self.end_step = self.total_steps  # where the run ends: the plan, or earlier after stop()
        self._tail_start: int | None = None  # first step of the annealing tail after stop(anneal_steps)
        self.epoch = 0         # epochs finished
        self.pos = 0           # batches done in the current epoch
        self.history: list[dict] = []
        self._perm: torch.Tensor | None = None
        self._perm_state: torch.Tensor | None = None
        self._reset_epoch_stats()
        self._pending: list[tuple[int, dict[str, torch.Tensor]]] = []
        self._last_outputs = None
        self._t0 = time.perf_counter()
        self._saved_step = -1
        self._saved_mark: tuple | None = None

    # ----------------------------------------------------------------------------------------- setup
    def _setup_precision(self) -> None:
        p, kind = self.cfg.precision, self.device.type
        if p == "fp16" and kind != "cuda":
            raise UserError("precision fp16 needs a CUDA device (it relies on loss scaling); "
                            "on a CPU use bf16 or fp32")
        if p == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("precision bf16 is not supported by this GPU; use fp16 or fp32")
        self.autocast_dtype = autocast_dtype(p)

    def _wrap(self, module: nn.Module, find_unused: bool) -> nn.Module:
        if self.dist.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # No per-forward broadcast of rank 0's buffers: it would overwrite the other ranks' updates of
        # shared state (CMC's banks, MoCo's queue, kept equal by all-gathered updates instead) and
        # send whole banks every step. BatchNorm statistics are made equal once, at the end.
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused,
                                       broadcast_buffers=False)

    def _build_optimizer(self, param_groups) -> torch.optim.Optimizer:
        cfg = self.cfg
        if param_groups is None:
            param_groups = [{"params": [p for p in self.module.parameters() if p.requires_grad]}]
        groups = []
        for g in param_groups:
            g = dict(g)
            g["params"] = list(g["params"])
            g["peak_lr"] = float(g.pop("lr", cfg.lr))
            g.setdefault("final_lr", cfg.final_lr)
            g.setdefault("weight_decay", cfg.weight_decay)
            g["lr"] = 0.0
            groups.append(g)
        if not any(g["params"] for g in groups):
            raise UserError("nothing to train: the module has no trainable parameters")
        if cfg.optimizer == "adam":
            return torch.optim.Adam(groups, betas=cfg.betas, eps=cfg.eps)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, betas=cfg.betas, eps=cfg.eps)
        return torch.optim.SGD(groups, momentum=cfg.sgd_momentum, nesterov=cfg.sgd_momentum > 0)

    def _reset_epoch_stats(self) -> None:
        self._sums: dict[str, float] = {}
        self._count = 0
        self._seconds = 0.0

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / "last.pt" if self.out_dir is not None else None

    @property
    def log_path(self) -> Path | None:
        return self.out_dir / "log.jsonl" if self.out_dir is not None else None

    @property
    def memory_format(self) -> torch.memory_format:
        """The memory format inputs should have (``channels_last`` if the config asks for it)."""
        return torch.channels_last if self.cfg.channels_last else torch.contiguous_format

    @property
    def lr(self) -> float:
        """The current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def stopped_early(self) -> bool:
        """Whether :meth:`stop` moved the end before the planned ``total_steps``."""
        return self.end_step < self.total_steps

    def stop(self, anneal_steps: int = 0) -> None:
        """End the run early: after ``anneal_steps`` more optimizer steps, over which every parameter
        group's learning rate falls linearly from the rate it has now to its final rate (reached on the
        last of them); 0 ends the run after the current step.

        The run then ends as a planned one does: the final checkpoint (which records the new end, so a
        rerun does not train on), ``on_train_end`` and the barrier. When the plan ends first, nothing
        changes: its own schedule anneals by then. A second call changes nothing. Under ``torchrun``
        every rank must call it at the same step.
        """
        end = self.step + max(0, int(anneal_steps))
        if self.stopped_early or end >= self.total_steps:
            return
        self.end_step = end
        if end > self.step:
            self._tail_start = self.step
            for g in self.optimizer.param_groups:
                g["tail_from"] = g["lr"]

    def _lr(self, group: Mapping[str, Any]) -> float:
        """The learning rate of ``group`` for the step about to be taken (``self.step``, 0-based)."""
        if self._tail_start is None:
            return warmup_linear(self.step, self.total_steps, self.warmup, group["peak_lr"], group["final_lr"])
        frac = (self.step - self._tail_start + 1) / (self.end_step - self._tail_start)
        return group["tail_from"] + (group["final_lr"] - group["tail_from"]) * frac

    # ------------------------------------------------------------------------------------ the loop
    def run(self) -> list[dict]:
        """Train (or resume) to :attr:`end_step`; return the per-epoch records."""
        if self.out_dir is not None and self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.checkpoint_path is not None and self.checkpoint_path.is_file()
        if resumed:
            self._load(self.checkpoint_path)
        if self.log_path is not None and self.dist.is_main:
            # A log line written after the checkpoint we resume from would be repeated: start the
            # log again from the records the checkpoint holds.
            atomic_write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in self.history))
        self.module.train()
        bar = self._progress_bar()
        try:
            while self.step < self.end_step:
                if self.pos == 0:
                    self._begin_epoch()
                self._train_step()
                for cb in self.callbacks:
                    cb.after_optimizer_step(self, self.step)
                if self.step % self.sync_every == 0:
                    self._sync(bar)
                if self.pos == self.steps_per_epoch or self.step == self.end_step:
                    self._end_epoch(bar)
                if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                    self._paused(self.save)
                outputs, self._last_outputs = self._last_outputs, None
                for cb in self.callbacks:
                    cb.on_step_end(self, self.step, outputs)
                if self.pos > 0 and self.step == self.end_step:  # stop() ended the run mid-epoch
                    self._end_epoch(bar)
            # DDP leaves each rank with the BatchNorm statistics of its own last batch.
            distributed.broadcast_buffers(self.module)
            if self._saved_mark != self._mark():
                self.save()
            for cb in self.callbacks:
                cb.on_train_end(self)
        finally:
            if bar is not None:
                bar.close()
        distributed.barrier()
        return self.history

    def _paused(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` without counting its time as training time (for images/s)."""
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self._t0 += time.perf_counter() - start

    def _begin_epoch(self) -> None:
        self._t0 = time.perf_counter()
        self._perm_state = self.perm_gen.get_state()
        self._perm = torch.randperm(self.num_samples, generator=self.perm_gen)

    def _train_step(self) -> None:
        cfg, B = self.cfg, self.cfg.batch_size
        idx = self._perm[self.pos * B:(self.pos + 1) * B]
        idx = distributed.shard(idx, self.dist.rank, self.dist.world).to(self.device, non_blocking=True)
        batch = {name: t[idx] for name, t in self.data.items()}
        batch["index"] = idx
        batch["generator"] = self.step_gen

        for g in self.optimizer.param_groups:
            g["lr"] = self._lr(g)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.cfg.precision, self.device):
            outputs = self.step_fn(batch)
        if not isinstance(outputs, Mapping) or "loss" not in outputs:
            raise TypeError("step_fn must return a dict with a 'loss' tensor")
        loss = outputs["loss"]
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if cfg.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.optimizer.step()
        self.step += 1
        self.pos += 1
        self._pending.append((self.step, _scalars(outputs)))
        self._last_outputs = outputs

    def _sync(self, bar=None) -> None:
        """Read pending step scalars back from the device, stop on a non-finite loss, accumulate."""
        if not self._pending:
            return
        names = sorted({k for _, s in self._pending for k in s})
        rows = []
        for _, s in self._pending:
            rows.append(torch.stack([s[k].detach().float().reshape(()) if k in s
                                     else torch.tensor(float("nan"), device=s["loss"].device)
                                     for k in names]))
        values = torch.stack(rows).cpu().tolist()
        li = names.index("loss")
        for (step, s), row in zip(self._pending, values):
            if not math.isfinite(row[li]):
                self._pending = []
                where = (f"; the last good checkpoint, {self.checkpoint_path} (step {self._saved_step}), "
                         f"is intact" if self._saved_step > 0 else "")
                raise TrainingDiverged(
                    f"training diverged: the loss is {row[li]} at step {step} of {self.total_steps} "
                    f"(epoch {self.epoch + 1}){where}; lower the learning rate (lr=...) or use fp32")
            for k, v in zip(names, row):
                if k in s:
                    self._sums[k] = self._sums.get(k, 0.0) + v
            self._count += 1
        self._pending = []
        if bar is not None:
            n = max(1, self._count)
            rate = self._count * self.cfg.batch_size / max(self._seconds_so_far(), 1e-9)
            bar.set_postfix(loss=f"{self._sums.get('loss', 0.0) / n:.4g}", img_s=f"{rate:.0f}", refresh=False)
            bar.update(self.step - bar.n)

    def _seconds_so_far(self) -> float:
        return self._seconds + time.perf_counter() - self._t0

    def _end_epoch(self, bar) -> None:
        self._sync(bar)
        self._seconds += time.perf_counter() - self._t0
        n = max(1, self._count)
        record = {"epoch": self.epoch + 1, "step": self.step, "lr": self.lr}
        if self.pos != self.steps_per_epoch:
            record["partial"] = True
        record.update({k: v / n for k, v in sorted(self._sums.items())})
        record["images_per_s"] = self._count * self.cfg.batch_size / max(self._seconds, 1e-9)
        record["seconds"] = self._seconds
        last = self.step == self.end_step
        due = self.eval_every is not None and (self.epoch + 1) % self.eval_every == 0
        if self.eval_fn is not None and (last or due):
            record.update(self.evaluate())
        self.history.append(record)
        if self.log_path is not None and self.dist.is_main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        self.epoch += 1
        self.pos = 0
        self._reset_epoch_stats()
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)

    def evaluate(self) -> dict:
        """Run ``eval_fn`` on the bare module in eval mode without gradients; return its numbers."""
        self.module.eval()
        try:
            with torch.no_grad():
                out = dict(self.eval_fn(self.module))
        finally:
            self.module.train()
        return {k: (float(v) if isinstance(v, (int, float, torch.Tensor)) else v) for k, v in out.items()}

    def _progress_bar(self):
        if not (self.progress and self.dist.is_main and sys.stderr.isatty()):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=self.step, desc=self.desc, unit="step",
                    dynamic_ncols=True, leave=False, file=sys.stderr)

    # ---------------------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this process stands (rank 0's view, plus every
        rank's random state)."""
        self._sync()
        perm_state = self._perm_state if self.pos > 0 else self.perm_gen.get_state()
        rng = distributed.gather_objects(capture_rng({"step": self.step_gen}))
        return {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "position": {"step": self.step, "epoch": self.epoch, "pos": self.pos,
                         "total_steps": self.total_steps, "end_step": self.end_step,
                         "tail_start": self._tail_start},
            "perm_state": perm_state,
            "rng": rng,
            "epoch_stats": {"sums": dict(self._sums), "count": self._count,
                            "seconds": self._seconds_so_far() if self.pos > 0 else self._seconds},
            "history": list(self.history),
            "extra": {name: obj.state_dict() for name, obj in self.extra_state.items()},
        }

    def save(self) -> Path | None:
        """Write ``last.pt`` now (rank 0 only; every rank must call it, for the RNG gather)."""
        if self.checkpoint_path is None:
            return None
        state = self.state_dict()
        self._saved_step, self._saved_mark = self.step, self._mark()
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.checkpoint_path, state)

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path)
        if state.get("format") != CHECKPOINT_FORMAT or "identity" not in state:
            raise UserError(f"{path} is not a selfstudy training checkpoint; "
                            f"use another output folder or delete it")
        check_compatible(path, state["identity"], self.identity)
        try:
            self.module.load_state_dict(state["model"])
        except RuntimeError as e:
            raise UserError(f"{path} holds weights of a different model "
                            f"({str(e).splitlines()[0][:160]}); use another output folder") from None
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise UserError(f"{path} holds optimizer state that does not fit this model ({e}); "
                            f"use another output folder") from None
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        pos = state["position"]
        self.step, self.epoch, self.pos = pos["step"], pos["epoch"], pos["pos"]
        self.end_step, self._tail_start = pos.get("end_step", self.total_steps), pos.get("tail_start")
        self.perm_gen.set_state(state["perm_state"])
        if self.pos > 0:
            self._begin_epoch()
        rng = state["rng"]
        restore_rng(rng[self.dist.rank if len(rng) > self.dist.rank else 0], {"step": self.step_gen})
        stats = state["epoch_stats"]
        self._sums, self._count, self._seconds = dict(stats["sums"]), stats["count"], stats["seconds"]
        self.history = list(state["history"])
        missing = sorted(set(self.extra_state) - set(state["extra"]))
        if missing:
            raise UserError(f"{path} has no saved state for {', '.join(missing)}; use another output folder")
        for name, obj in self.extra_state.items():
            obj.load_state_dict(state["extra"][name])
        self._saved_step, self._saved_mark = self.step, self._mark()

    def _mark(self) -> tuple[int, int, int]:
        """What a checkpoint must hold to be current: the step, the end and the logged epochs."""
        return self.step, self.end_step, len(self.history)


def _scalars(outputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The one-element tensors and plain numbers of a step's outputs, detached (for logging)."""
    out = {}
    loss = outputs["loss"]
    for k, v in outputs.items():
        if isinstance(v, torch.Tensor):
            if v.numel() == 1:
                out[k] = v.detach()
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = torch.tensor(float(v), device=loss.device)
    return out
