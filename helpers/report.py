"""The results table: every number of the original report ("Emoji Generation With VQ-VAE")
beside ours, read from ``artifacts/<profile>/metrics/*.json``.

    python -m helpers.report --profile full            # writes docs/results/RESULTS.md (+ figures)
    python -m helpers.report --profile full --readme   # ... the README's headline table and the
                                                       # executed notebooks as HTML (helpers.publish)

:func:`results_table` gives the same table as a pandas DataFrame for 06_analysis. A metrics file
that does not exist yet gives "—" cells and a printed note, never an error, so the table can be
made after any prefix of the chain.

The report's VQ-VAE table swapped its PSNR and SSIM labels (its "PSNR" column held 0.954, its
"SSIM" column 29.24); SSIM lies in [-1, 1] and 29 is a PSNR in dB, so the corrected reading —
PSNR 29.24 dB, SSIM 0.954 — is what we compare with.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .profiles import get_profile, profile_names

DASH = "—"
FIDELITY = ("precision", "recall", "density", "coverage")
# measures of a prior's samples placed against references on all the val images
SAMPLE_MEASURES = ("recognisable_share", "subcategory_share", "sureness")


@dataclass(frozen=True)
class Row:
    model: str                          # what was measured
    metric: str                         # how it reads in the table
    stage: str                          # metrics file (artifacts/<profile>/metrics/<stage>.json)
    key: str                            # dotted path inside it
    report: float | tuple | None = None  # the report's number (a (low, high) range), None if it has none
    higher_is_better: bool = True
    kind: str = "num"                   # psnr | ssim | share | fid | num | int | minutes
    split: str = "identity"             # "random": read from the profile's -random run (helpers.profiles.SPLITS)

    @property
    def source(self) -> str:
        """The key of its metrics file in :func:`load_all`'s answer."""
        return self.stage if self.split == "identity" else f"{self.stage}.{self.split}"


# What each prior's samples are judged by beside FID (helpers/recognise.py, helpers/metrics): the
# category GAN-test, which colour and silhouette pass; the hue-free judge's sub-category share and
# sureness (0: a blob, 1: an unseen real emoji); precision and density against train, and recall
# and coverage, the diversity that rejection (a share of the candidates accepted) may cost.
JUDGED = {"recognisable_share": "category GAN-test share (passable by colour)",
          "subcategory_share": "sub-category share (hue-free judge)",
          "sureness": "sureness (hue-free judge)", "precision": "precision", "density": "density",
          "recall": "recall", "coverage": "coverage", "acceptance_rate": "samples kept per candidate drawn"}


def _judged(model: str, stage: str, priors: dict[str, str]) -> list[Row]:
    """One row per measure of :data:`JUDGED` and prior ({key: name}), measure by measure."""
    return [Row(model, f"{name} {label}", stage, f"{key}.{measure}")
            for measure, label in JUDGED.items() for key, name in priors.items()]


def _references(model: str, stage: str, first_prior: str) -> list[Row]:
    """What a prior file's judged measures stand on: the category classifier's accuracy on real val
    (read from ``first_prior``, which every profile trains), the judge's on real val images and on
    their blobs, and the precision and density of the real val images (their floor)."""
    return [Row(model, "category GAN-test classifier accuracy on real val images (passable by colour)", stage,
                f"{first_prior}.real_val_accuracy", kind="share"),
            Row(model, "hue-free judge: sub-category accuracy on real val images (share 1)", stage,
                "real_val.judge_accuracy", kind="share"),
            Row(model, "hue-free judge: sub-category accuracy on blurred val images, blobs (share 0)", stage,
                "blobs.judge_accuracy", kind="share"),
            Row(model, "hue-free judge: mean top probability on real val images (sureness 1)", stage,
                "real_val.judge_top_probability", kind="share"),
            Row(model, "hue-free judge: mean top probability on blobs (sureness 0)", stage,
                "blobs.judge_top_probability", kind="share"),
            Row(model, "precision of real val images (floor)", stage, "real_val.precision"),
            Row(model, "density of real val images (floor)", stage, "real_val.density"),
            Row(model, "recall of real val images (reference)", stage, "real_val.recall"),
            Row(model, "coverage of real val images (reference)", stage, "real_val.coverage")]


# Every report number (and ours beside it where the report has none: train, baselines, floors).
ROWS = [
    Row("VQ-VAE 32x32", "val PSNR (dB)", "vqvae", "val_psnr", 29.24, kind="psnr"),
    Row("VQ-VAE 32x32", "train PSNR (dB)", "vqvae", "train_psnr", kind="psnr"),
    Row("VQ-VAE 32x32", "val SSIM", "vqvae", "val_ssim", 0.954, kind="ssim"),
    Row("VQ-VAE 32x32", "train SSIM", "vqvae", "train_ssim", kind="ssim"),
    Row("VQ-VAE 32x32, the report's random split", "val PSNR (dB)", "vqvae", "val_psnr", 29.24, kind="psnr",
        split="random"),
    Row("VQ-VAE 32x32, the report's random split", "val SSIM", "vqvae", "val_ssim", 0.954, kind="ssim",
        split="random"),
    Row("VQ-VAE 32x32", "val MSE", "vqvae", "val_mse", higher_is_better=False, kind="num"),
    Row("VQ-VAE 32x32", "codebook usage (val)", "vqvae", "val_code_usage", (0.30, 0.70), kind="share"),
    Row("VQ-VAE 32x32", "codebook perplexity (val)", "vqvae", "val_perplexity", kind="num"),
    Row("PixelCNN prior (VQ-VAE)", "PixelCNN FID", "prior_vqvae", "pixelcnn.fid", 176, False, "fid"),
    Row("PixelCNN prior (VQ-VAE)", "gated PixelCNN FID", "prior_vqvae", "gated_pixelcnn.fid", None, False, "fid"),
    Row("PixelCNN prior (VQ-VAE)", "transformer FID", "prior_vqvae", "transformer.fid", None, False, "fid"),
    *_judged("PixelCNN prior (VQ-VAE)", "prior_vqvae",
             {"pixelcnn": "PixelCNN", "gated_pixelcnn": "gated PixelCNN", "transformer": "transformer"}),
    *_references("PixelCNN prior (VQ-VAE)", "prior_vqvae", "pixelcnn"),
    Row("PixelCNN prior (VQ-VAE)", "FID of VQ-VAE val reconstructions", "prior_vqvae", "fid_recon", None, False, "fid"),
    Row("PixelCNN prior (VQ-VAE)", "FID floor (val images)", "prior_vqvae", "fid_floor", None, False, "fid"),
    Row("VQ-VAE-2 64x64", "val PSNR (dB)", "vqvae2", "val_psnr", 22.83, kind="psnr"),
    Row("VQ-VAE-2 64x64", "train PSNR (dB)", "vqvae2", "train_psnr", kind="psnr"),
    Row("VQ-VAE-2 64x64", "val SSIM", "vqvae2", "val_ssim", 0.897, kind="ssim"),
    Row("VQ-VAE-2 64x64", "train SSIM", "vqvae2", "train_ssim", kind="ssim"),
    Row("VQ-VAE-2 64x64", "top codebook usage (val)", "vqvae2", "val_code_usage_top", 0.3867, kind="share"),
    Row("VQ-VAE-2 64x64", "bottom codebook usage (val)", "vqvae2", "val_code_usage_bottom", 0.5664, kind="share"),
    Row("VQ-VAE-2 priors", "PixelSNAIL FID", "prior_vqvae2", "pixelsnail.fid", 341, False, "fid"),
    Row("VQ-VAE-2 priors", "PixelCNN FID", "prior_vqvae2", "pixelcnn.fid", 416, False, "fid"),
    *_judged("VQ-VAE-2 priors", "prior_vqvae2", {"pixelsnail": "PixelSNAIL", "pixelcnn": "PixelCNN"}),
    *_references("VQ-VAE-2 priors", "prior_vqvae2", "pixelsnail"),
    Row("VQ-VAE-2 priors", "FID of VQ-VAE-2 val reconstructions", "prior_vqvae2", "fid_recon", None, False, "fid"),
    Row("VQ-VAE-2 priors", "FID floor (val images)", "prior_vqvae2", "fid_floor", None, False, "fid"),
    Row("Inpainting 32x32, 8x8 mask", "autoencoder val PSNR (dB)", "extensions", "inpainting.autoencoder.val_psnr",
        25.32, kind="psnr"),
    Row("Inpainting 32x32, 8x8 mask", "autoencoder val SSIM", "extensions", "inpainting.autoencoder.val_ssim",
        0.911, kind="ssim"),
    Row("Inpainting 32x32, 8x8 mask", "prior val PSNR (dB)", "extensions", "inpainting.prior.val_psnr",
        25.32, kind="psnr"),
    Row("Inpainting 32x32, 8x8 mask", "prior val SSIM", "extensions", "inpainting.prior.val_ssim", 0.911, kind="ssim"),
    Row("Inpainting 32x32, 8x8 mask", "autoencoder train PSNR (dB)", "extensions",
        "inpainting.autoencoder.train_psnr", kind="psnr"),
    Row("Inpainting 32x32, 8x8 mask", "prior train PSNR (dB)", "extensions", "inpainting.prior.train_psnr",
        kind="psnr"),
    Row("Inpainting 32x32, 8x8 mask", "autoencoder val PSNR, masked region (dB)", "extensions",
        "inpainting.autoencoder.val_psnr_masked", kind="psnr"),
    Row("Inpainting 32x32, 8x8 mask", "prior val PSNR, masked region (dB)", "extensions",
        "inpainting.prior.val_psnr_masked", kind="psnr"),
    Row("Super-resolution 64->128", "decoder val PSNR (dB)", "extensions", "superres.decoder.val_psnr", 23.65,
        kind="psnr"),
    Row("Super-resolution 64->128", "decoder val SSIM", "extensions", "superres.decoder.val_ssim", 0.797, kind="ssim"),
    Row("Super-resolution 64->128", "bicubic val PSNR (dB)", "extensions", "superres.bicubic.val_psnr", kind="psnr"),
    Row("Super-resolution 64->128", "bicubic val SSIM", "extensions", "superres.bicubic.val_ssim", kind="ssim"),
    Row("Super-resolution 64->128", "Lanczos val PSNR (dB)", "extensions", "superres.lanczos.val_psnr", kind="psnr"),
    Row("Super-resolution 64->128", "Lanczos val SSIM", "extensions", "superres.lanczos.val_ssim", kind="ssim"),
    Row("Analysis", "samples nearer train than the median val emoji", "analysis", "memorized_share", None, False,
        "share"),
    Row("Analysis", "samples nearer train than the nearest 5 % of val emojis (near copies)", "analysis",
        "near_copy_share", None, False, "share"),
    Row("Analysis", "k-means clusters of the codebook (by silhouette)", "analysis", "k", kind="int"),
    Row("Analysis", "silhouette at that k", "analysis", "silhouette", kind="num"),
    Row("Whole chain", "minutes, all notebooks run (timing.json total)", "timing", "total", None, False, "minutes"),
]

STAGES = ["vqvae", "prior_vqvae", "vqvae2", "prior_vqvae2", "extensions", "analysis", "timing"]

INTRO = """\
Every number of the original report ("Emoji Generation With VQ-VAE") beside ours, written by
`python -m helpers.report --profile {profile}` from `artifacts/{profile}/metrics/*.json`.
PSNR in dB on images in [0, 1]; SSIM with an 11x11 Gaussian window; MSE, PSNR and SSIM per
image, then averaged. FID against a seeded subset of the train images (all of them when the
profile's `eval_limit` is None) with the TF-Inception (2015-12-05) network.
Report numbers are quoted as printed; "—" means the report gives no number there (or, in our
column, that the stage has not been run). "Better" compares ours with the report (for the
report's 30-70 % codebook usage, with its upper end).

Beside FID, each prior's samples are judged three ways (helpers/recognise.py). The **category
GAN-test share** is the share of samples a colour classifier of the ~10 categories puts in the
category they were drawn for, over its accuracy on real val images: passable by colour and
silhouette (a yellow disc is a Smiley, a rectangle a Flag), so blobs score close to 1. The
**hue-free judge** classifies the ~100 sub-categories from a grey image (the channel mean), so it
must read shapes and features; its figures are placed between the real val images (1) and the
same images blurred to blobs (a Gaussian blur, its sigma a fixed share of the side: the colours
and a rough silhouette, no feature; 0). **Sub-category share**: its accuracy on samples drawn for
a sub-category, placed so; only priors conditioned on sub-categories have one ("not measured"
for priors conditioned on categories). **Sureness**: its mean top probability on the samples,
placed so, for every prior. **Precision** (Kynkaanniemi et al. 2019, k = 3) and **density**
(Naeem et al. 2020, k = 5) of the samples against the train images' Inception features, beside
those of the real val images, and **recall** and **coverage**, what share of the train images'
variety the samples reach. A setting may keep the best of k candidates by a separate colour
classifier of the priors' labels (rejection sampling; never the judge): **samples kept per
candidate drawn** is 1 / k.

The report's VQ-VAE table swapped its PSNR and SSIM labels (29.24 under "SSIM", 0.954 under
"PSNR"); since SSIM cannot exceed 1, the corrected reading is **PSNR 29.24 dB, SSIM 0.954**,
and that is what the first rows compare with.
"""


# ---------------------------------------------------------------------------------------------
# reading

def load_all(profile: str) -> tuple[dict[str, dict], list[str]]:
    """{source: metrics} of every metrics file that exists (a source is a stage, or for the rows of
    the random split, :attr:`Row.source`), and one note per missing or unreadable one."""
    found, notes = {}, []
    random_run = get_profile(profile, split="random").name
    wanted = [(stage, profile, stage) for stage in STAGES]
    wanted += sorted({(row.source, random_run, row.stage) for row in ROWS if row.split == "random"})
    for source, run, stage in wanted:
        path = paths.metrics_path(run, stage)
        if not path.exists():
            producer = paths.PRODUCERS.get(f"{stage}_metrics", "the pipeline" if stage == "timing" else "06_analysis")
            how = f"{producer}" if run == profile else f"{producer} of profile {run}"
            notes.append(f"{path.parent.parent.name}/metrics/{path.name} is missing (written by {how}): "
                         f"its cells show {DASH}")
            continue
        try:
            found[source] = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            notes.append(f"{path.name} is not valid JSON ({e}): its cells show {DASH}")
    return found, notes


def lookup(metrics: dict, key: str):
    """The value at a dotted ``key`` ("pixelcnn.fid"): a number, a string saying why there is none,
    or None. A part that was not measured as a whole says why in its ``not_measured`` (a dataset
    without 128 px images: ``superres.not_measured``), and every key under it reads that reason."""
    value = metrics
    for part in key.split("."):
        if isinstance(value, dict) and part not in value and isinstance(value.get("not_measured"), str):
            return f"not measured: {value['not_measured']}"
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, str):    # a measure a file says it did not take ("not measured: ...")
        return value
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def time_capped(metrics: dict | None, key: str) -> bool:
    """Did the wall-clock cap cut the training behind the value at ``key``? (Its own dict says so:
    ``pixelcnn.fid`` -> ``pixelcnn.time_capped``, ``val_psnr`` -> ``time_capped``.)"""
    owner = metrics or {}
    for part in key.split(".")[:-1]:
        owner = owner.get(part) if isinstance(owner, dict) else None
    return isinstance(owner, dict) and owner.get("time_capped") is True


def _n_reference(p: dict):
    """How many train images an FID was measured against: the profile's seeded FID reference
    (``n_reference``), else (older metrics files) the whole train split."""
    return p.get("n_reference", p.get("n_train", "?"))


def protocol_text(metrics: dict | None) -> str:
    """The protocol of one metrics file in a few words: split, image counts, image size, N samples."""
    p = (metrics or {}).get("protocol") or {}
    parts = []
    if "split" in p:
        parts.append(str(p["split"]))
    if "n_train" in p or "n_val" in p:
        parts.append(f"{p.get('n_train', '?')} train / {p.get('n_val', '?')} val images")
    n_eval = p.get("n_eval") or {}   # the quick profile evaluates a subset of each split
    if any(n_eval.get(split) != p.get(f"n_{split}") for split in n_eval):
        parts.append("evaluated on " + " / ".join(f"{n} {split}" for split, n in n_eval.items()))
    if "image_size" in p:
        size = p["image_size"]
        parts.append(f"{size}x{size} px" if isinstance(size, int) else f"{size} px")
    if "n_samples" in p:
        parts.append(f"N = {p['n_samples']} samples vs {_n_reference(p)} {p.get('reference', 'train images')}")
    for key in ("masks", "n_masks", "mask", "select"):
        if key in p:
            parts.append(f"{key.replace('_', ' ')}: {p[key]}")
    if "profile" in p:
        parts.append(f"profile {p['profile']}")
    for name, sub in p.items():   # sub-protocols (extensions.json: inpainting, superres)
        if isinstance(sub, dict) and name not in ("n_eval", "machine"):
            parts.append(f"{name}: {protocol_text({'protocol': sub})}")
    return "; ".join(parts) if parts else DASH


def machine_text(metrics: dict | None, commit: bool = True) -> str:
    """Where a metrics file was made, in a few words: CPU (its model, where recorded), its vector
    instructions, the GPU (or MPS) where one did the work, the training precision "auto" took
    there, threads, and (``commit``) the commit (:func:`helpers.runtime.machine`)."""
    p = (metrics or {}).get("protocol") or {}
    m = p.get("machine")
    if not isinstance(m, dict):
        return "not recorded"
    cpu = f"{m.get('cpu', '?')} {m.get('cpu_capability', '?')}"
    device = m.get("device", "cpu")
    on_device = device.split(":")[0] != "cpu"   # trained there: its name and its bf16, not the host's
    bf16 = m.get("device_bf16") if on_device else m.get("fast_bf16")
    parts = [f"{m['cpu_model']} ({cpu})" if m.get("cpu_model") else cpu,
             *([f"{m.get('device_name') or device} ({device})"] if on_device else []),
             "bf16 training" if bf16 else "fp32 training (no fast bf16)",
             f"{m.get('threads', '?')} thread{'' if m.get('threads') == 1 else 's'}", f"torch {m.get('torch', '?')}",
             *([f"commit {m.get('commit') or '?'}"] if commit else [])]
    return ", ".join(parts)


def machines_text(metrics_files: list[dict]) -> str:
    """Where several metrics files were made: each machine once, with the commits that ran on it."""
    commits: dict[str, set] = {}
    for metrics in metrics_files:
        machine = ((metrics or {}).get("protocol") or {}).get("machine")
        commit = machine.get("commit") if isinstance(machine, dict) else None
        commits.setdefault(machine_text(metrics, commit=False), set()).update([commit] if commit else [])
    return "; ".join(text + (f", commit{'s' if len(c) > 1 else ''} {', '.join(sorted(c))}" if c else "")
                     for text, c in sorted(commits.items())) or DASH


def row_protocol(row: Row, metrics: dict | None) -> str:
    """What one number was measured on, in short: image size, split and count (or N samples).
    A protocol may hold a sub-protocol per part (``extensions.json``: ``protocol.inpainting``,
    ``protocol.superres``); a row reads the one named by the first part of its key."""
    p = (metrics or {}).get("protocol") or {}
    if not p:
        return DASH
    sub = p.get(row.key.split(".")[0])
    if isinstance(sub, dict):
        p = {**p, **sub}
    size = p.get("image_size")
    parts = [f"{size} px"] if isinstance(size, int) else []
    owner, measure = row.key.rpartition(".")[::2]
    if row.key in ("fid_floor", "fid_recon") or (owner == "real_val" and measure in FIDELITY):
        parts.append(f"{p.get('n_val_reference', p.get('n_val', '?'))} val vs {_n_reference(p)} train")
    elif (row.kind == "fid" or measure in FIDELITY) and "n_samples" in p:
        parts.append(f"N = {p['n_samples']} vs {_n_reference(p)} train")
    elif measure in SAMPLE_MEASURES and "n_samples" in p:
        parts.append(f"N = {p['n_samples']} samples, references on {p.get('n_val', '?')} val")
    elif row.stage == "analysis" and "n_samples" in p:
        parts.append(f"N = {p['n_samples']} samples")
    else:
        split = "train" if "train" in row.metric.split() else "val"
        n = (p.get("n_eval") or {}).get(split, p.get(f"n_{split}"))
        if n is not None:
            parts.append(f"{n} {split}")
    return ", ".join(parts) if parts else DASH


def _better(row: Row, ours) -> str:
    if not isinstance(ours, (int, float)) or row.report is None:   # None, or why it was not measured
        return DASH
    target = max(row.report) if isinstance(row.report, tuple) else row.report
    return "yes" if (ours > target if row.higher_is_better else ours < target) else "no"


def fmt(value, kind: str) -> str:
    """A table cell: PSNR to 2 decimals, SSIM to 3, shares in %, FID to 1 decimal, minutes."""
    if value is None:
        return DASH
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return f"{value[0] * 100:.0f}-{value[1] * 100:.0f} %" if kind == "share" else f"{value[0]}-{value[1]}"
    if kind == "psnr":
        return f"{value:.2f}"
    if kind == "ssim":
        return f"{value:.3f}"
    if kind == "share":
        return f"{value * 100:.2f} %"
    if kind == "fid":
        return f"{value:.1f}"
    if kind == "int":
        return f"{int(value)}"
    if kind == "minutes":
        return f"{value / 60:.1f}"
    return f"{value:.4g}"


def results_rows(profile: str) -> tuple[list[dict], dict[str, dict], list[str]]:
    """One dict per table row — model, metric, report, ours (raw numbers, None when absent),
    better, kind, protocol, and for an FID its ratio to the same file's ``fid_floor`` (the FID of
    real val images: how far from real a set of images is, comparable across val sets) — the
    metrics files found, and the notes on missing ones."""
    found, notes = load_all(profile)
    rows = []
    for row in ROWS:
        metrics = found.get(row.source)
        ours = None if metrics is None else lookup(metrics, row.key)
        floor = None if metrics is None or row.kind != "fid" or row.key == "fid_floor" else lookup(metrics, "fid_floor")
        rows.append({"model": row.model, "metric": row.metric, "report": row.report, "ours": ours,
                     "better": _better(row, ours), "kind": row.kind, "protocol": row_protocol(row, metrics),
                     "time_capped": time_capped(metrics, row.key),
                     "x_floor": ours / floor if isinstance(ours, (int, float)) and floor else None})
    return rows, found, notes


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame([{"model": r["model"], "metric": r["metric"], "report": fmt(r["report"], r["kind"]),
                          "ours": fmt(r["ours"], r["kind"]) + (" (time-capped)" if r["time_capped"] else "")
                          + ("" if r.get("x_floor") is None else f" ({r['x_floor']:.2f}x floor)"),
                          "better": r["better"], "measured on": r["protocol"]}
                         for r in rows])


def results_table(profile: str):
    """The results table as a pandas DataFrame of display strings (what RESULTS.md shows);
    prints a note per missing metrics file."""
    rows, _, notes = results_rows(profile)
    for note in notes:
        print(f"note: {note}")
    return _frame(rows)


# ---------------------------------------------------------------------------------------------
# writing

def _markdown_table(df) -> str:
    cells = [list(df.columns)] + df.astype(str).values.tolist()
    escape = lambda s: s.replace("|", "\\|")                      # noqa: E731
    lines = ["| " + " | ".join(escape(c) for c in cells[0]) + " |",
             "| " + " | ".join("---" for _ in cells[0]) + " |"]
    lines += ["| " + " | ".join(escape(c) for c in r) + " |" for r in cells[1:]]
    return "\n".join(lines)


def copy_figures(profile: str, out_dir: Path) -> list[Path]:
    """Copy every PNG under ``artifacts/<profile>/figures`` into ``out_dir``; the copies, sorted."""
    src = paths.figures_dir(profile)
    copied = []
    for png in sorted(src.glob("*.png")) if src.is_dir() else []:
        dst = out_dir / png.name
        shutil.copy2(png, dst)
        copied.append(dst)
    return copied


def write_results(profile: str, out_dir: str | Path | None = None) -> Path:
    """Write ``RESULTS.md`` (and the figures of the run) into ``out_dir`` (default docs/results)."""
    import pandas as pd

    out_dir = Path(out_dir) if out_dir is not None else paths.DOCS_RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, found, notes = results_rows(profile)
    for note in notes:
        print(f"note: {note}")
    table = _frame(rows)
    # A random-split source ("vqvae.random") is its stage's file; its protocol names split and profile.
    protocols = pd.DataFrame([{"metrics file": f"{source.split('.')[0]}.json", "protocol": protocol_text(metrics),
                               "ran on": machine_text(metrics)}
                              for source, metrics in found.items() if source != "timing"])
    figures = copy_figures(profile, out_dir)

    parts = [f"# Results (profile `{profile}`)", "", INTRO.format(profile=profile), _markdown_table(table), ""]
    if len(protocols):
        parts += ["## Protocol of each metrics file", "", _markdown_table(protocols), ""]
    if notes:
        parts += ["## Not yet measured", ""] + [f"- {n}" for n in notes] + [""]
    if figures:
        parts += ["## Figures", ""]
        parts += [f"![{p.stem.replace('_', ' ')}]({p.name})" for p in figures] + [""]
    path = out_dir / "RESULTS.md"
    path.write_text("\n".join(parts))
    print(f"wrote {path} ({len(rows)} rows, {len(figures)} figures)")
    return path


README_MARKERS = ("<!-- results table: begin -->", "<!-- results table: end -->")


# What the README shows of each prior beside its FID; precision, density, recall, coverage and
# acceptance stay in RESULTS.md with the real val images' figures.
HEADLINE_JUDGED = tuple(JUDGED[k] for k in ("recognisable_share", "subcategory_share", "sureness"))


def headline_rows(rows: list[dict]) -> list[dict]:
    """The rows the README shows, of those the run measured: every one the report has a number
    for, every FID (with its ratio to the floor) and beside them each prior's
    :data:`HEADLINE_JUDGED` measures. A row the run did not measure (a prior the profile does not
    train, a notebook not run) is left out; the whole table stays in RESULTS.md."""
    return [r for r in rows if r["ours"] is not None
            and (r["report"] is not None or r["kind"] == "fid" or r["metric"].endswith(HEADLINE_JUDGED))]


def write_readme_table(profile: str, readme: str | Path | None = None) -> Path:
    """Replace what stands between the two :data:`README_MARKERS` of the README with the headline
    rows of ``profile``'s results, and say which run they come from; nothing else is touched."""
    readme = Path(readme) if readme is not None else paths.PROJECT_ROOT / "README.md"
    text = readme.read_text()
    begin, end = README_MARKERS
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{readme} needs one {begin!r} line before one {end!r} line around its results table")
    rows, found, notes = results_rows(profile)
    table = _frame(headline_rows(rows)).drop(columns=["better"])
    machines = machines_text([m for stage, m in found.items() if stage != "timing"])
    source = (f"Profile `{profile}`, from `artifacts/{profile}/metrics/` ({len(found)} metrics files"
              + (f"; not yet measured: {len(notes)}" if notes else "") + f"); ran on: {machines}.")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{source}\n\n{_markdown_table(table)}\n{end}{tail}")
    print(f"wrote the results table of {readme} ({len(table)} rows)")
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.report", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=profile_names())
    parser.add_argument("--out", default=None, help=f"output folder (default {paths.DOCS_RESULTS_DIR})")
    parser.add_argument("--readme", action="store_true", help="also rewrite the README's headline results table and export the finished "
                        "notebooks of the run as HTML into docs/notebooks")
    args = parser.parse_args(argv)
    write_results(args.profile, args.out)
    if args.readme:
        from .publish import export_notebooks   # its nbconvert is needed only to publish

        write_readme_table(args.profile)
        export_notebooks(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
