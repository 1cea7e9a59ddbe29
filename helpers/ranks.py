"""The processes a run trains on, for :class:`helpers.train.Trainer`: all that it knows of torch.distributed.

Under ``torchrun`` (torch.distributed initialised) these are the ranks of the process group; otherwise
this process alone, world 1, where every collective returns its input. Every decision that ends or
shapes a step is taken from numbers all ranks agree on (the collectives here), so no rank leaves a
loop while the others wait for it in a collective.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, RandomSampler


class Ranks:
    """Rank, world size and device of this process, and the collectives the Trainer's loop takes."""

    def __init__(self, device: torch.device):
        self.device = device
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        # A process alone may enter a "collective" after an error; a rank alone must not: the
        # others would never join it.
        self.alone = not self.distributed

    def wrap(self, net: torch.nn.Module) -> torch.nn.Module:
        """``net`` in DistributedDataParallel under torch.distributed (gradients all-reduced), else itself."""
        if not self.distributed:
            return net
        # Parameters and buffers start as rank 0's; after that buffers are not re-broadcast before
        # each forward: the quantizers all-reduce their own EMA statistics. (Not the deprecated
        # broadcast_buffers=False: it skips the start too, so ranks seeded apart, or a codebook
        # without k-means init, would keep different codebooks.)
        return torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            forward_sync_buffers=False)

    def order(self, n: int, *, train: bool, seed: int, epoch: int) -> list[int]:
        """The examples of one pass, in the order this rank takes them."""
        if self.distributed and train:
            sampler = DistributedSampler(range(n), num_replicas=self.world, rank=self.rank, shuffle=True,
                                         seed=seed, drop_last=True)
            sampler.set_epoch(epoch)
            return list(sampler)
        if self.distributed:
            # Every example exactly once over the ranks: DistributedSampler would pad the last shard
            # with repeats, and the validation loss would depend on the number of processes.
            return list(range(self.rank, n, self.world))
        if train:
            # Seeded per epoch: a resumed run draws exactly the batches an uninterrupted one would.
            return list(RandomSampler(range(n), generator=torch.Generator().manual_seed(seed * 100_003 + epoch)))
        return list(range(n))

    def n_batches(self, n: int, size: int, *, train: bool) -> int:
        """The batches of ``size`` this rank takes in one pass over ``n`` examples."""
        per_rank = n // self.world if train else n
        return per_rank // size if train and n >= size else math.ceil(per_rank / size)

    def max(self, seconds: float) -> float:
        """The largest of the ranks' ``seconds``, so that all of them take the same time-based
        decisions: with their own clocks, ranks would train with different learning rates, and one
        could leave the loop while the others wait for it."""
        if not self.distributed:
            return seconds
        t = torch.tensor([seconds], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    def all_finite(self, finite_here: bool) -> bool:
        """Were the losses finite on every rank? Asked of all ranks at once, so that all of them
        stop: a rank that raised alone would leave the others waiting in DDP's gradient all-reduce
        forever."""
        if not self.distributed:
            return finite_here
        finite = torch.tensor(float(finite_here), device=self.device)
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite)

    def mean(self, values: dict) -> dict:
        """Average per-rank epoch means (every rank ran the same number of steps), so that history,
        early stopping and the best checkpoint follow the whole batch, not rank 0's share of it."""
        if not self.distributed or not values:
            return values
        packed = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(packed)
        return dict(zip(values, (packed / self.world).tolist()))

    def total(self, n: int, sums: dict) -> tuple[float, dict]:
        """An evaluation's example count and weighted sums, added over the ranks."""
        if not self.distributed:
            return n, sums
        packed = torch.tensor([n] + list(sums.values()), dtype=torch.float64, device=self.device)  # nccl: on GPU
        dist.all_reduce(packed)
        return packed[0].item(), dict(zip(sums, packed[1:].tolist()))

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def which(self, here: str) -> str:
        """The non-finite loss an error names (``here``: this rank's): under torch.distributed, some rank's."""
        return f"on some rank; here {here}" if self.distributed else here
