"""FID feature extraction speed: the TorchScript as shipped ("plain") vs the mapped,
channels_last extractor ("fast"), on the same images in the same process.

    python benchmarks/fid_speed.py [--n 40] [--size 32] [--batch-size 8] [--repeats 2] [--threads N]

Prints one JSON object: seconds per 1000 images for each path (best of ``repeats``
timed passes after one warm-up batch), ``fid_speedup`` = plain / fast, the largest absolute
feature difference between the paths, and a check that a cached real set is computed once
and then reused without touching the network. Images: the dataset of $EMOJIVQ_PROFILE when
00_data has been run, else Twemoji SVGs rendered from data/raw, else synthetic discs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import metrics  # noqa: E402
from helpers.runtime import machine  # noqa: E402


def benchmark_images(n: int, size: int) -> tuple[torch.Tensor, str]:
    """``n`` uint8 emoji images (n,3,size,size) and where they came from."""
    try:
        from helpers.data import load_dataset

        images = load_dataset().images(size if size in (32, 64) else 32, "val")
        if len(images) >= n:
            return images[:n], "dataset (val split)"
    except Exception:  # no dataset yet: fall through to rendering
        pass
    try:
        from helpers.data import render_svg
        from helpers.paths import RAW_DIR

        svgs = sorted(RAW_DIR.glob("**/*.svg"))
        svgs = svgs[::max(1, len(svgs) // n)][:n]
        if len(svgs) == n:
            rendered = [torch.from_numpy(render_svg(p, size)).permute(2, 0, 1) for p in svgs]
            return torch.stack(rendered).contiguous(), "twemoji SVGs rendered from data/raw"
    except Exception:
        pass
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
    for i in range(n):
        cy, cx, r = (torch.rand(3, generator=g) * torch.tensor([size, size, size / 2])).tolist()
        colour = (torch.rand(3, generator=g) * 255).to(torch.uint8)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (r + 2) ** 2
        images[i][:, disc] = colour[:, None]
    return images, "synthetic discs"


def time_paths(images: torch.Tensor, batch_size: int, repeats: int) -> tuple[dict, dict, dict]:
    """Best wall and CPU seconds per image of each path over ``repeats`` rounds, and the
    features of each. Rounds alternate plain and fast so that a busy machine slows both
    alike; CPU time (this process, all threads) is the steadier figure when others share it."""
    kinds = ("plain", "fast")
    for kind in kinds:
        metrics.feature_extractor(kind)                   # build outside the timing
        metrics.inception_features(images[:batch_size], batch_size, kind=kind, progress=False)  # warm-up
    wall, cpu, feats = {k: float("inf") for k in kinds}, {k: float("inf") for k in kinds}, {}
    for _ in range(repeats):
        for kind in kinds:
            t0, c0 = time.perf_counter(), time.process_time()
            feats[kind] = metrics.inception_features(images, batch_size, kind=kind, progress=False)
            wall[kind] = min(wall[kind], (time.perf_counter() - t0) / len(images))
            cpu[kind] = min(cpu[kind], (time.process_time() - c0) / len(images))
    return wall, cpu, feats


def cache_check(images: torch.Tensor, batch_size: int) -> dict:
    """A real set's features are computed once, then reused without running the network."""
    with tempfile.TemporaryDirectory() as tmp:
        before = metrics.COUNTERS["images"]
        first = metrics.cached_features(images, "bench-train-32", tmp, batch_size=batch_size,
                                        progress=False, verbose=False)
        after_first = metrics.COUNTERS["images"]
        t0 = time.perf_counter()
        second = metrics.cached_features(images, "bench-train-32", tmp, verbose=False)
        reuse_seconds = time.perf_counter() - t0
        after_second = metrics.COUNTERS["images"]
    return {"first_call_network_images": after_first - before,
            "second_call_network_images": after_second - after_first,
            "second_call_seconds": round(reuse_seconds, 4),
            "identical": bool(torch.equal(first, second))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="images per timed pass")
    ap.add_argument("--size", type=int, default=32, help="image side in px (resized to 299 inside)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per path; the best is kept")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--no-cache-check", action="store_true")
    args = ap.parse_args(argv)

    images, source = benchmark_images(args.n, args.size)
    if args.threads:
        torch.set_num_threads(args.threads)
    wall, cpu, feats = time_paths(images, args.batch_size, args.repeats)
    (plain_s, fast_s), (plain_f, fast_f) = (wall["plain"], wall["fast"]), (feats["plain"], feats["fast"])
    diff = (plain_f - fast_f).abs()
    out = {
        "fid_seconds_per_1000_plain": round(plain_s * 1000, 1),
        "fid_seconds_per_1000_fast": round(fast_s * 1000, 1),
        "fid_speedup": round(plain_s / fast_s, 3),
        "fid_cpu_seconds_per_1000_plain": round(cpu["plain"] * 1000, 1),
        "fid_cpu_seconds_per_1000_fast": round(cpu["fast"] * 1000, 1),
        "fid_speedup_cpu_time": round(cpu["plain"] / cpu["fast"], 3),
        "fid_feature_max_abs_diff": float(diff.max()),
        "fid_feature_mean_abs_diff": float(diff.mean()),
        "fid_feature_max_abs_value": float(plain_f.abs().max()),
        "fid_between_paths": metrics.fid_from_features(plain_f, fast_f),
        "features_equal_within_1e-4": bool(diff.max() <= 1e-4),
        "n_images": len(images), "image_size": args.size, "batch_size": args.batch_size,
        "repeats": args.repeats, "images_from": source,
        "machine": machine(),   # CPU, vector instructions, fast bf16, threads, torch, commit
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if not args.no_cache_check:
        out["cache"] = cache_check(images, args.batch_size)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
