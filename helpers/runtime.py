"""Seeds, devices and threads: the few process-wide settings, in one place."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import paths


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(name: str | None = None) -> torch.device:
    """CUDA, then MPS, then CPU — or what $EMOJIVQ_DEVICE / ``name`` asks for."""
    name = name or os.environ.get("EMOJIVQ_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_of(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters live (CPU for a model without any): functions that take a
    model run there, and move what they are given to it."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextmanager
def tf32(enabled: bool):
    """TF32 matmuls and convolutions on CUDA switched on or off inside the block, restored after.
    On: training (faster matmuls on Ampere and later GPUs). Off: the FID feature pass, whose
    features must match the CPU's fp32 ones."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Does ``device`` have fast bf16 kernels? On an x86 CPU, bf16 instructions (AVX512-BF16 or
    AMX): oneDNN also "supports" bf16 on plain AVX-512 by converting, and training under bf16
    autocast there is about half as fast as fp32. On other CPUs (Arm), oneDNN's own check.
    Without them bf16 is emulated and slower than fp32 (docs/PERFORMANCE.md, "On a CPU without
    fast bf16")."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):   # private checks: a torch without them gets fp32
        return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """"bf16" or "fp32" for a training run: "auto" takes bf16 (autocast + channels_last) where
    :func:`native_bf16` says it is fast, else fp32; "bf16" and "fp32" are taken as asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def machine() -> dict:
    """Where a measurement ran, for its metrics file or benchmark: the CPU and the vector
    instructions PyTorch uses on it ("AVX512", "AVX2", ...), whether it has fast bf16 (so whether
    "auto" trained in bf16), threads, torch, and the project's commit (:func:`git_commit`).
    Figures can depend on them: bf16 and fp32 training, and other thread counts, order float sums
    differently."""
    return {"cpu": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "fast_bf16": native_bf16("cpu"), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "commit": git_commit()}


def cpu_model(cpuinfo: os.PathLike | str = "/proc/cpuinfo") -> str | None:
    """The CPU's model name with its family and model numbers ("<model name>, family F model M"),
    read from Linux's ``cpuinfo``: under a hypervisor the name alone can be
    generic, and the numbers tell one generation from the next. None where there is no such file."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:   # the first processor's block is enough
                break
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name")
    if not name:
        return None
    if "cpu family" in fields and "model" in fields:
        return f"{name}, family {fields['cpu family']} model {fields['model']}"
    return name


def git_commit(root: os.PathLike | str = paths.PROJECT_ROOT) -> str | None:
    """``git describe`` of the checkout at ``root``: its short commit (prefixed by the nearest tag,
    if the repository has tags), "+dirty" when tracked files differ from it; None outside a git
    checkout or without git."""
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--abbrev=7", "--dirty=+dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None
