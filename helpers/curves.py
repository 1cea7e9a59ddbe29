"""Learning curves of a profile's models: ``python -m helpers.curves --profile full``.

Every checkpoint keeps its run's history (one row per epoch, with the optimizer steps done at
its end, and of validations between epochs where ``TrainConfig.curve_every`` asked for them), so
the curves cost no extra training: this reads ``artifacts/<profile>/*.pt``, draws each model's
validation measure against steps into ``docs/curves/<profile>/<model>.png`` and prints a table
of where each curve stands: its best value and the step it was reached at, its value at the
end, and how much it still moved over the last quarter of the steps (a budget sits where that
is small, or, for a model that over-fits, near its best step). Models of one task (the 32 px
priors, say) also share a figure, ``<group>.png``, their val curves side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from . import paths
from .models import PRIOR_FAMILIES, PRIOR_LEVELS, prior_checkpoint, prior_checkpoints

# checkpoint name -> (the history key that says how good it is, higher is better?)
MEASURES = {
    "vqvae": ("psnr", True), "vqvae_latent16": ("psnr", True), "vqvae2": ("psnr", True),
    **{name: ("nll", False) for size in PRIOR_FAMILIES for name in prior_checkpoints(size)},
    "superres": ("psnr", True), "classifier32": ("acc", True), "classifier64": ("acc", True),
    # the hue-free sub-category judges (helpers/recognise.py), trained by the same Trainer
    "judge32": ("acc", True), "judge64": ("acc", True),
}
# figures that set the val curves of models of one task side by side
GROUPS = {
    "priors32": tuple(PRIOR_FAMILIES[32]),
    **{f"priors64_{level}": tuple(prior_checkpoint(f, level) for f in PRIOR_FAMILIES[64])
       for level in PRIOR_LEVELS[64]},
}


def val_points(history: dict, key: str) -> list[tuple[int, float]]:
    """(step, val value) of every validation of a run, sorted: the epochs' own and those between
    them (``TrainConfig.curve_every``)."""
    values = history.get(f"val_{key}", [])
    points = dict(zip(history.get("step", [])[-len(values):] if values else [], values))
    points.update(zip(history.get("curve_step", []), history.get(f"curve_val_{key}", [])))
    return sorted(points.items())


def value_at(history: dict, key: str, step: int) -> float | None:
    """The val value of the last validation at or before ``step`` (None before the first)."""
    before = [v for s, v in val_points(history, key) if s <= step]
    return before[-1] if before else None


def curve_summary(history: dict, key: str, higher: bool = False) -> dict:
    """Steps, the best val value (the highest with ``higher``, else the lowest) and its step, the
    last val value, and its change over the last quarter of the steps (None with fewer than two
    validated points)."""
    points = val_points(history, key)
    if not points:
        steps = history.get("step", [])
        return {"steps": steps[-1] if steps else 0, "best": None, "best_step": None, "last": None,
                "last_quarter_change": None}
    steps, values = zip(*points)
    best_step, best = (max if higher else min)(points, key=lambda p: p[1])
    before = [v for s, v in points if s <= 0.75 * steps[-1]]
    change = values[-1] - before[-1] if before and len(values) > 1 else None
    return {"steps": steps[-1], "best": best, "best_step": best_step, "last": values[-1],
            "last_quarter_change": change}


def write_curves(profile: str, out_dir: str | Path | None = None, at: Sequence[int] = ()) -> list[dict]:
    """One PNG per trained model of ``profile`` under ``out_dir`` (default docs/curves/<profile>) and a row per
    model; ``at``: also each model's val value at these steps (row ``"at"``: {step: value or None})."""
    import matplotlib.pyplot as plt

    from .checkpoints import safe_load
    from .viz import plot_history

    out_dir = Path(out_dir or paths.PROJECT_ROOT / "docs" / "curves" / profile)
    rows, histories = [], {}
    for name, (key, higher) in MEASURES.items():
        path = paths.checkpoint_path(profile, name)
        if not path.exists():
            continue
        history = safe_load(path)["history"]
        if "step" not in history:
            continue                       # trained before histories recorded steps
        histories[name] = history
        fig = plot_history(history, [key], title=f"{name} ({profile}): {key} against optimizer steps", log=False,
                           x="step")
        out_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_dir / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        rows.append({"model": name, "measure": f"val {key} ({'higher' if higher else 'lower'} is better)",
                     **curve_summary(history, key, higher),
                     "at": {step: value_at(history, key, step) for step in at}})
    for group, names in GROUPS.items():
        present = [n for n in names if n in histories]
        if len(present) < 2:
            continue
        key = MEASURES[present[0]][0]
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        for name in present:
            ax.plot(*zip(*val_points(histories[name], key)), ".-", label=name)
        ax.set(xlabel="optimizer step", ylabel=f"val {key}", title=f"{group} ({profile}): val {key}")
        ax.legend()
        fig.savefig(out_dir / f"{group}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.curves", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--out", default=None, help="folder for the PNGs (default: docs/curves/<profile>)")
    parser.add_argument("--at", default="", help="comma-separated steps: also print each model's val value there")
    args = parser.parse_args(argv)
    at = [int(s) for s in args.at.split(",") if s.strip()]
    rows = write_curves(args.profile, args.out, at)
    if not rows:
        print(f"no checkpoint with a step history under {paths.artifacts_dir(args.profile)}", file=sys.stderr)
        return 1
    for r in rows:
        change = "-" if r["last_quarter_change"] is None else f"{r['last_quarter_change']:+.3f}"
        last = "-" if r["last"] is None else f"{r['last']:.3f}"
        best = "-" if r["best"] is None else f"{r['best']:.3f} at step {r['best_step']}"
        print(f"{r['model']:18s} {r['measure']:32s} steps {r['steps']:6d}  best {best}  last {last}  "
              f"last quarter {change}")
        if at:
            print(" " * 19 + "  ".join(f"@{s}: {'-' if v is None else f'{v:.3f}'}" for s, v in r["at"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
