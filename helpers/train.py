"""The one Trainer for every model of the project (minGPT-style: small, with callbacks).

A model brings ``loss, logs = model.training_step(batch)``; the Trainer brings the rest:

* Adam with a warm-up + cosine schedule over the run's *progress* — the larger
  of "epochs done / epochs" and "minutes used / minutes allowed" — so a run cut
  short by its time budget still anneals its learning rate;
* gradient clipping (on by default), bf16 autocast and channels_last on CPU
  (``precision="fp32"`` switches both off);
* early stopping on the validation loss, the best weights kept in ``<name>.pt``;
* resume: the full state (weights, optimizer, RNG, history, time used) goes to
  ``<name>.last.pt`` after every epoch, and :meth:`Trainer.run` picks it up, so
  re-running a notebook never retrains what is done. Shuffling is seeded per
  epoch, so a resumed run sees the same batches as an uninterrupted one;
* a non-finite loss stops the run with the step that produced it, and the last
  good checkpoint stays on disk;
* under ``torchrun`` (torch.distributed initialised): DistributedSampler, DDP,
  checkpoints and progress bars on rank 0 only.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler, TensorDataset

from .checkpoints import CheckpointError, load_checkpoint, model_spec, safe_load, save_checkpoint


@dataclass
class TrainConfig:
    epochs: int = 10                 # upper bound on passes over the train set
    max_minutes: float | None = None # wall-clock budget; the schedule follows it (None: epochs only)
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 100
    schedule: str = "cosine"         # "cosine" (to min_lr_ratio * lr) or "constant"
    min_lr_ratio: float = 0.05
    grad_clip: float | None = 1.0    # max global grad norm; None turns clipping off
    precision: str = "bf16"          # "bf16" (autocast + channels_last on CPU) or "fp32"
    channels_last: bool = True       # only used with 4-D image inputs
    patience: int | None = None      # epochs without val improvement before stopping
    min_delta: float = 0.0
    eval_every: int = 1              # epochs between validation passes
    seed: int = 0
    progress: bool = True            # tqdm bars

    def as_dict(self) -> dict:
        return asdict(self)


EpochCallback = Callable[["Trainer", dict], None]


class Trainer:
    """Train ``model`` on ``train`` (a tuple of tensors, first dimension = examples), validate on ``val``.

    ``checkpoint`` is the path of the best weights (``artifacts/<profile>/<name>.pt``);
    the resumable state lives beside it as ``<name>.last.pt``. ``data_fingerprint``
    and ``extra`` (e.g. ``{"image_size": 32}``) are stored and checked on resume.
    """

    def __init__(self, model: torch.nn.Module, train: Sequence[torch.Tensor], val: Sequence[torch.Tensor] | None,
                 config: TrainConfig, checkpoint: str | Path | None = None, *, data_fingerprint: str | None = None,
                 extra: dict | None = None, callbacks: Sequence[EpochCallback] = (),
                 device: torch.device | str | None = None):
        self.config = config
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model = model.to(self.device)
        self.train_data = TensorDataset(*train)
        self.val_data = TensorDataset(*val) if val is not None else None
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.data_fingerprint = data_fingerprint
        self.extra = dict(extra or {})
        self.callbacks = list(callbacks)
        self.history: dict[str, list] = {}
        self.epoch = 0          # epochs completed
        self.step = 0           # optimizer steps taken
        self.seconds = 0.0      # training time used (over resumes)
        self.best_val = math.inf
        self.bad_epochs = 0
        self.stopped_early = False

        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.bf16 = config.precision == "bf16"
        if config.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', not {config.precision!r}")
        self.channels_last = self.bf16 and config.channels_last and self.train_data.tensors[0].dim() == 4
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=tuple(config.betas),
                                          weight_decay=config.weight_decay)
        self.net: torch.nn.Module = _Step(self.model)
        if self.distributed:
            # Buffers are not broadcast: the quantizers all-reduce their own EMA statistics.
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)

    # ------------------------------------------------------------------ paths and state
    @property
    def last_path(self) -> Path | None:
        return self.checkpoint.with_suffix(".last.pt") if self.checkpoint is not None else None

    def _expect(self) -> dict:
        expect = {**model_spec(self.model), "data_fingerprint": self.data_fingerprint}
        expect.update(self.extra)
        return expect

    def _save(self, path: Path, *, completed: bool) -> None:
        if self.rank != 0 or path is None:
            return
        save_checkpoint(
            path, self.model, optimizer=self.optimizer, epoch=self.epoch, step=self.step,
            metrics={"best_val": self.best_val}, history=self.history, data_fingerprint=self.data_fingerprint,
            extra={**self.extra, "completed": completed, "seconds": self.seconds, "bad_epochs": self.bad_epochs,
                   "stopped_early": self.stopped_early, "rng_state": torch.get_rng_state(),
                   "train_config": self.config.as_dict()})

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
        if "rng_state" in extra:
            torch.set_rng_state(extra["rng_state"])

    # ------------------------------------------------------------------ the loop
    def run(self) -> torch.nn.Module:
        """Train, resume or load — whichever the checkpoints on disk call for — and return the
        model holding the best validation weights."""
        if self.checkpoint is not None and self.checkpoint.exists():
            best = load_checkpoint(self.checkpoint, expect=self._expect())
            if best["extra"].get("completed"):
                self._restore(best, with_optimizer=False)
                self._log(f"loaded finished run from {self.checkpoint} (epoch {self.epoch}); "
                          "delete it to retrain")
                return self.model
        if self.last_path is not None and self.last_path.exists():
            last = load_checkpoint(self.last_path, expect=self._expect())
            self._restore(last, with_optimizer=True)
            self._log(f"resuming from {self.last_path} after epoch {self.epoch}")
        self.fit()
        return self.model

    def fit(self) -> dict:
        cfg = self.config
        start = time.perf_counter() - self.seconds
        steps_per_epoch = max(1, len(self.train_data) // (cfg.batch_size * self.world))
        self.total_steps = cfg.epochs * steps_per_epoch
        while self.epoch < cfg.epochs and not self.stopped_early and not self._out_of_time(start):
            record = {"epoch": self.epoch + 1}
            t0 = time.perf_counter()
            record.update({f"train_{k}": v for k, v in self._train_epoch(start).items()})
            record["train_seconds"] = time.perf_counter() - t0
            if self.val_data is not None and ((self.epoch + 1) % cfg.eval_every == 0 or self.epoch + 1 == cfg.epochs):
                record.update({f"val_{k}": v for k, v in self.evaluate().items()})
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            self.epoch += 1
            self.seconds = time.perf_counter() - start
            for key, value in record.items():
                self.history.setdefault(key, []).append(value)
            improved = self._track_best(record.get("val_loss", record["train_loss"]))
            if improved:
                self._save(self.checkpoint, completed=False)
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
        """Put the best weights back into the model and mark the best checkpoint finished."""
        if self.checkpoint is None:
            return
        if self.distributed:
            dist.barrier()
        if self.checkpoint.exists():
            best = safe_load(self.checkpoint)
            self.model.load_state_dict(best["state_dict"])
        self._save(self.checkpoint, completed=True)  # best weights, with the whole run's history

    def _out_of_time(self, start: float) -> bool:
        limit = self.config.max_minutes
        return limit is not None and time.perf_counter() - start >= 60 * limit

    def _lr(self, start: float) -> float:
        cfg = self.config
        warmup = min(cfg.warmup_steps, max(1, self.total_steps // 10))   # short runs warm up for 10 %
        if self.step < warmup:
            return cfg.lr * (self.step + 1) / warmup
        if cfg.schedule == "constant":
            return cfg.lr
        progress = self.step / max(1, self.total_steps)
        if cfg.max_minutes is not None:
            progress = max(progress, (time.perf_counter() - start) / (60 * cfg.max_minutes))
        progress = min(1.0, progress)
        floor = cfg.min_lr_ratio * cfg.lr
        return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))

    def _loader(self, data: TensorDataset, *, train: bool) -> DataLoader:
        cfg = self.config
        if self.distributed:
            sampler = DistributedSampler(data, num_replicas=self.world, rank=self.rank, shuffle=train,
                                         seed=cfg.seed, drop_last=train)
            sampler.set_epoch(self.epoch)
        elif train:
            # Seeded per epoch: a resumed run draws exactly the batches an uninterrupted one would.
            sampler = RandomSampler(data, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + self.epoch))
        else:
            sampler = SequentialSampler(data)
        return DataLoader(data, batch_size=cfg.batch_size, sampler=sampler, drop_last=train)

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
        sums: dict[str, float] = {}
        count = 0
        bar = self._bar(self._loader(self.train_data, train=True), f"epoch {self.epoch + 1}/{self.config.epochs}")
        for batch in bar:
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr(start)
            with self._autocast():
                loss, logs = self.net(self._prepare(batch))
            if not torch.isfinite(loss):
                where = f"{self.last_path}" if self.last_path is not None and self.last_path.exists() else "none yet"
                raise FloatingPointError(
                    f"non-finite loss ({loss.item()}) at epoch {self.epoch + 1}, step {self.step + 1}; training "
                    f"stopped. Last good checkpoint: {where}. Try a lower lr or precision='fp32'.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.step += 1
            count += 1
            for key, value in {"loss": loss.item(), **logs}.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            if hasattr(bar, "set_postfix") and count % 10 == 0:
                bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
            if self._out_of_time(start):
                break
        return {k: v / max(1, count) for k, v in sums.items()}

    @torch.no_grad()
    def evaluate(self, data: TensorDataset | None = None) -> dict:
        """Mean loss and logs over ``data`` (default: the validation set), weighted by batch size."""
        data = data if data is not None else self.val_data
        self.model.eval()
        sums: dict[str, float] = {}
        n = 0
        for batch in self._loader(data, train=False):
            batch = self._prepare(batch)
            with self._autocast():
                loss, logs = self.model.training_step(batch)
            size = batch[0].shape[0]
            n += size
            for key, value in {"loss": loss.item(), **logs}.items():
                sums[key] = sums.get(key, 0.0) + float(value) * size
        if self.distributed:
            packed = torch.tensor([n] + list(sums.values()), dtype=torch.float64)
            dist.all_reduce(packed)
            n, sums = packed[0].item(), dict(zip(sums, packed[1:].tolist()))
        return {k: v / max(1, n) for k, v in sums.items()}

    def _bar(self, iterable, desc: str):
        if not (self.config.progress and self.rank == 0):
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, leave=False)

    def _log(self, message: str) -> None:
        if self.rank == 0:
            print(message, flush=True)


class _Step(torch.nn.Module):
    """``forward = model.training_step``, so that DDP (which wraps ``forward``) synchronises gradients."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: tuple):
        return self.model.training_step(batch)


__all__ = ["TrainConfig", "Trainer", "CheckpointError"]
