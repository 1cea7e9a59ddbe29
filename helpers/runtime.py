"""Seeds, devices and threads: the few process-wide settings, in one place."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

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


# The switches of TF32 on CUDA: cuBLAS matmuls and cuDNN convolutions (and RNNs, none here, set
# alike: PyTorch refuses to answer the legacy ``allow_tf32`` once the two cuDNN ones differ).
_TF32_SWITCHES = ("cuda.matmul", "cudnn.conv", "cudnn.rnn")


def _switches() -> list:
    return [getattr(getattr(torch.backends, a), b) for a, b in (s.split(".") for s in _TF32_SWITCHES)]


def tf32_enabled() -> dict[str, bool]:
    """Whether each TF32 switch is on, by name ("cuda.matmul", "cudnn.conv", "cudnn.rnn")."""
    if _NEW_API:
        return {name: flag.fp32_precision == "tf32" for name, flag in zip(_TF32_SWITCHES, _switches())}
    return {"cuda.matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.conv": torch.backends.cudnn.allow_tf32, "cudnn.rnn": torch.backends.cudnn.allow_tf32}


def _set_tf32(values: dict[str, bool] | bool) -> None:
    if isinstance(values, bool):
        values = dict.fromkeys(_TF32_SWITCHES, values)
    if _NEW_API:
        for name, flag in zip(_TF32_SWITCHES, _switches()):
            flag.fp32_precision = "tf32" if values[name] else "ieee"
    else:   # a torch without fp32_precision: the legacy switches
        torch.backends.cuda.matmul.allow_tf32 = values["cuda.matmul"]
        torch.backends.cudnn.allow_tf32 = values["cudnn.conv"]


_NEW_API = all(hasattr(flag, "fp32_precision") for flag in _switches())


@contextmanager
def tf32(enabled: bool):
    """TF32 matmuls and convolutions on CUDA switched on or off inside the block, restored after
    (nothing changes on a CPU or MPS). The project's precision: fp32 everywhere
    (:func:`full_fp32_by_default`); on in the Trainer's training steps only (faster matmuls on
    Ampere and later GPUs); off again inside them where fp32 is needed (the quantizer's distances
    and k-means, the SSIM loss), and in validation, so one learning curve is one precision."""
    saved = tf32_enabled()
    _set_tf32(enabled)
    try:
        yield
    finally:
        _set_tf32(saved)


def full_fp32(device: torch.device | str):
    """TF32 off inside the block where ``device`` is CUDA (a training step turns it on), for what
    must be fp32 there: the quantizer's distances and k-means, the SSIM loss. Elsewhere, nothing
    to switch: a context that does nothing (and costs nothing on the CPU)."""
    return tf32(False) if torch.device(device).type == "cuda" else nullcontext()


def full_fp32_by_default() -> None:
    """TF32 off on CUDA for the whole process: cuDNN's own default has it on for convolutions, so
    encoding, decoding, sampling and evaluation would otherwise run in another precision than the
    CPU and than the validation they are compared with. Run when this module is imported."""
    _set_tf32(False)


full_fp32_by_default()


PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Does ``device`` have fast bf16 kernels? On an x86 CPU, bf16 instructions (AVX512-BF16 or
    AMX): oneDNN also "supports" bf16 on plain AVX-512 by converting, and training under bf16
    autocast there is about half as fast as fp32. On other CPUs (Arm), oneDNN's own check.
    Without them bf16 is emulated and slower than fp32 (docs/PERFORMANCE.md, "On a CPU without
    fast bf16")."""
    device = torch.device(device)
    if device.type == "cuda":
        # bf16 tensor cores (Ampere and later): a T4 or V100 "supports" bf16 only by emulation
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":   # MPS included: unmeasured there, so fp32
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


def machine(device: torch.device | str | None = None) -> dict:
    """Where a measurement ran, for its metrics file or benchmark: the CPU and the vector
    instructions PyTorch uses on it ("AVX512", "AVX2", ...), whether it has fast bf16, threads,
    torch, and the project's commit (:func:`git_commit`); then the device the work ran on
    (``device``, default :func:`pick_device`): its name (the GPU's, for CUDA) and whether "auto"
    trained in bf16 there. Figures can depend on all of them: bf16 and fp32 training, and other
    thread counts, order float sums differently."""
    device = torch.device(device) if device is not None else pick_device()
    return {"cpu": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "fast_bf16": native_bf16("cpu"), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "commit": git_commit(), **device_info(device)}


def device_info(device: torch.device | str) -> dict:
    """The device a run used: ``device`` ("cpu", "cuda:0", "mps"), ``device_name`` (the GPU's
    name; the CPU model on the CPU) and ``device_bf16`` (whether "auto" precision trains in bf16
    there)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        device = torch.device("cuda", index)
    elif device.type == "mps":
        name = "Apple MPS"
    else:
        name = cpu_model() or platform.processor() or platform.machine()
    return {"device": str(device), "device_name": name, "device_bf16": native_bf16(device)}


def synchronize(device: torch.device | str) -> None:
    """Wait for the work queued on ``device`` (CUDA and MPS run asynchronously): before reading a
    clock that times it. Nothing to wait for on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ---- numbers logged without waiting for the device ---------------------------------------------
# A training step logs its loss and a few statistics. Read at once (``.item()``), each one makes
# the CPU wait until a GPU has finished the step; logged as tensors and read every few steps, one
# copy per log key brings them all.

class OnHost(NamedTuple):
    """A logged number worked out on the host from a 0-d ``tensor`` when the logs are read: e.g. a
    PSNR from its MSE with Python's ``math`` (torch's vectorised log10 rounds some values
    differently, and the history would change in its last digits)."""
    tensor: torch.Tensor
    fn: Callable[[float], float]

    def __float__(self) -> float:
        return self.fn(self.tensor.item())


def host_floats(values: Sequence) -> list[float]:
    """Logged values of one key (floats, 0-d tensors or :class:`OnHost`) as Python floats, the
    tensors brought over in one copy. A float32 tensor gives the float ``.item()`` would."""
    inner = [v.tensor if isinstance(v, OnHost) else v for v in values]
    if inner and all(torch.is_tensor(t) for t in inner):
        numbers = torch.stack([t.detach().reshape(()) for t in inner]).tolist()
    else:
        numbers = [t.item() if torch.is_tensor(t) else t for t in inner]
    return [v.fn(x) if isinstance(v, OnHost) else float(x) for v, x in zip(values, numbers)]


# ---- random streams of a device ----------------------------------------------------------------
# On CUDA and MPS, dropout, label dropout, the flips of augmentation and the quantizer's restarts
# draw from the device's own generator, not the CPU's: a resumed run must restore both.
_GENERATOR_DEVICES = ("cuda", "mps", "xpu")


def _generator_module(device_type: str):
    """The torch module holding ``device_type``'s generator (``torch.cuda``, ``torch.mps``)."""
    return torch.get_device_module(device_type)


def rng_state(device: torch.device | str) -> dict | None:
    """The generator state of ``device`` for a checkpoint, with the device type it belongs to
    (``{"device": "cuda", "state": ...}``); None on the CPU (whose state is saved apart) and on
    devices without a generator (meta)."""
    device = torch.device(device)
    if device.type not in _GENERATOR_DEVICES:
        return None
    return {"device": device.type, "state": _generator_module(device.type).get_rng_state(device)}


def set_rng_state(saved: dict | None, device: torch.device | str) -> bool:
    """Put back a state :func:`rng_state` took, if it was taken on a device of ``device``'s type;
    True if it was (a run resumed on another kind of device goes on with that device's stream)."""
    device = torch.device(device)
    if not saved or saved.get("device") != device.type:
        return False
    _generator_module(device.type).set_rng_state(saved["state"], device)
    return True


def fork_rng(device: torch.device | str):
    """``torch.random.fork_rng`` for the CPU's generator and ``device``'s (if it has one): the block
    draws from them, and after it both streams are where they were. Named explicitly, so that the
    stream kept apart is the one of the device the block runs on, not the default accelerator's."""
    device = torch.device(device)
    if device.type not in _GENERATOR_DEVICES:
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device], device_type=device.type)


# ---- training backends ----------------------------------------------------------------------

@contextmanager
def training_backends(device: torch.device | str, deterministic: bool = False):
    """What a training run switches on for its device, restored after: on CUDA, TF32 matmuls and
    convolutions and cuDNN's autotuner (``cudnn.benchmark``: the fastest kernel for each shape,
    timed on first use). With ``deterministic``, instead: PyTorch's deterministic kernels
    (``torch.use_deterministic_algorithms``; index_add_, scatter and embedding gradients, cuDNN's
    deterministic convolutions), no autotuner (its pick can differ from run to run) and cuBLAS's
    fixed workspace, so that the same GPU trains the same weights. An op that has no deterministic
    CUDA kernel warns, naming itself, rather than stopping the run: the priors' and classifier's
    NLL loss sums its forward value in any order, but its gradient does not depend on that sum.
    The CPU needs none of it: its kernels are deterministic for a given thread count, and nothing
    changes there."""
    device = torch.device(device)
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if deterministic:
        # read by cuBLAS when it makes its handle: set it before the process's first CUDA matmul
        # (or export it) for it to take effect
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    try:
        with tf32(True):
            yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def process_device(local_rank: int, local_world: int) -> torch.device:
    """The device of one process of ``local_world`` on this machine under torchrun: ``cuda:<local
    rank>`` (nccl needs a GPU per process), unless $EMOJIVQ_DEVICE names another device type;
    then, and without CUDA, the CPU (gloo: DDP has no backend for MPS). More processes than GPUs
    is refused: two nccl ranks cannot share a GPU."""
    if pick_device().type != "cuda":
        return torch.device("cpu")
    gpus = torch.cuda.device_count()
    if local_world > gpus:
        raise RuntimeError(f"{local_world} processes on this machine but {gpus} GPU(s): nccl needs one GPU per "
                           f"process. Start at most {gpus} (torchrun --nproc_per_node {gpus}), or train on the "
                           "CPU with EMOJIVQ_DEVICE=cpu (gloo).")
    return torch.device("cuda", local_rank)


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
