"""Vector quantizer with an EMA codebook.

Papers:
- van den Oord et al. 2017, "Neural Discrete Representation Learning" (VQ-VAE):
  nearest-code lookup, straight-through gradients, commitment loss beta*||z - sg(e)||^2.
- Razavi et al. 2019, "Generating Diverse High-Fidelity Images with VQ-VAE-2": the codebook
  is not trained by gradients but as an exponential moving average of the encoder outputs
  assigned to each code (k-means in the limit), with Laplace-smoothed cluster sizes.

Tricks on top (all of them keep the codebook fully used, which the report did not manage):
- k-means initialisation from the first training batch, so no code starts far from the data.
  A buffer flag ``initialized`` makes a loaded checkpoint never re-initialise.
- dead-code restart (Dhariwal et al. 2020, Jukebox): a code that got no vector for
  ``restart_window`` training steps is re-seeded from a small ring buffer of recent encoder
  outputs, so it lands where the data are.
- distances and the EMA run in fp32 even under bf16 autocast: bf16 has 8 bits of mantissa,
  too few to tell close codes apart or to accumulate a 0.99 moving average.

Every piece of state is a registered buffer, so ``state_dict`` round-trips exactly and a
resumed run continues where it stopped. A training step reads nothing back from the device on
most steps (on a GPU each read makes the CPU wait for the step): the host keeps copies of the
step counter and the k-means flag, and skips the dead-code test while no code can have been
idle for ``restart_window`` steps yet; loading a state dict drops those copies.
Under torch.distributed the EMA statistics are
summed over ranks and the k-means / restart seeds come from rank 0, so all ranks keep the
same codebook, bit for bit (see ``_all_reduce`` / ``_broadcast``; tests/test_distributed.py).
Only the ring buffer of recent encoder outputs stays per rank: restart seeds are drawn from
rank 0's, and rank 0 writes the checkpoints.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ..runtime import full_fp32


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor   # (B, D, H, W) codebook vectors, straight-through gradient to z
    codes: torch.Tensor       # (B, H, W) long, index of the nearest code
    loss: torch.Tensor        # scalar, commitment loss beta * ||z - sg(e)||^2 (the codebook learns by EMA)
    perplexity: torch.Tensor  # scalar, exp(entropy) of the code histogram of this batch
    used: torch.Tensor        # scalar long, number of distinct codes in this batch


class VectorQuantizer(nn.Module):
    def __init__(
        self,
        num_codes: int,                 # K, codebook size
        dim: int,                       # D, code vector size (= encoder output channels)
        beta: float = 0.25,             # commitment weight (van den Oord 2017 use 0.25)
        decay: float = 0.99,            # EMA decay of cluster sizes and sums (Razavi 2019)
        eps: float = 1e-5,              # Laplace smoothing of cluster sizes (no division by zero)
        kmeans_init: bool = True,       # initialise the codebook by k-means on the first batch
        kmeans_iters: int = 10,         # Lloyd iterations of that k-means
        restart_window: int = 100,      # a code unused for this many training steps is re-seeded (0: never)
        restart_buffer: int = 4096,     # recent encoder outputs kept to re-seed dead codes from
    ):
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.beta, self.decay, self.eps = beta, decay, eps
        self.kmeans_iters = kmeans_iters
        self.restart_window = restart_window

        codebook = torch.randn(num_codes, dim)
        self.register_buffer("codebook", codebook)                      # (K, D) the code vectors
        self.register_buffer("cluster_size", torch.ones(num_codes))     # EMA of vectors per code
        self.register_buffer("embed_sum", codebook.clone())            # EMA of the sum of those vectors
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))  # training steps so far
        self.register_buffer("last_used", torch.zeros(num_codes, dtype=torch.long))  # step a code last got a vector
        self.register_buffer("recent", torch.zeros(restart_buffer, dim))   # ring buffer of encoder outputs
        self.register_buffer("recent_count", torch.zeros((), dtype=torch.long))  # vectors ever written to it
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # codes re-seeded so far (for logs)
        self._forget_host_copies()

    # ---- public API ---------------------------------------------------------------------------

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, H, W) -> code vectors (B, D, H, W)."""
        return F.embedding(codes, self.codebook).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder outputs (B, D, H, W) -> nearest codes (B, H, W); no codebook update."""
        B, D, H, W = z.shape
        with torch.autocast(z.device.type, enabled=False), full_fp32(z.device):
            flat = z.detach().float().permute(0, 2, 3, 1).reshape(-1, D)
            return self._nearest(flat).view(B, H, W)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        B, D, H, W = z.shape
        assert D == self.dim, f"expected {self.dim} channels, got {D}"
        with torch.autocast(z.device.type, enabled=False), full_fp32(z.device):
            zf = z.float().permute(0, 2, 3, 1).reshape(-1, D)   # (N, D) fp32, keeps the graph
            if self.training and not self._is_initialized():
                self._kmeans_init(zf.detach())
            codes = self._nearest(zf.detach())
            q = F.embedding(codes, self.codebook)                  # a copy: later EMA edits don't touch it
            counts = torch.bincount(codes, minlength=self.num_codes).float()
            if self.training:
                self._ema_update(zf.detach(), codes, counts)
            loss = self.beta * F.mse_loss(zf, q)                   # codebook is a buffer: grads go to z only
            q_st = zf + (q - zf).detach()                          # straight-through estimator
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-10))).sum())
        quantized = q_st.view(B, H, W, D).permute(0, 3, 1, 2).to(z.dtype)
        return QuantizerOutput(quantized, codes.view(B, H, W), loss, perplexity, (counts > 0).sum())

    # ---- internals ----------------------------------------------------------------------------

    def _forget_host_copies(self) -> None:
        """Drop the host's copies of buffers (read again from the device when next needed)."""
        self._host_initialized: bool | None = None
        self._host_step: int | None = None
        self._next_dead_check: int | None = None   # no code can be dead by the window rule before it

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._forget_host_copies()

    def _is_initialized(self) -> bool:
        if not self._host_initialized:   # read until it is True: then it stays True
            self._host_initialized = bool(self.initialized)
        return self._host_initialized

    def _nearest(self, flat: torch.Tensor) -> torch.Tensor:
        # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 is the same for every code, so skip it.
        e = self.codebook
        dist_ = torch.addmm((e * e).sum(1), flat, e.t(), alpha=-2.0)
        return dist_.argmin(1)

    @torch.no_grad()
    def _ema_update(self, zf: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, zf)
        counts = self._all_reduce(counts.clone())
        sums = self._all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing: no code divides by ~0, the total count n is preserved.
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))

        self.step += 1
        self._host_step = int(self.step) if self._host_step is None else self._host_step + 1
        # torch.where, not last_used[counts > 0] = step: a boolean index waits for the device
        self.last_used.copy_(torch.where(counts > 0, self.step, self.last_used))
        self._remember(zf)
        if self.restart_window > 0:
            self._restart_dead_codes()

    @torch.no_grad()
    def _remember(self, zf: torch.Tensor) -> None:
        """Write a random subset of this batch into the ring buffer of recent encoder outputs."""
        size = self.recent.shape[0]
        if size == 0:
            return
        take = min(zf.shape[0], max(size // 8, 1))   # ~8 batches of history
        rows = zf[torch.randperm(zf.shape[0], device=zf.device)[:take]]
        idx = (torch.arange(take, device=zf.device) + self.recent_count) % size   # on the device: no wait
        self.recent[idx] = rows
        self.recent_count += take

    @torch.no_grad()
    def _restart_dead_codes(self) -> None:
        if self._next_dead_check is not None and self._host_step < self._next_dead_check:
            return   # every code was used within the last restart_window steps: none is dead
        dead = (self.step - self.last_used) >= self.restart_window
        n_dead, oldest = torch.stack([dead.sum(), self.last_used.min()]).tolist()   # one read
        if n_dead == 0:
            # last_used only grows: no code can be dead before this step
            self._next_dead_check = oldest + self.restart_window
            return
        filled = min(int(self.recent_count), self.recent.shape[0])
        if filled == 0:
            return
        self._next_dead_check = None
        pick = torch.randint(filled, (n_dead,), device=self.recent.device)
        seeds = self.recent[pick]
        # A little noise, so two codes re-seeded from the same vector can still split apart.
        seeds = seeds + 0.01 * seeds.std() * torch.randn_like(seeds)
        seeds = self._broadcast(seeds)   # same seeds on every rank (dead mask is equal already)
        self.codebook[dead] = seeds
        self.embed_sum[dead] = seeds       # as if each had been assigned one vector: itself
        self.cluster_size[dead] = 1.0
        self.last_used[dead] = self.step   # a fresh window before it can be declared dead again
        self.restarts += n_dead

    @torch.no_grad()
    def _kmeans_init(self, zf: torch.Tensor) -> None:
        """Lloyd's k-means on the first batch; centroids become the codebook (rank 0's, if distributed)."""
        K, N = self.num_codes, zf.shape[0]
        if N >= K:
            centroids = _kmeans_plus_plus(zf, K)
        else:   # fewer vectors than codes: data points with replacement, plus noise to split them
            centroids = zf[torch.randint(N, (K,), device=zf.device)].clone()
            centroids += 0.01 * zf.std() * torch.randn_like(centroids)
        counts = torch.zeros(K, device=zf.device)
        for _ in range(self.kmeans_iters):
            d = torch.addmm((centroids * centroids).sum(1), zf, centroids.t(), alpha=-2.0)
            assign = d.argmin(1)
            counts = torch.bincount(assign, minlength=K).float()
            sums = torch.zeros_like(centroids).index_add_(0, assign, zf)
            keep = counts > 0                                 # an empty cluster keeps its centroid
            centroids[keep] = sums[keep] / counts[keep].unsqueeze(1)
        centroids = self._broadcast(centroids)
        counts = self._broadcast(counts)
        self.codebook.copy_(centroids)
        # Counts >= 1: a cluster that was empty must not decay towards the origin on the first EMA step.
        self.cluster_size.copy_(counts.clamp_min(1.0))
        self.embed_sum.copy_(centroids * self.cluster_size.unsqueeze(1))
        self.initialized.fill_(True)
        self._host_initialized = True

    # ---- distributed hooks --------------------------------------------------------------------

    @staticmethod
    def _distributed() -> bool:
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks (in place) when torch.distributed runs with world size > 1."""
        if self._distributed():
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def _broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``tensor`` on every rank (in place) when distributed."""
        if self._distributed():
            tensor = tensor.contiguous()
            dist.broadcast(tensor, src=0)
        return tensor

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, dim={self.dim}, beta={self.beta}, decay={self.decay}, "
                f"restart_window={self.restart_window}")



def _kmeans_plus_plus(x: torch.Tensor, k: int) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre is drawn with probability
    proportional to its squared distance from the centres so far, so clusters are rarely missed."""
    n = x.shape[0]
    centres = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    centres[0] = x[torch.randint(n, (1,), device=x.device)]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for i in range(1, k):
        total = d2.sum()
        idx = torch.multinomial(d2 / total, 1) if total > 0 else torch.randint(n, (1,), device=x.device)
        centres[i] = x[idx]
        d2 = torch.minimum(d2, ((x - centres[i]) ** 2).sum(1))
    return centres
