"""The one Trainer for every model of the project (minGPT-style: small, with callbacks).

A model brings ``loss, logs = model.training_step(batch)``; the Trainer brings the rest:

* a budget in optimizer steps (``max_steps``; ``epochs`` bounds the passes if given), so a run
  is the same run on any machine: Adam with a warm-up + cosine schedule over those steps. A
  wall-clock cap (``max_minutes``) is only a user's option; a run it cut stops where it is and
  says so (``time_capped``), since its model then depends on the machine's speed;
* gradient clipping (on by default), bf16 autocast and channels_last where the hardware computes
  in bf16 natively (``precision="auto"``, the default; "fp32" switches both off, "bf16" forces
  them: emulated bf16 is far slower than fp32, docs/PERFORMANCE.md, "On a CPU without fast bf16");
* early stopping on the validation loss, the best weights kept in ``<name>.pt``;
* optionally an exponential moving average of the weights (``ema_decay``), which is what is
  validated, kept as the best weights and returned;
* resume: the full state (weights, optimizer, the CPU's and the device's RNG, history, time used) goes to
  ``<name>.last.pt`` after every epoch, and :meth:`Trainer.run` picks it up, so
  re-running a notebook never retrains what is done. Shuffling is seeded per
  epoch, so a resumed run sees the same batches as an uninterrupted one. A
  finished run removes its ``.last.pt``: only ``<name>.pt`` stays;
* a non-finite loss stops the run with the step that produced it, and so does a validation loss
  over ``DIVERGED`` times the lowest one so far (a finite blow-up); the last good checkpoint
  stays on disk;
* the data on the training device once per run: each batch is indexed there from the seeded
  order (the order a DataLoader over the same sampler would give, so the CPU trains the weights
  it did with one); losses and logs stay tensors between log points (``log_every`` steps), so a
  GPU is not made to wait for the host every step; a non-finite loss is found at the next log
  point and named with the step that made it;
* on CUDA, TF32 and cuDNN's autotuner in training (:func:`helpers.runtime.training_backends`),
  validation in fp32; ``deterministic=True`` takes deterministic kernels instead, so the same
  GPU trains the same weights (a CPU always does, for a given thread count);
* under ``torchrun`` (torch.distributed initialised): DistributedSampler, DDP,
  checkpoints and progress bars on rank 0 only. Every decision that ends or shapes a step
  (the time budget, the learning rate, a non-finite loss) is taken from numbers all ranks
  agree on, so no rank leaves a loop while the others wait for it in a collective: all of it
  in :class:`helpers.ranks.Ranks`, which is one process alone (world 1) without torchrun.

The command line and the torchrun start-up (``python -m helpers.cli``) live in helpers/cli.py.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .checkpoints import CheckpointError, load_checkpoint, model_spec, safe_load, save_checkpoint
from .ranks import Ranks
from .runtime import fork_rng, full_fp32, host_floats, pick_device, resolve_precision, rng_state, \
    set_rng_state, training_backends

# A validation loss this many times the lowest one of the run means it has diverged: a blow-up
# that stays finite (huge logits, say) passes the non-finite check and would otherwise train on,
# keep a diverged "best" checkpoint and hand it to sampling.
DIVERGED = 10.0


@dataclass
class TrainConfig:
    max_steps: int | None = None     # the budget: optimizer steps (the schedule runs over them)
    epochs: int | None = None        # upper bound on passes over the train set (None: steps only)
    max_minutes: float | None = None # optional wall-clock cap; a run it cuts is marked time_capped
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 100
    schedule: str = "cosine"         # "cosine" (to min_lr_ratio * lr) or "constant"
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 1.0    # max global grad norm; None turns clipping off
    precision: str = "auto"          # "auto" (bf16 where native, else fp32), "bf16" (autocast +
                                     # channels_last) or "fp32"
    channels_last: bool = True       # only used with 4-D image inputs
    patience: int | None = None      # epochs without val improvement before stopping
    min_delta: float = 0.0
    eval_every: int = 1              # epochs between validation passes
    curve_every: int | None = None   # also validate every this many steps (history "curve_step",
                                     # "curve_val_<key>"): a learning curve finer than epochs; the
                                     # training itself is unchanged
    ema_decay: float | None = None   # keep an exponential moving average of the weights (e.g. 0.999):
                                     # validation, the best checkpoint and the returned model use it
    seed: int = 0
    progress: bool = True            # tqdm bars
    log_every: int = 50              # steps between reads of the logged losses (each read waits for
                                     # the device); the history is the same for any value
    deterministic: bool = False      # CUDA: deterministic kernels, no autotuner (slower); the same
                                     # GPU then trains the same weights. No effect on a CPU.

    def as_dict(self) -> dict:
        return asdict(self)


EpochCallback = Callable[["Trainer", dict], None]


class Trainer:
    """Train ``model`` on ``train`` (a tuple of tensors, first dimension = examples), validate on ``val``.

    ``checkpoint`` is the path of the best weights (``artifacts/<profile>/<name>.pt``);
    the resumable state lives beside it as ``<name>.last.pt`` while the run is unfinished. ``data_fingerprint``
    and ``extra`` (e.g. ``{"image_size": 32}``) are stored and checked on resume.
    """

    def __init__(self, model: torch.nn.Module, train: Sequence[torch.Tensor], val: Sequence[torch.Tensor] | None,
                 config: TrainConfig, checkpoint: str | Path | None = None, *, data_fingerprint: str | None = None,
                 extra: dict | None = None, callbacks: Sequence[EpochCallback] = (),
                 device: torch.device | str | None = None):
        # device None: runtime.pick_device() (CUDA, then MPS, then CPU; $EMOJIVQ_DEVICE overrides)
        self.config = config
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = model.to(self.device)
        self.train_data = tuple(train)
        self.val_data = tuple(val) if val is not None else None
        self._on_device: dict[str, tuple] = {}   # the data sets, moved to the device on first use
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.data_fingerprint = data_fingerprint
        self.extra = dict(extra or {})
        self.callbacks = list(callbacks)
        self.history: dict[str, list] = {}
        self.epoch = 0          # epochs completed
        self.step = 0           # optimizer steps taken
        self.seconds = 0.0      # training time used (over resumes)
        self.best_val = math.inf
        self.lowest_val = math.inf   # of every validation, between epochs too (the divergence check)
        self.bad_epochs = 0
        self.stopped_early = False
        self.time_capped = False  # the wall-clock cap ended the run before its steps
        if config.max_steps is None and config.epochs is None:
            raise ValueError("give the run a budget: TrainConfig(max_steps=...) (or epochs=...)")
        for name, tensors in (("train", self.train_data), ("val", self.val_data or ())):
            if len({len(t) for t in tensors}) > 1:
                raise ValueError(f"the {name} tensors must have one length (examples), got {[len(t) for t in tensors]}")
        if config.log_every < 1:
            raise ValueError(f"log_every must be at least 1 step, not {config.log_every}")

        self.ranks = Ranks(self.device)
        self.precision = resolve_precision(config.precision, self.device)   # "bf16" or "fp32"
        self.bf16 = self.precision == "bf16"
        self.channels_last = self.bf16 and config.channels_last and self.train_data[0].dim() == 4
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=tuple(config.betas),
                                          weight_decay=config.weight_decay)
        self.average = WeightAverage(self.model, config.ema_decay) if config.ema_decay else NoAverage()
        self.net: torch.nn.Module = self.ranks.wrap(_Step(self.model))

    # ------------------------------------------------------------------ paths and state
    @property
    def last_path(self) -> Path | None:
        return self.checkpoint.with_suffix(".last.pt") if self.checkpoint is not None else None

    def _expect(self) -> dict:
        expect = {**model_spec(self.model), "data_fingerprint": self.data_fingerprint}
        expect.update(self.extra)
        return expect

    def _save(self, path: Path, *, completed: bool, averaged: bool = False) -> None:
        """Write the model (with ``averaged``: the weight average in its place) and the run's state;
        the average itself travels in ``extra`` so that a resumed run goes on with it."""
        if self.ranks.rank != 0 or path is None:
            return
        if averaged:
            with self.average.applied():
                return self._save(path, completed=completed)
        save_checkpoint(
            path, self.model, optimizer=self.optimizer, epoch=self.epoch, step=self.step,
            metrics={"best_val": self.best_val}, history=self.history, data_fingerprint=self.data_fingerprint,
            extra={**self.extra, "completed": completed, "seconds": self.seconds, "bad_epochs": self.bad_epochs,
                   "time_capped": self.time_capped,
                   "stopped_early": self.stopped_early, "rng_state": torch.get_rng_state(),
                   "device_rng_state": rng_state(self.device), "device": str(self.device),
                   "train_config": self.config.as_dict(), "precision": self.precision, **self.average.extra()})

    def _restore(self, ckpt: dict, *, with_optimizer: bool) -> None:
        self.model.load_state_dict(ckpt["state_dict"])
        if with_optimizer and ckpt.get("optimizer") is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.history = {k: list(v) for k, v in ckpt["history"].items()}
        self.best_val = float(ckpt["metrics"].get("best_val", math.inf))
        extra = ckpt["extra"]
        self.seconds = float(extra.get("seconds", 0.0))
        self.bad_epochs = int(extra.get("bad_epochs", 0))
        self.stopped_early = bool(extra.get("stopped_early", False))
        self.time_capped = bool(extra.get("time_capped", False))
        if "rng_state" in extra:
            torch.set_rng_state(extra["rng_state"])
        set_rng_state(extra.get("device_rng_state"), self.device)   # taken on this kind of device only
        if with_optimizer:
            self.average.resume(extra)

    # ------------------------------------------------------------------ the loop
    def run(self) -> torch.nn.Module:
        """Train, resume or load — whichever the checkpoints on disk call for — and return the
        model holding the best validation weights."""
        if self.checkpoint is not None and self.checkpoint.exists():
            best = self._load(self.checkpoint)
            if best["extra"].get("completed"):
                self._restore(best, with_optimizer=False)
                self._log(f"loaded finished run from {self.checkpoint} (epoch {self.epoch}); "
                          f"delete it to retrain{self._config_note(best)}")
                self._drop_last()   # one a finished run left behind before runs removed their own
                return self.model
        if self.last_path is not None and self.last_path.exists():
            last = self._load(self.last_path)
            self._restore(last, with_optimizer=True)
            self._log(f"resuming from {self.last_path} after epoch {self.epoch}{self._config_note(last)}")
        self.fit()
        return self.model

    def _config_note(self, ckpt: dict) -> str:
        """What differs between the training settings a checkpoint was made with and this run's
        (a budget edited since, a command-line run with its own steps): loading is still allowed,
        the log says so. The wall-clock cap, progress bars and curve points do not change a model."""
        stored = ckpt["extra"].get("train_config") or {}
        asked = self.config.as_dict()
        plain = lambda v: list(v) if isinstance(v, tuple) else v   # noqa: E731  tuples come back as lists
        differ = [f"{k} {stored[k]!r} (asked {asked[k]!r})" for k in asked
                  if k in stored and k not in ("max_minutes", "progress", "curve_every", "log_every")
                  and plain(stored[k]) != plain(asked[k])]
        return f" — it was made with other settings: {', '.join(differ)}" if differ else ""

    def _load(self, path) -> dict:
        try:
            return load_checkpoint(path, expect=self._expect())
        except CheckpointError as e:   # nothing is overwritten: say how to go on
            stale = " and ".join(str(p) for p in (self.checkpoint, self.last_path) if p is not None and p.exists())
            raise CheckpointError(f"{e} To train this model from scratch, delete {stale}; to use the "
                                  "checkpoint, go back to the settings and data it was made with.") from None

    def fit(self) -> dict:
        cfg = self.config
        start = time.perf_counter() - self.seconds
        steps_per_epoch = max(1, len(self.train_data[0]) // (cfg.batch_size * self.ranks.world))
        self.total_steps = min(s for s in (cfg.max_steps, cfg.epochs and cfg.epochs * steps_per_epoch)
                               if s is not None)
        while self.step < self.total_steps and not self.stopped_early and not self.time_capped:
            record = {"epoch": self.epoch + 1}
            t0 = time.perf_counter()
            # TF32 and the autotuner on CUDA (validation itself in fp32); callbacks run outside
            with training_backends(self.device, cfg.deterministic):
                record.update({f"train_{k}": v for k, v in self._train_epoch(start).items()})
                record["train_seconds"] = time.perf_counter() - t0
                record["step"] = self.step
                last = self.step >= self.total_steps or self.time_capped
                if self.val_data is not None and ((self.epoch + 1) % cfg.eval_every == 0 or last):
                    record.update({f"val_{k}": v for k, v in self.evaluate().items()})
                    self._check_diverged(record["val_loss"])
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            self.epoch += 1
            self.seconds = time.perf_counter() - start
            for key, value in record.items():
                self.history.setdefault(key, []).append(value)
            improved = self._track_best(record.get("val_loss", record["train_loss"]))
            if improved:
                self._save(self.checkpoint, completed=False, averaged=True)
            self._save(self.last_path, completed=False)
            for callback in self.callbacks:
                callback(self, record)
        self._finish()
        return self.history

    def _track_best(self, loss: float) -> bool:
        if loss < self.best_val - self.config.min_delta:
            self.best_val, self.bad_epochs = loss, 0
            return True
        self.bad_epochs += 1
        if self.config.patience is not None and self.bad_epochs >= self.config.patience:
            self.stopped_early = True
            self._log(f"early stop after epoch {self.epoch}: no val improvement for {self.bad_epochs} epochs")
        return False

    def _finish(self) -> None:
        """Put the best weights back into the model and mark the best checkpoint finished (without
        a checkpoint: the last weights, or their average)."""
        if self.checkpoint is None:
            self.average.copy_to_model()
            return
        self.ranks.barrier()
        if self.checkpoint.exists():
            best = safe_load(self.checkpoint)
            self.model.load_state_dict(best["state_dict"])
        self._save(self.checkpoint, completed=True)  # best weights, with the whole run's history
        self._drop_last()

    def _drop_last(self) -> None:
        """Remove ``<name>.last.pt``: once ``<name>.pt`` is marked finished, nothing resumes from it."""
        if self.ranks.rank == 0 and self.last_path is not None:
            self.last_path.unlink(missing_ok=True)

    def _out_of_time(self, start: float) -> bool:
        """Past the wall-clock cap, by the slowest rank's clock (``start``: ``time.perf_counter``)."""
        limit = self.config.max_minutes
        return limit is not None and self.ranks.max(time.perf_counter() - start) >= 60 * limit

    def _lr(self) -> float:
        cfg = self.config
        warmup = min(cfg.warmup_steps, max(1, self.total_steps // 10))   # short runs warm up for 10 %
        if self.step < warmup:
            return cfg.lr * (self.step + 1) / warmup
        if cfg.schedule == "constant":
            return cfg.lr
        progress = min(1.0, self.step / max(1, self.total_steps))
        floor = cfg.min_lr_ratio * cfg.lr
        return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))

    def _tensors(self, which: str) -> tuple:
        """The train or val tensors on the training device: moved there once per run (a few
        hundred MB at most), not a batch at a time."""
        if which not in self._on_device:
            data = self.train_data if which == "train" else self.val_data
            self._on_device[which] = tuple(t.to(self.device) for t in data)
        return self._on_device[which]

    def _batches(self, data: tuple, *, train: bool):
        """One pass over ``data`` (tensors on the device) in batches, as a DataLoader over the same
        sampler would give them: the last short batch dropped in training, unless it is the only
        one (fewer examples than a batch)."""
        # A DataLoader draws one number from the global generator when a pass starts (its workers'
        # seed); drawn here too, so that everything random after it (dropout, restarts, flips)
        # draws what it drew with one, and the same seed trains the same weights as it did.
        torch.empty((), dtype=torch.int64).random_()
        size, n = self.config.batch_size, len(data[0])
        order = self.ranks.order(n, train=train, seed=self.config.seed, epoch=self.epoch)
        drop_last = train and n >= size
        stop = len(order) - len(order) % size if drop_last else len(order)
        if order == list(range(n)):   # in order: slices, no copy
            for i in range(0, stop, size):
                yield tuple(t[i:i + size] for t in data)
            return
        index = torch.tensor(order, dtype=torch.long).to(self.device)
        for i in range(0, stop, size):
            rows = index[i:i + size]
            yield tuple(t.index_select(0, rows) for t in data)

    def _prepare(self, batch: Sequence[torch.Tensor]) -> tuple:
        out = []
        for t in batch:
            t = t.to(self.device, non_blocking=True)
            if self.channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            out.append(t)
        return tuple(out)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _train_epoch(self, start: float) -> dict:
        self.net.train()
        data = self._tensors("train")
        sums: dict[str, float] = {}
        count = 0
        pending = _Pending(self.step)   # the logs of the steps since the last read
        batches = self._batches(data, train=True)
        bar = self._bar(batches, f"epoch {self.epoch + 1} (step {self.step}/{self.total_steps})",
                        total=self.ranks.n_batches(len(data[0]), self.config.batch_size, train=True))
        if bar is not batches:
            # A progress bar (tqdm.auto) over a DataLoader started an iterator of its own when it
            # was built, and that drew one more number: drawn here too, so that a run with a bar
            # trains the weights it trained with one (the notebooks' results), and one without
            # the weights it trained without.
            torch.empty((), dtype=torch.int64).random_()
        try:
            for batch in bar:
                for group in self.optimizer.param_groups:
                    group["lr"] = self._lr()
                with self._autocast():
                    loss, logs = self.net(self._prepare(batch))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
                self.optimizer.step()
                self.average.update(self.step)
                self.step += 1
                count += 1
                pending.add(loss.detach(), {"loss": loss.detach(), **logs})
                curve = bool(self.config.curve_every) and self.step % self.config.curve_every == 0
                if curve or count % self.config.log_every == 0:   # a non-finite loss first, then validation
                    self._read(pending, sums, bar, count)
                if curve:
                    self._curve_point()
                if self.step >= self.total_steps:
                    break
                if self._out_of_time(start):
                    self.time_capped = True
                    self._log(f"the {self.config.max_minutes:g}-minute cap stopped training at step {self.step} "
                              f"of {self.total_steps}")
                    break
        except Exception:
            if self.ranks.alone:   # (a rank alone must not enter a collective)
                self._read(pending, sums, bar, count)   # a non-finite loss before the error is its cause
            raise
        self._read(pending, sums, bar, count)
        return self.ranks.mean({k: v / max(1, count) for k, v in sums.items()})

    def _read(self, pending: "_Pending", sums: dict, bar, count: int) -> None:
        """Bring the logs of the steps since the last read to the host (one copy per key), add them
        to the epoch's sums in step order, and stop the run at a non-finite loss: on every rank, with
        the step that produced it."""
        first = pending.first
        losses, values = pending.take()
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        if not self.ranks.all_finite(bad is None):
            where = self._last_good()
            here = f"{losses[bad]}" if bad is not None else "finite"
            step = first + (bad if bad is not None else len(losses) - 1) + 1
            raise FloatingPointError(
                f"non-finite loss ({self.ranks.which(here)}) at epoch {self.epoch + 1}, step {step}; training "
                f"stopped. Last good checkpoint: {where}. Try a lower lr or precision='fp32'.")
        for key, numbers in values.items():
            for value in numbers:
                sums[key] = sums.get(key, 0.0) + value
        if hasattr(bar, "set_postfix") and count and "loss" in sums:
            bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")

    def _curve_point(self) -> None:
        """Validate now and append the step and every val value to the history's ``curve_*`` lists.
        Training goes on as it would have without it: evaluation updates no statistics, and the one
        random number a pass draws at its start is taken from a forked generator."""
        if self.val_data is None:
            return
        with fork_rng(self.device):
            values = self.evaluate()
        self.net.train()
        for key, value in {"step": self.step, **{f"val_{k}": v for k, v in values.items()}}.items():
            self.history.setdefault(f"curve_{key}", []).append(value)
        self._check_diverged(values["loss"])

    def _check_diverged(self, val_loss: float) -> None:
        """Stop the run if ``val_loss`` is over ``DIVERGED`` times the lowest validation loss so far
        (the best checkpoint's after a resume). Every rank sees the same mean, so all stop."""
        lowest = min(self.lowest_val, self.best_val)
        if 0 < lowest < math.inf and val_loss > DIVERGED * lowest:
            raise FloatingPointError(
                f"training diverged: val loss {val_loss:.4g} at step {self.step} is over {DIVERGED:g}x the lowest "
                f"so far ({lowest:.4g}); training stopped. Last good checkpoint: {self._last_good()}. Try a lower lr.")
        self.lowest_val = min(self.lowest_val, val_loss)

    def _last_good(self) -> str:
        """Where a stopped run's last good state is, for its error message."""
        return str(self.last_path) if self.last_path is not None and self.last_path.exists() else "none yet"

    @torch.no_grad()
    def evaluate(self, data: Sequence[torch.Tensor] | None = None) -> dict:
        """Mean loss and logs over ``data`` (tensors, first dimension = examples; default: the
        validation set), weighted by batch size; of the weight average when the run keeps one. In
        fp32 (no TF32), whatever the training step allows: one learning curve, one precision."""
        if not self.average.in_model:
            with self.average.applied():
                return self.evaluate(data)
        if data is None:
            data = self._tensors("val")
        else:
            data = tuple(t.to(self.device) for t in getattr(data, "tensors", data))
        self.model.eval()
        sizes, pending = [], _Pending(0)
        with full_fp32(self.device):
            for batch in self._batches(data, train=False):
                batch = self._prepare(batch)
                with self._autocast():
                    loss, logs = self.model.training_step(batch)
                sizes.append(batch[0].shape[0])
                pending.add(loss.detach(), {"loss": loss.detach(), **logs})
        _, values = pending.take()
        n = sum(sizes)
        sums = {key: 0.0 for key in values}
        for key, numbers in values.items():
            for value, size in zip(numbers, sizes):
                sums[key] += value * size
        n, sums = self.ranks.total(n, sums)
        return {k: v / max(1, n) for k, v in sums.items()}

    def _bar(self, iterable, desc: str, total: int | None = None):
        if not (self.config.progress and self.ranks.rank == 0):
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, leave=False, total=total)

    def _log(self, message: str) -> None:
        if self.ranks.rank == 0:
            print(message, flush=True)


class WeightAverage:
    """An exponential moving average of a model's parameters (Polyak averaging): after each
    optimizer step, ``avg = d * avg + (1 - d) * weights`` with ``d = min(decay, (1 + step) / (10 +
    step))``, so that the first steps' random weights fade fast. Buffers (BatchNorm statistics,
    a VQ codebook, itself an EMA of the encoder's outputs) stay the model's own."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must lie between 0 and 1, not {decay}")
        self.decay = decay
        self.params = [p for p in model.parameters() if p.dtype.is_floating_point]
        self.shadow = [p.detach().clone() for p in self.params]
        self.in_model = False

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - d)

    @torch.no_grad()
    def _put(self, tensors: Sequence[torch.Tensor]) -> None:
        for p, t in zip(self.params, tensors):
            p.copy_(t)

    def copy_to_model(self) -> None:
        self._put(self.shadow)

    @contextmanager
    def applied(self):
        """The average in the model's parameters for the block, the model's own weights after it."""
        own = [p.detach().clone() for p in self.params]
        self._put(self.shadow)
        self.in_model = True
        try:
            yield
        finally:
            self._put(own)
            self.in_model = False

    def extra(self) -> dict:
        """The checkpoint's entry (in its ``extra``): the average, so that a resumed run goes on with it."""
        return {"weight_average": [a.detach().cpu().clone() for a in self.shadow]}

    @torch.no_grad()
    def resume(self, extra: dict) -> None:
        """Go on with the average a checkpoint's ``extra`` holds (if it holds one)."""
        if "weight_average" not in extra:
            return
        state = extra["weight_average"]
        if len(state) != len(self.shadow):
            raise CheckpointError(f"the checkpoint's weight average has {len(state)} tensors, the model "
                                  f"{len(self.shadow)}")
        for a, saved in zip(self.shadow, state):
            a.copy_(saved)


class NoAverage:
    """No weight average (``ema_decay`` None or 0): the model's own weights are validated, kept and
    returned, and checkpoints hold no ``weight_average``."""

    in_model = True   # the weights to validate are the model's

    def update(self, step: int) -> None:
        pass

    def copy_to_model(self) -> None:
        pass

    @contextmanager
    def applied(self):
        yield

    def extra(self) -> dict:
        return {}

    def resume(self, extra: dict) -> None:
        pass


class _Pending:
    """The losses and logs of the steps since the last read, kept as they came (0-d tensors on the
    device, floats, :class:`helpers.runtime.OnHost`): reading each at once would make the host wait
    for the device every step."""

    def __init__(self, first: int):
        self.first = first        # optimizer steps before the first step held
        self.losses: list = []
        self.logs: dict[str, list] = {}

    def add(self, loss: torch.Tensor, logs: dict) -> None:
        self.losses.append(loss)
        for key, value in logs.items():
            self.logs.setdefault(key, []).append(value)

    def take(self) -> tuple[list[float], dict[str, list[float]]]:
        """(losses, {key: values}) as floats, one copy per key; empties the buffer."""
        losses = host_floats(self.losses)
        values = {key: host_floats(v) for key, v in self.logs.items()}
        self.first += len(self.losses)
        self.losses, self.logs = [], {}
        return losses, values


class _Step(torch.nn.Module):
    """``forward = model.training_step``, so that DDP (which wraps ``forward``) synchronises gradients."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: tuple):
        return self.model.training_step(batch)


__all__ = ["TrainConfig", "Trainer", "WeightAverage", "CheckpointError"]
