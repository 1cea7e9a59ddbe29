"""Measure one VQ-VAE-2 setting on the real 64x64 data: train for a time budget, print val metrics as JSON.

    python benchmarks/tune_vqvae2.py --config default --minutes 15 --lr 3e-3 --batch 32 --set embed_dim=64

(The issue's targets: val PSNR >= 28 dB, SSIM >= 0.95, code usage >= 90% at both levels after
15 minutes on 2 CPU cores.) ``--threads`` sets torch's thread count: on a machine shared with
other jobs, 1 thread is far steadier than 2.
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
from helpers.models.vqvae2 import VQVAE2, VQVAE2_CONFIGS
from helpers.runtime import seed_everything
from helpers.train import TrainConfig, Trainer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="default", choices=list(VQVAE2_CONFIGS), help="a named config of VQVAE2_CONFIGS")
    p.add_argument("--set", nargs="*", default=[], help="model config overrides key=value")
    p.add_argument("--minutes", type=float, default=None, help="time budget (else --epochs only)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--precision", default="auto")
    p.add_argument("--profile", default="full")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in args.set)}
    seed_everything(0)
    ds = load_dataset(args.profile)
    train, val = ds.images(64, "train"), ds.images(64, "val")
    model = VQVAE2(replace(VQVAE2_CONFIGS[args.config], **overrides))
    cfg = TrainConfig(epochs=args.epochs, max_minutes=args.minutes, batch_size=args.batch, lr=args.lr,
                      precision=args.precision, progress=False, eval_every=10**9)
    start = time.perf_counter()
    trainer = Trainer(model, (train,), None, cfg)
    trainer.fit()
    model.eval()
    recon, top, bottom = [], [], []
    with torch.no_grad():
        for i in range(0, len(val), 256):
            t, b = model.encode(val[i:i + 256])
            top.append(t)
            bottom.append(b)
            recon.append(model.decode_codes(t, b).float())
    m = reconstruction_metrics_batched(to_unit(torch.cat(recon)), val.float() / 255)
    usage_t = codebook_usage(torch.cat(top), model.config.num_codes_top)
    usage_b = codebook_usage(torch.cat(bottom), model.config.num_codes_bottom)
    print(json.dumps({"config": args.config, "overrides": overrides, "lr": args.lr, "batch": args.batch,
                      "precision": trainer.precision, "minutes": args.minutes, "epochs": trainer.epoch,
                      "steps": trainer.step, "images_per_s": round(trainer.step * args.batch / trainer.seconds, 1),
                      "val_psnr": round(m["psnr"], 3), "val_ssim": round(m["ssim"], 4),
                      "val_usage_top": round(usage_t["usage"], 4), "val_usage_bottom": round(usage_b["usage"], 4),
                      "val_perplexity_top": round(usage_t["perplexity"], 1),
                      "val_perplexity_bottom": round(usage_b["perplexity"], 1),
                      "seconds": round(time.perf_counter() - start)}))


if __name__ == "__main__":
    main()
