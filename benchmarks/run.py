"""Speed of every model, sampler and the FID network, printed as one JSON object: ``make bench``.

Everything runs on ``helpers.runtime.pick_device()`` (CUDA, then MPS, then the CPU;
``EMOJIVQ_DEVICE`` overrides), which the JSON's ``machine`` names beside the host CPU; on CUDA and
MPS each timing waits for the device's queue to empty. Each training figure puts the project's
path (``precision="auto"`` through the one Trainer: bf16 autocast + channels_last where the device
has fast bf16, else plain fp32) beside the plain way (fp32, contiguous) in the same process, on
random data of the real shapes; where the device has no fast bf16
both are the same path, timed once, and ``train_speedup`` is 1. Otherwise ``train_speedup`` =
fast / plain images per second, each the best of
``--repeats`` alternating runs (load on the machine only ever slows a run down; every run's
figure is listed too). GFLOP/s counts one training step with torch.utils.flop_counter.
Sampling puts ``sample_codes`` (incremental, one position per step) beside the naive
re-run-everything loop (the masked prior, drawn in rounds, has no such loop: its rounds are timed
alone); the naive loop is timed on a smaller batch and scaled to 1000 samples
(it is linear in n at these sizes), and both draw the same samples for the same seed (checked
here on that batch); the class-conditional priors are also timed with classifier-free guidance
(w 3: two grids per sample). FID: the TorchScript Inception as shipped against our mapped,
channels_last copy (features must agree within 1e-4).

    python benchmarks/run.py [--steps 20] [--repeats 3] [--only vqvae32,pixelcnn] [--skip-fid]

Run it on an idle machine: two OpenMP threads on two busy cores wait on each other and the
figures collapse (docs/PERFORMANCE.md, "A busy machine").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers.models.maskgit import MaskedPriorConfig, MaskedTransformerPrior
from helpers.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig
from helpers.models.pixelsnail import PixelSNAIL
from helpers.models.transformer import TransformerPrior, TransformerPriorConfig
from helpers.models.superres import SuperRes
from helpers.models.vqvae import VQVAE
from helpers.models.vqvae2 import VQVAE2
from helpers.runtime import machine, pick_device, resolve_precision, synchronize
from helpers.sampling import sample_codes, sample_codes_naive
from helpers.train import TrainConfig, Trainer

K, CLASSES = VQVAE.named("default").config.num_codes, 9   # the 32 px priors model the default codebook


def _codes(n, k, h, w, g):
    return torch.randint(0, k, (n, h, w), generator=g)


def workloads(g: torch.Generator) -> dict:
    """name -> (model factory, batch size, tensors for `steps` batches)."""
    vq2 = VQVAE2.named("default")
    kt, kb = vq2.config.num_codes_top, vq2.config.num_codes_bottom
    labels = lambda n: torch.randint(0, CLASSES, (n,), generator=g)  # noqa: E731
    images = lambda n, s: torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=g)  # noqa: E731
    prior = dict(num_codes=K, hidden=128, layers=12, num_classes=CLASSES, label_dropout=0.1, dropout=0.1)
    return {
        "vqvae32": (lambda: VQVAE.named("default"), 64, lambda n: (images(n, 32),)),
        "vqvae2_64": (lambda: VQVAE2.named("default"), 32, lambda n: (images(n, 64),)),
        "pixelcnn": (lambda: PixelCNN(PixelCNNConfig(**prior)), 64, lambda n: (_codes(n, K, 8, 8, g), labels(n))),
        "gated_pixelcnn": (lambda: GatedPixelCNN(GatedPixelCNNConfig(**prior)), 64,
                           lambda n: (_codes(n, K, 8, 8, g), labels(n))),
        "transformer": (lambda: TransformerPrior(TransformerPriorConfig(num_codes=K, num_classes=CLASSES,
                                                                       label_dropout=0.1)), 64,
                        lambda n: (_codes(n, K, 8, 8, g), labels(n))),
        "maskgit": (lambda: MaskedTransformerPrior(MaskedPriorConfig(num_codes=K, num_classes=CLASSES,
                                                                     label_dropout=0.1)), 64,
                    lambda n: (_codes(n, K, 8, 8, g), labels(n))),
        "pixelsnail_top": (lambda: PixelSNAIL.for_vqvae2(vq2, "top", num_classes=CLASSES), 64,
                           lambda n: (_codes(n, kt, 8, 8, g), labels(n))),
        "pixelsnail_bottom": (lambda: PixelSNAIL.for_vqvae2(vq2, "bottom"), 64,
                              # (codes, labels, cond): no categories, so the labels are a zero placeholder
                              lambda n: (_codes(n, kb, 16, 16, g), torch.zeros(n, dtype=torch.long),
                                         _codes(n, kt, 8, 8, g))),
        "superres": (lambda: SuperRes.from_vqvae2(vq2), 32,
                     lambda n: (_codes(n, kt, 8, 8, g), _codes(n, kb, 16, 16, g), images(n, 64), images(n, 128))),
    }


def train_rate(make, batch: int, data: tuple, precision: str) -> float:
    """Images (or code grids) per second of Trainer.fit over ``data``, after one warm-up batch."""
    torch.manual_seed(0)
    model = make()
    warm = tuple(t[:batch] for t in data)
    Trainer(model, warm, None, TrainConfig(epochs=1, batch_size=batch, precision=precision, progress=False)).fit()
    return len(data[0]) / fit_seconds(model, data, batch, precision)


def fit_seconds(model, data: tuple, batch: int, precision: str = "auto") -> float:
    """Seconds of one Trainer.fit: one pass over ``data`` at ``batch``."""
    trainer = Trainer(model, data, None, TrainConfig(epochs=1, batch_size=batch, precision=precision,
                                                     warmup_steps=1, progress=False))
    synchronize(trainer.device)
    start = time.perf_counter()
    trainer.fit()
    synchronize(trainer.device)
    return time.perf_counter() - start


def step_flops(make, batch: int, data: tuple) -> int:
    model = make().train()
    with FlopCounterMode(display=False) as counter:
        loss, _ = model.training_step(tuple(t[:batch] for t in data))
        loss.backward()
    return counter.get_total_flops()


def bench_training(steps: int, repeats: int, only: set[str] | None) -> dict:
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, (make, batch, make_data) in workloads(g).items():
        if only and name not in only:
            continue
        data = make_data(batch * steps)
        paths = {"fast": resolve_precision("auto", pick_device()), "plain": "fp32"}
        if paths["fast"] == paths["plain"]:
            del paths["fast"]           # no fast bf16 here: one path, timed once
        runs = {kind: [] for kind in paths}
        for _ in range(repeats):            # alternate, so that a load drift hits both paths alike
            for kind, precision in paths.items():
                runs[kind].append(train_rate(make, batch, data, precision))
        runs.setdefault("fast", runs["plain"])
        fast, plain = max(runs["fast"]), max(runs["plain"])
        flops = step_flops(make, batch, data)
        out[name] = {"batch": batch, "images_per_s": round(fast, 1), "plain_images_per_s": round(plain, 1),
                     "steps_per_s": round(fast / batch, 2),
                     "train_speedup": round(fast / plain, 2), "gflop_per_step": round(flops / 1e9, 2),
                     "gflops_per_s": round(flops / batch * fast / 1e9, 1),
                     "plain_gflops_per_s": round(flops / batch * plain / 1e9, 1),
                     "runs_images_per_s": {kind: [round(r, 1) for r in rs] for kind, rs in runs.items()}}
        print(f"train {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def bench_sampling(naive_n: int, only: set[str] | None) -> dict:
    device = pick_device()
    vq2 = VQVAE2.named("default")
    prior = dict(num_codes=K, hidden=128, layers=12, num_classes=CLASSES)
    priors = {
        "pixelcnn": (PixelCNN(PixelCNNConfig(**prior)), (8, 8), None),
        "gated_pixelcnn": (GatedPixelCNN(GatedPixelCNNConfig(**prior)), (8, 8), None),
        "transformer": (TransformerPrior(TransformerPriorConfig(num_codes=K, num_classes=CLASSES)), (8, 8), None),
        "maskgit": (MaskedTransformerPrior(MaskedPriorConfig(num_codes=K, num_classes=CLASSES)), (8, 8), None),
        "pixelsnail_top": (PixelSNAIL.for_vqvae2(vq2, "top", num_classes=CLASSES), (8, 8), None),
        "pixelsnail_bottom": (PixelSNAIL.for_vqvae2(vq2, "bottom"), (16, 16),
                              torch.randint(0, vq2.config.num_codes_top, (1000, 8, 8))),
    }
    out = {}
    for name, (model, shape, cond) in priors.items():
        if only and name not in only:
            continue
        model.to(device).eval()
        cond = None if cond is None else cond.to(device)
        kw = dict(shape=shape, progress=False)
        labels = torch.arange(1000) % CLASSES if getattr(model.config, "num_classes", 0) else None
        start = time.perf_counter()
        sample_codes(model, 1000, cond=cond, labels=labels, generator=torch.Generator().manual_seed(0), **kw)
        fast = time.perf_counter() - start
        guided = {}
        if labels is not None:   # classifier-free guidance runs two grids per sample
            start = time.perf_counter()
            sample_codes(model, 1000, cond=cond, labels=labels, guidance=3.0,
                         generator=torch.Generator().manual_seed(0), **kw)
            seconds = time.perf_counter() - start
            guided = {"guided_s_per_1000": round(seconds, 1), "guidance_cost": round(seconds / fast, 2)}
        if getattr(model, "masked", False):   # drawn in rounds: no raster loop to set beside it
            out[name] = {"fast_s_per_1000": round(fast, 1), "rounds": model.config.rounds, **guided}
            print(f"sample {name}: {out[name]}", file=sys.stderr, flush=True)
            continue
        small = None if cond is None else cond[:naive_n]
        few = None if labels is None else labels[:naive_n]
        start = time.perf_counter()
        naive = sample_codes_naive(model, naive_n, cond=small, labels=few, generator=torch.Generator().manual_seed(1),
                                   **kw)
        naive_s = (time.perf_counter() - start) * 1000 / naive_n
        same = torch.equal(naive, sample_codes(model, naive_n, cond=small, labels=few,
                                               generator=torch.Generator().manual_seed(1), **kw))
        out[name] = {"fast_s_per_1000": round(fast, 1), "naive_s_per_1000": round(naive_s, 1),
                     "naive_measured_on": naive_n, "sampling_speedup": round(naive_s / fast, 1),
                     "same_samples_same_seed": same, **guided}
        print(f"sample {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def bench_fid(n: int) -> dict:
    from helpers import metrics

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    times, feats = {}, {}
    for kind in ("plain", "fast", "plain", "fast"):    # alternate: load drifts hit both alike
        start = time.perf_counter()
        feats[kind] = metrics.inception_features(images, kind=kind, progress=False)
        times.setdefault(kind, []).append(time.perf_counter() - start)
    plain, fast = (min(times[k]) * 1000 / n for k in ("plain", "fast"))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        before = metrics.COUNTERS["images"]
        metrics.cached_features(images, "bench", tmp, verbose=False)
        first = metrics.COUNTERS["images"] - before
        metrics.cached_features(images, "bench", tmp, verbose=False)
        second = metrics.COUNTERS["images"] - before - first
    return {"plain_s_per_1000": round(plain, 1), "fast_s_per_1000": round(fast, 1),
            "fid_speedup": round(plain / fast, 2), "max_abs_feature_diff": float((feats["plain"] - feats["fast"]).abs().max()),
            "measured_on": n, "cache_images_through_network": [first, second]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="training batches timed per model and path")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per model and path (the best counts)")
    p.add_argument("--naive", type=int, default=32, help="samples drawn by the naive loop (scaled to 1000)")
    p.add_argument("--fid-images", type=int, default=96, help="images timed through each FID path")
    p.add_argument("--only", default="", help="comma-separated names of models / priors")
    p.add_argument("--skip-fid", action="store_true")
    args = p.parse_args()
    only = set(filter(None, args.only.split(","))) or None
    result = {"machine": {**machine(), "training_precision": resolve_precision("auto", pick_device()),
                          "load_avg_1min": os.getloadavg()[0]},
              "training": bench_training(args.steps, args.repeats, only), "sampling": bench_sampling(args.naive, only)}
    if not args.skip_fid:
        result["fid"] = bench_fid(args.fid_images)
    result["machine"]["load_avg_1min_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
