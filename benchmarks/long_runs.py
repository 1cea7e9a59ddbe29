"""What would make the full profile's long training runs faster: ``torch.compile``, or twice the
batch? Training speed of each model through the one Trainer, on random data of the real shapes
(the workloads of ``benchmarks/run.py``), on the project's path (bf16 autocast where the CPU has
it): eager at the profile's batch, compiled at that batch, eager at twice it.

    python benchmarks/long_runs.py [--only transformer,vqvae32] [--steps 30] [--repeats 2]

Prints one JSON object, per model: images per second of each (best of ``--repeats`` alternating
runs of ``--steps`` batches, after warm-up), the seconds the first compiled steps took beyond
their share (compiling: once per process, and every notebook is its own process), and what each
would save over full's budget for that model, in minutes (negative: it costs):
``compile_minutes_saved`` = budget x (eager - compiled seconds per step) - compile seconds;
``double_batch_minutes_saved`` = the budget's steps against half as many of twice the batch
(the same images seen; whether a scaled learning rate then trains as well is a training run's
question, worth asking only where this is clearly positive).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import fit_seconds, workloads  # noqa: E402

from helpers.profiles import get_profile  # noqa: E402
from helpers.runtime import machine  # noqa: E402


def full_budgets() -> dict[str, int]:
    """Full's steps for each benchmark workload that full trains."""
    p = get_profile("full")
    return {"vqvae32": p.vqvae_steps, "vqvae2_64": p.vqvae2_steps, **p.prior_steps,
            "pixelsnail_top": p.prior2_steps["pixelsnail_top"],
            "pixelsnail_bottom": p.prior2_steps["pixelsnail_bottom"], "superres": p.superres_steps}


def compare(make, batch: int, data: tuple, repeats: int, warm_steps: int = 2) -> dict:
    """Seconds per step of eager (batch), compiled (batch) and eager at twice the batch over the
    same ``data`` (whole batches of both sizes: a short last batch would make the compiled model
    compile again), and the compile time."""
    torch.manual_seed(0)
    eager, compiled = make(), make()
    compiled.compile()
    warm = tuple(t[:2 * batch * warm_steps] for t in data)
    fit_seconds(eager, warm, batch)
    fit_seconds(eager, warm, 2 * batch)
    first = fit_seconds(compiled, tuple(t[:batch * warm_steps] for t in warm), batch)   # compiles, then warms up
    runs = {"eager": (eager, batch), "compiled": (compiled, batch), "double_batch": (eager, 2 * batch)}
    seconds = {kind: [] for kind in runs}
    for _ in range(repeats):                      # alternate, so that a load drift hits all alike
        for kind, (model, b) in runs.items():
            seconds[kind].append(fit_seconds(model, data, b))
    step_s = {kind: min(seconds[kind]) / (len(data[0]) // b) for kind, (_, b) in runs.items()}
    return {"batch": batch, "images_per_s": round(batch / step_s["eager"], 1),
            "compiled_images_per_s": round(batch / step_s["compiled"], 1),
            "double_batch_images_per_s": round(2 * batch / step_s["double_batch"], 1),
            "compile_speedup": round(step_s["eager"] / step_s["compiled"], 3),
            "compile_seconds": round(first - warm_steps * step_s["compiled"], 1),
            "step_seconds": {k: round(v, 4) for k, v in step_s.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed batches per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default=None, help="comma-separated workload names")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    budgets = full_budgets()
    out = {"machine": machine(), "steps": args.steps, "repeats": args.repeats, "models": {}}
    for name, (make, batch, make_data) in workloads(torch.Generator().manual_seed(0)).items():
        if only and name not in only:
            continue
        if name not in budgets:
            print(f"{name}: skipped, full does not train it", file=sys.stderr, flush=True)
            continue
        r = compare(make, batch, make_data(batch * args.steps), args.repeats)
        s, n = r["step_seconds"], budgets[name]
        r.update(full_steps=n,
                 compile_minutes_saved=round((n * (s["eager"] - s["compiled"]) - r["compile_seconds"]) / 60, 2),
                 double_batch_minutes_saved=round(n * (s["eager"] - s["double_batch"] / 2) / 60, 2))
        out["models"][name] = r
        print(f"{name}: {r}", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
