"""Resume after a real SIGKILL: a training process killed mid-epoch, started again, ends exactly where
an uninterrupted run of the same seed ends.

Bit-identical on CPU because everything a step depends on is in ``<name>.last.pt``: weights, all
quantizer buffers (EMA statistics, ring buffer, step counters), Adam's moments, the global RNG
state (restart seeds, ring-buffer picks), the history, and the epoch, from which the shuffling is
re-seeded. Both runs use one thread, so every reduction runs in the same order.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers.checkpoints import load_checkpoint

SCRIPT = Path(__file__).with_name("_tiny_train.py")
EPOCHS = 4
ARGS = ["--epochs", str(EPOCHS), "--images", "512"]   # ~0.4 s per epoch on one idle core
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(folder: Path) -> list[str]:
    return [sys.executable, str(SCRIPT), "--out", str(folder), "--checkpoint", str(folder / "m.pt"), *ARGS]


def run(folder: Path) -> str:
    proc = subprocess.run(command(folder), env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def wait_for_epoch(path: Path, epoch: int, proc: subprocess.Popen, timeout: float = 120) -> dict:
    """Poll until ``path`` holds a checkpoint of at least ``epoch`` epochs (saves are atomic renames,
    so a file that exists is always whole)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"training ended before the kill:\n{proc.stderr.read()[-3000:]}"
        if path.exists():
            ckpt = load_checkpoint(path)
            if ckpt["epoch"] >= epoch:
                return ckpt
        time.sleep(0.01)
    raise TimeoutError(f"{path} did not reach epoch {epoch} in {timeout} s")


def without_wall_clock(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "train_seconds"}


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_to_the_same_weights_and_metrics(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    run(full)

    proc = subprocess.Popen(command(killed), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for_epoch(killed / "m.last.pt", 1, proc)
        # Into the middle of the next epoch: half as long as the first one took.
        time.sleep(0.5 * first["history"]["train_seconds"][0])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL

    # What the killed run left loads cleanly, and it really was cut short.
    last = load_checkpoint(killed / "m.last.pt")
    best = load_checkpoint(killed / "m.pt")
    assert 1 <= last["epoch"] < EPOCHS and not last["extra"]["completed"]
    assert best["epoch"] <= last["epoch"] and not best["extra"]["completed"]
    assert not (killed / "rank0.pt").exists()

    out = run(killed)
    assert f"resuming from {killed / 'm.last.pt'} after epoch {last['epoch']}" in out

    a = torch.load(full / "rank0.pt", weights_only=True)
    b = torch.load(killed / "rank0.pt", weights_only=True)
    assert without_wall_clock(a["history"]) == without_wall_clock(b["history"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    # The last epoch's codebook too (the best weights above may be an earlier epoch's).
    assert torch.equal(a["codebooks"][-1], b["codebooks"][-1])
    ca, cb = load_checkpoint(full / "m.pt"), load_checkpoint(killed / "m.pt")
    assert (ca["epoch"], ca["step"], ca["metrics"]) == (cb["epoch"], cb["step"], cb["metrics"])
    assert without_wall_clock(ca["history"]) == without_wall_clock(cb["history"])
    for key, value in ca["state_dict"].items():
        assert torch.equal(value, cb["state_dict"][key]), key
    assert cb["extra"]["completed"]
    assert not (full / "m.last.pt").exists() and not (killed / "m.last.pt").exists()   # finished: only m.pt

