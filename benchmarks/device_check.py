"""The device check: what a GPU (or Apple MPS) changes, proven on the machine that has one, in
under ten minutes and without the network. ``make device-check DATA=<folder>``, or::

    python benchmarks/device_check.py --data <folder holding smoke/dataset.pt> [--out check.json]

Four parts, each reported as passed / failed with its seconds, then one JSON object (``--out``
writes it to a file too); the exit status is 1 if any part failed:

1. **tests**: the unit tests that touch the device (tests/test_on_device.py on this machine's
   device, tests/test_device.py's placement and discipline checks);
2. **chain**: the smoke chain, notebooks 01-06, on the device, from the already built smoke
   dataset in ``--data`` (notebook 00 is not run: it fetches the emoji packages); every metrics
   file must name the device as the one it ran on;
3. **inception**: FID features of ``--images`` real smoke images on the device against the
   CPU's: the largest difference must be under 1e-4;
4. **speed**: training steps per second of every model of ``benchmarks/run.py`` on the device
   (``--steps`` timed batches, after one warm-up pass), beside the CPU's in the table of
   docs/PERFORMANCE.md, "Benchmark on the reference machine".

It installs and downloads nothing: the project and its packages must be installed already (the
README, "On a GPU or a Mac", says how to carry them to a machine without the network). On a machine
without a GPU or MPS it runs on the CPU and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from helpers.runtime import machine, pick_device, resolve_precision, synchronize  # noqa: E402

TOLERANCE = 1e-4   # Inception features on the device against the CPU's
# The rows of docs/PERFORMANCE.md's reference table, by the name benchmarks/run.py gives the workload.
REFERENCE_ROWS = {"vqvae32": "VQ-VAE 32", "vqvae2_64": "VQ-VAE-2 64", "pixelcnn": "PixelCNN",
                  "gated_pixelcnn": "gated PixelCNN", "pixelsnail_top": "PixelSNAIL top",
                  "pixelsnail_bottom": "PixelSNAIL bottom", "superres": "SR decoder"}
REFERENCE_SECTION = "## Benchmark on the reference machine"


def cpu_reference(performance_md: Path = ROOT / "docs" / "PERFORMANCE.md") -> dict[str, float]:
    """Steps per second of each model on the reference CPU (the project's path), read from the
    first table of docs/PERFORMANCE.md's section "Benchmark on the reference machine"."""
    text = performance_md.read_text()
    if REFERENCE_SECTION not in text:
        return {}
    lines = text[text.index(REFERENCE_SECTION):].splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return {}
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    header, rows = table[0], table[2:]
    if "fast steps/s" not in header:
        return {}
    column = header.index("fast steps/s")
    out = {}
    for name, label in REFERENCE_ROWS.items():
        row = next((r for r in rows if r[0].startswith(label)), None)
        if row is not None:
            out[name] = float(row[column])
    return out


def _part(name: str, fn) -> dict:
    print(f"--- {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        result = {"passed": True, **fn()}
    except Exception as e:   # a part that breaks is reported, and the other parts still run
        result = {"passed": False, "error": f"{type(e).__name__}: {e}"}
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(f"--- {name}: {'passed' if result['passed'] else 'FAILED'} in {result['seconds']} s", file=sys.stderr,
          flush=True)
    return result


def _run(cmd: list[str], env: dict, timeout: float) -> str:
    """Run ``cmd`` in a session of its own (a notebook kernel it starts is stopped with it on a
    timeout); its stdout, or an error with the end of its output."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise TimeoutError(f"{' '.join(cmd)} did not finish in {timeout:g} s:\n{out[-2000:]}\n{err[-2000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}\n{err[-3000:]}")
    return out


def check_tests(env: dict) -> dict:
    out = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_on_device.py",
                "tests/test_device.py"], env, timeout=300)
    return {"summary": out.strip().splitlines()[-1]}


def check_chain(data: Path, env: dict, timeout: float) -> dict:
    if not (data / "smoke" / "dataset.pt").is_file():
        raise FileNotFoundError(f"{data}/smoke/dataset.pt: no smoke dataset there (build it with "
                                "`python -m helpers.pipeline --profile smoke --only 00` where the network is)")
    with tempfile.TemporaryDirectory() as artifacts:
        chain_env = {**env, "EMOJIVQ_PROCESSED_DIR": str(data), "EMOJIVQ_ARTIFACTS_DIR": artifacts,
                     "EMOJIVQ_PROFILE": "smoke"}
        _run([sys.executable, "-m", "helpers.pipeline", "--profile", "smoke", "--from", "01"], chain_env, timeout)
        devices = {}
        for path in sorted((Path(artifacts) / "smoke" / "metrics").glob("*.json")):
            m = json.loads(path.read_text()).get("protocol", {}).get("machine")
            if isinstance(m, dict):
                devices[path.stem] = m.get("device")
    expected = str(machine()["device"])
    wrong = {stage: d for stage, d in devices.items() if d != expected}
    if not devices or wrong:
        raise AssertionError(f"metrics files should say they ran on {expected}: {wrong or 'none found'}")
    return {"metrics_files": len(devices), "ran_on": expected}


def check_inception(data: Path, n: int) -> dict:
    from helpers import metrics, paths
    from helpers.data import load_dataset

    saved, paths.PROCESSED_ROOT = paths.PROCESSED_ROOT, data   # the smoke dataset in --data
    try:
        images = load_dataset("smoke").images(64)[:n]
    finally:
        paths.PROCESSED_ROOT = saved
    device = pick_device()
    here = metrics.inception_features(images, device=device, progress=False)
    cpu = metrics.inception_features(images, device="cpu", progress=False)
    diff = float((here - cpu).abs().max())
    if not diff < TOLERANCE:
        raise AssertionError(f"features on {device} differ from the CPU's by {diff:.2e} (limit {TOLERANCE:g})")
    return {"images": len(images), "max_abs_difference": diff, "device": str(device)}


def check_speed(steps: int) -> dict:
    from run import train_rate, workloads

    device = pick_device()
    reference = cpu_reference()
    precision = resolve_precision("auto", device)
    rows = {}
    for name, (make, batch, make_data) in workloads(torch.Generator().manual_seed(0)).items():
        data = make_data(batch * steps)
        synchronize(device)
        rate = train_rate(make, batch, data, precision)
        rows[name] = {"batch": batch, "steps_per_s": round(rate / batch, 2), "precision": precision,
                      "cpu_reference_steps_per_s": reference.get(name),
                      "times_the_cpu": round(rate / batch / reference[name], 2) if name in reference else None}
        print(f"speed {name}: {rows[name]}", file=sys.stderr, flush=True)
    return {"models": rows, "cpu_reference": "docs/PERFORMANCE.md, \"Benchmark on the reference machine\""}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding smoke/dataset.pt (a processed dir)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--images", type=int, default=256, help="real images for the Inception comparison")
    p.add_argument("--steps", type=int, default=10, help="timed training batches per model")
    p.add_argument("--chain-timeout", type=float, default=480, help="seconds the smoke chain may take")
    p.add_argument("--skip", action="append", default=[], choices=["tests", "chain", "inception", "speed"],
                   help="leave a part out (repeatable)")
    args = p.parse_args(argv)

    device = pick_device()
    env = {k: v for k, v in os.environ.items() if k != "EMOJIVQ_PROFILE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = {"machine": machine(device), "accelerator": device.type != "cpu", "parts": {}}
    if device.type == "cpu":
        print("no GPU or MPS found: the check runs on the CPU, and proves nothing about a GPU", file=sys.stderr)
    parts = {"tests": lambda: check_tests(env), "chain": lambda: check_chain(args.data.resolve(), env, args.chain_timeout),
             "inception": lambda: check_inception(args.data.resolve(), args.images),
             "speed": lambda: check_speed(args.steps)}
    start = time.perf_counter()
    for name, fn in parts.items():
        result["parts"][name] = {"passed": None, "skipped": True} if name in args.skip else _part(name, fn)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["passed"] = all(r["passed"] is not False for r in result["parts"].values())
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
