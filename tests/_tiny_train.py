"""A tiny VQ-VAE trained by the Trainer on synthetic images, in a process of its own.

The tests launch it under torchrun (tests/test_distributed.py) or kill it with SIGKILL and start it
again (tests/test_resume_kill.py). Each rank writes what it ended with to ``--out/rank<r>.pt``:
its weights and buffers, the codebook before training and after every epoch, and the history.

    python tests/_tiny_train.py --out DIR [--checkpoint PATH]
    torchrun --standalone --nproc_per_node 2 tests/_tiny_train.py --out DIR
"""

import argparse
from pathlib import Path

import torch
import torch.distributed as dist

from helpers.cli import init_distributed
from helpers.models.quantize import VectorQuantizer
from helpers.models.vqvae import VQVAE, VQVAEConfig
from helpers.runtime import seed_everything
from helpers.train import TrainConfig, Trainer


def synthetic_images(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` uint8 32x32 images, one coloured rectangle on white each; seeded, so every rank and
    every run has the same ones."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, 32, 32), 255, dtype=torch.uint8)
    for i in range(n):
        x0, y0 = torch.randint(0, 20, (2,), generator=g).tolist()
        w, h = torch.randint(6, 13, (2,), generator=g).tolist()
        images[i, :, y0:y0 + h, x0:x0 + w] = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
    return images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="folder for rank<r>.pt")
    parser.add_argument("--checkpoint", default=None, help="<name>.pt for the Trainer (resume happens beside it)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=None, help="time budget (default: none)")
    parser.add_argument("--images", type=int, default=256, help="train images (64 more for val)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--restart-window", type=int, default=4)
    parser.add_argument("--no-ema-sync", action="store_true",
                        help="negative control: the quantizer keeps its EMA statistics to itself")
    args = parser.parse_args()

    device = init_distributed()
    rank = dist.get_rank() if dist.is_initialized() else 0
    if args.no_ema_sync:
        VectorQuantizer._all_reduce = lambda self, tensor: tensor
    # Each rank starts from its own seed on purpose: DDP's start-up sync and the quantizer's
    # broadcasts must make them agree (one process: rank 0, the same seed every run).
    seed_everything(1 + rank)
    model = VQVAE(VQVAEConfig(hidden=32, res_blocks=1, res_hidden=16, num_codes=32, embed_dim=8,
                              restart_window=args.restart_window))
    images = synthetic_images(args.images + 64)
    codebooks = []
    config = TrainConfig(epochs=args.epochs, max_minutes=args.minutes, batch_size=args.batch_size, lr=2e-3,
                         warmup_steps=2, progress=False)
    trainer = Trainer(model, (images[:args.images],), (images[args.images:],), config, args.checkpoint,
                      callbacks=[lambda t, record: codebooks.append(t.model.quantizer.codebook.clone())],
                      device=device)
    initial = model.quantizer.codebook.clone()   # after DDP's start-up sync, before k-means
    trainer.run()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": trainer.model.state_dict(), "initial_codebook": initial, "codebooks": codebooks,
                "history": trainer.history, "world": trainer.ranks.world}, out / f"rank{rank}.pt")
    if dist.is_initialized():
        dist.barrier()   # neither rank closes its connections while the other still finishes a collective
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
