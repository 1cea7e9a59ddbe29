"""Measure one VQ-VAE setting on the real data: train for a time budget, print val metrics as JSON.

    python benchmarks/tune_vqvae.py --config default --minutes 5 --lr 4e-3 --set num_codes=1024 ssim_weight=0.2

The default config in helpers/models/vqvae.py was chosen with this script
(the runs and their numbers are listed in docs/EXPERIMENTS.md, "Choosing the VQ-VAE").
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from dataclasses import replace

import torch

from helpers.data import load_dataset
from helpers.tensors import to_unit
from helpers.metrics import codebook_usage, reconstruction_metrics_batched
from helpers.models.vqvae import VQVAE, VQVAE_CONFIGS
from helpers.runtime import seed_everything
from helpers.train import TrainConfig, Trainer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="default", choices=list(VQVAE_CONFIGS), help="a named config of VQVAE_CONFIGS")
    p.add_argument("--set", nargs="*", default=[], help="model config overrides key=value")
    p.add_argument("--minutes", type=float, default=None, help="time budget (else --epochs only)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--precision", default="auto")
    p.add_argument("--profile", default="full")
    args = p.parse_args()

    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in args.set)}
    seed_everything(0)
    ds = load_dataset(args.profile)
    train, val = ds.images(32, "train"), ds.images(32, "val")
    model = VQVAE(replace(VQVAE_CONFIGS[args.config], **overrides))
    cfg = TrainConfig(epochs=args.epochs, max_minutes=args.minutes, batch_size=args.batch, lr=args.lr,
                      precision=args.precision, progress=False)
    start = time.perf_counter()
    trainer = Trainer(model, (train,), (val,), cfg)
    trainer.fit()
    model.eval()
    with torch.no_grad():
        recon = torch.cat([model(val[i:i + 256])[0].float() for i in range(0, len(val), 256)])
        codes = torch.cat([model.encode(val[i:i + 256]) for i in range(0, len(val), 256)])
    m = reconstruction_metrics_batched(to_unit(recon), val.float() / 255)
    usage = codebook_usage(codes, model.config.num_codes)
    print(json.dumps({"config": args.config, "overrides": overrides, "lr": args.lr, "batch": args.batch,
                      "precision": trainer.precision, "minutes": args.minutes, "epochs": trainer.epoch,
                      "images_per_s": round(trainer.epoch * len(train) / trainer.seconds, 1),
                      "val_psnr": round(m["psnr"], 3), "val_ssim": round(m["ssim"], 4),
                      "val_usage": round(usage["usage"], 4), "seconds": round(time.perf_counter() - start)}))


if __name__ == "__main__":
    main()
