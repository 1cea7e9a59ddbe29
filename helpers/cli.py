"""The command line of the image autoencoders: train them without a notebook, on one process or
under torchrun (one process per GPU, nccl; gloo on CPU)::

    python -m helpers.cli --model vqvae --profile smoke
    torchrun --nproc_per_node 4 -m helpers.cli --model vqvae --profile full

They write the checkpoint the notebooks would (``artifacts/<profile>/<name>.pt``), so
notebook 01 then loads the finished run instead of training it. The training itself is
helpers.train's Trainer; this module only parses arguments and starts the process group.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import torch
import torch.distributed as dist

from .runtime import PRECISIONS, pick_device, process_device
from .train import TrainConfig, Trainer


def init_distributed() -> torch.device:
    """This process's device; under torchrun (WORLD_SIZE > 1) also join the process group.

    torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; the group reads them.
    nccl with one GPU per process (cuda:LOCAL_RANK) when CUDA is there, gloo on CPU otherwise
    ($EMOJIVQ_DEVICE=cpu asks for the CPU on a GPU machine; :func:`helpers.runtime.process_device`).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return pick_device()
    device = process_device(int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    if device.type == "cuda":
        torch.cuda.set_device(device)   # before the group: nccl binds each rank to its own GPU
        dist.init_process_group("nccl")
        return device
    dist.init_process_group("gloo")
    return device


# What notebooks 01 and 03 train with (their parameter cells; a test keeps the two in step).
CLI_DEFAULTS = {"vqvae": {"image_size": 32, "batch_size": 64, "lr": 4e-3},
                "vqvae2": {"image_size": 64, "batch_size": 32, "lr": 3e-3}}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helpers.cli --model vqvae --profile smoke``: train an image autoencoder as its
    notebook does (same data, config, seed and checkpoint), on one process or under torchrun."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.cli",
        description="Train the VQ-VAE (32 px) or VQ-VAE-2 (64 px) of a profile. Under torchrun each process "
                    "takes --batch-size images per step (the global batch is N times larger).")
    parser.add_argument("--model", choices=["vqvae", "vqvae2"], default="vqvae")
    parser.add_argument("--profile", default=None, help="smoke, quick or full (default: $EMOJIVQ_PROFILE, else full)")
    parser.add_argument("--config", default="default", help="a named model config (VQVAE_CONFIGS / VQVAE2_CONFIGS)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=None, help="also stop after this many passes (default: none)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-clock cap (default: none); a run it cuts is marked time_capped")
    parser.add_argument("--name", default=None, help="checkpoint name in artifacts/<profile>/ (default: the model)")
    notebook_s = lambda key: ", ".join(f"{d[key]:g} for {m}" for m, d in CLI_DEFAULTS.items())  # noqa: E731
    parser.add_argument("--lr", type=float, default=None,
                        help=f"Adam peak (default: the notebook's, {notebook_s('lr')})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"per process (default: the notebook's, {notebook_s('batch_size')})")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 where the hardware has it natively, else fp32")
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="validate and keep an exponential moving average of the weights (default: off)")
    args = parser.parse_args(argv)

    # Imported here: importers of init_distributed or CLI_DEFAULTS need no data pipeline or model family.
    from .data import load_dataset
    from .models.vqvae import VQVAE, VQVAE_CONFIGS
    from .models.vqvae2 import VQVAE2, VQVAE2_CONFIGS
    from .paths import checkpoint_path
    from .profiles import get_profile
    from .runtime import seed_everything

    named = {"vqvae": VQVAE_CONFIGS, "vqvae2": VQVAE2_CONFIGS}[args.model]
    if args.config not in named:
        parser.error(f"--config {args.config!r}: {args.model} has the named configs {', '.join(named)}")
    device = init_distributed()
    try:
        profile = get_profile(args.profile)
        cls = {"vqvae": VQVAE, "vqvae2": VQVAE2}[args.model]
        size, batch_size, lr = (CLI_DEFAULTS[args.model][k] for k in ("image_size", "batch_size", "lr"))
        batch_size, lr = args.batch_size or batch_size, args.lr or lr
        steps = args.steps if args.steps is not None else getattr(profile, f"{args.model}_steps")
        ds = load_dataset(profile.name)       # "run 00_data first" when there is no dataset
        train, val = ds.images(size, "train"), ds.images(size, "val")
        seed_everything(profile.seed)          # as the notebook: same seed, same initial weights
        model = cls.named(args.config)
        config = TrainConfig(max_steps=steps, epochs=args.epochs, max_minutes=args.minutes, lr=lr, batch_size=batch_size,
                             precision=args.precision, seed=profile.seed, curve_every=profile.curve_every,
                             ema_decay=args.ema_decay)
        path = checkpoint_path(profile.name, args.name or args.model)
        trainer = Trainer(model, (train,), (val,), config, path, data_fingerprint=ds.fingerprint,
                          extra={"image_size": size}, device=device)
        trainer.run()
        if trainer.ranks.rank == 0:
            print(f"{args.model} ({args.config}) on {profile.name}, {trainer.ranks.world} process(es) "
                  f"on {device.type}: {trainer.step} steps "
                  f"({trainer.epoch} epochs{', time-capped' if trainer.time_capped else ''}), "
                  f"{trainer.seconds / 60:.1f} min, best val loss {trainer.best_val:.4f} "
                  f"-> {path}", flush=True)
        if dist.is_initialized():
            dist.barrier()   # rank 0 has written the checkpoint; no rank leaves while another is in a collective
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


__all__ = ["CLI_DEFAULTS", "init_distributed", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
