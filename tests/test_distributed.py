"""Training under torchrun: two processes, gloo on CPU, DDP and the quantizer's all-reduced EMA.

Each run is a real ``torchrun --standalone`` (it picks a free port itself) of tests/_tiny_train.py
or of ``-m helpers.cli``; every rank writes what it ended with, and the test compares the ranks.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _smoke import build_smoke
from helpers.checkpoints import build_model, load_checkpoint

SCRIPT = Path(__file__).with_name("_tiny_train.py")
# One thread per process: two ranks share the cores, and more threads only wait on each other.
# PYTHONFAULTHANDLER: a rank that aborts (SIGABRT from C++) prints every thread's Python stack.
# EMOJIVQ_DEVICE=cpu: two gloo processes on the CPU on any machine (a one-GPU machine has one GPU
# for two nccl ranks; tests/test_device.py checks how the processes pick their devices).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1",
       "EMOJIVQ_DEVICE": "cpu"}


def torchrun(*args: str, env: dict = ENV, timeout: float = 180) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ...``; a hang (ranks out of step) fails on the timeout."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def ranks(out: Path) -> tuple[dict, dict]:
    return tuple(torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))


@pytest.mark.slow
def test_two_ranks_keep_identical_codebooks_and_weights(tmp_path):
    """A 5 s time budget ends the run mid-epoch and sets the learning rate (it is far shorter than
    1000 epochs): ranks reading their own clocks would step with different learning rates and
    their weights would part, or one would stop while the other waits for it (a timeout here)."""
    torchrun(str(SCRIPT), "--out", str(tmp_path), "--epochs", "1000", "--minutes", "0.08")
    a, b = ranks(tmp_path)
    assert a["world"] == b["world"] == 2
    assert 2 <= len(a["history"]["epoch"]) < 1000
    # The ranks were seeded apart: DDP's start-up sync must have given both rank 0's codebook ...
    assert torch.equal(a["initial_codebook"], b["initial_codebook"])
    # ... and the all-reduced EMA (plus broadcast k-means and restart seeds) keeps them equal, bit for bit.
    for epoch, (ca, cb) in enumerate(zip(a["codebooks"], b["codebooks"]), 1):
        assert torch.equal(ca, cb), f"codebooks differ after epoch {epoch}"
    assert not torch.equal(a["codebooks"][-1], a["initial_codebook"])
    assert not torch.equal(a["codebooks"][-1], a["codebooks"][0]), "the EMA did not move the codebook after epoch 1"
    assert a["state_dict"]["quantizer.restarts"] > 0   # the restart path (a broadcast) ran too
    # Weights and every other buffer agree; only the ring buffer of recent encoder outputs is per rank.
    for key, value in a["state_dict"].items():
        if key != "quantizer.recent":
            assert torch.equal(value, b["state_dict"][key]), key
    # History is averaged over the ranks, so both hold the same, and the loss went down.
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    losses = a["history"]["train_loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert a["history"]["val_loss"][-1] < a["history"]["val_loss"][0]


@pytest.mark.slow
def test_without_the_ema_all_reduce_codebooks_drift_apart(tmp_path):
    """Negative control: the test above can fail. Restarts are off here: with per-rank statistics the
    ranks would disagree on which codes are dead and call the restart broadcast unevenly (a hang)."""
    torchrun(str(SCRIPT), "--out", str(tmp_path), "--no-ema-sync", "--restart-window", "0")
    a, b = ranks(tmp_path)
    assert torch.equal(a["initial_codebook"], b["initial_codebook"])
    drift = (a["codebooks"][-1] - b["codebooks"][-1]).abs().max().item()
    assert drift > 1e-3, f"codebooks stayed equal ({drift}) although each rank kept its own EMA"


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("processed")
    build_smoke(root)
    return root


@pytest.mark.slow
def test_command_line_under_torchrun_writes_one_finished_checkpoint(smoke_dir, tmp_path):
    """``torchrun -m helpers.cli`` on the smoke data (the default VQ-VAE, a 3 s budget to bound the
    test): the process group comes up from torchrun's environment, rank 0 writes a finished
    checkpoint in the project's format, and both processes exit cleanly."""
    env = {**ENV, "EMOJIVQ_PROCESSED_DIR": str(smoke_dir), "EMOJIVQ_ARTIFACTS_DIR": str(tmp_path)}
    proc = torchrun("-m", "helpers.cli", "--model", "vqvae", "--profile", "smoke", "--epochs", "100",
                    "--minutes", "0.05", "--name", "ddp", env=env)
    assert "2 process(es) on cpu" in proc.stdout
    ckpt = load_checkpoint(tmp_path / "smoke" / "ddp.pt", expect={"image_size": 32})
    assert ckpt["extra"]["completed"] and 1 <= ckpt["epoch"] < 100
    assert not (tmp_path / "smoke" / "ddp.last.pt").exists()   # a finished run keeps only its checkpoint
    assert ckpt["model_class"] == "VQVAE" and torch.isfinite(torch.tensor(ckpt["metrics"]["best_val"]))
    build_model(ckpt)   # rebuilds from the checkpoint alone
