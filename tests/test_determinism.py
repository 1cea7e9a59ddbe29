"""Same profile + seed -> same data, same split, same codes, same metrics (docs/ARCHITECTURE.md, "Seeds").

Tested on the smoke profile, built twice from the pinned sources and trained on twice. The
tolerance is zero: on one machine, with one thread (tests/conftest.py), every run performs the
same floating-point operations in the same order, bf16 autocast included. Across machines, CPU
instruction sets or thread counts, reductions may be ordered differently; that is not claimed.
"""

import pytest
import torch

from _smoke import build_smoke
from helpers import autoencode
from helpers.data import split
from helpers.models.vqvae import VQVAE
from helpers.profiles import get_profile
from helpers.runtime import seed_everything
from helpers.train import TrainConfig, Trainer

PROFILE = get_profile("smoke")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """The smoke dataset built twice, each time from scratch in its own folder."""
    return [build_smoke(tmp_path_factory.mktemp(f"processed{i}")) for i in range(2)]


@pytest.mark.slow
def test_smoke_profile_builds_the_same_images_and_split(builds):
    a, b = builds
    assert a.fingerprint == b.fingerprint   # sha256 of every image, label and both index lists
    for name in ("images32", "images64", "images128", "identity", "train_idx", "val_idx"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.seed == PROFILE.seed and 0 < len(a.val_idx) < len(a.train_idx)
    # The split is a function of the identities and the seed alone.
    train_idx, val_idx = split(a.identity, PROFILE.seed, identity_names=a.identity_names)
    assert torch.equal(train_idx, a.train_idx) and torch.equal(val_idx, a.val_idx)


def train_and_measure(ds) -> tuple[dict, torch.Tensor, dict, dict]:
    """Notebook 01 in small: seed, a small VQ-VAE, two epochs through the Trainer (bf16, as on CPU by
    default; 24 steps, so k-means init and dead-code restarts both run), then the val codes and the
    metrics the notebook records."""
    train, val = ds.images(32, "train"), ds.images(32, "val")
    seed_everything(PROFILE.seed)
    model = VQVAE.named("default", hidden=32, res_blocks=1, res_hidden=16, num_codes=64, embed_dim=16)
    trainer = Trainer(model, (train,), (val,), TrainConfig(epochs=2, batch_size=32, lr=1e-3, seed=PROFILE.seed,
                                                           progress=False))
    model = trainer.run()
    codes = autoencode.encode_all(model, val)
    metrics, _ = autoencode.reconstruction_report(model, {"train": train, "val": val})
    metrics.update(autoencode.usage_report(codes, model.config.num_codes))
    history = {k: v for k, v in trainer.history.items() if k != "train_seconds"}   # wall clock
    return history, codes, metrics, model.state_dict()


@pytest.mark.slow
def test_smoke_training_twice_gives_identical_codes_and_metrics(builds):
    history_a, codes_a, metrics_a, state_a = train_and_measure(builds[0])
    history_b, codes_b, metrics_b, state_b = train_and_measure(builds[1])
    assert history_a == history_b
    assert torch.equal(codes_a, codes_b)
    assert metrics_a == metrics_b
    for key, value in state_a.items():
        assert torch.equal(value, state_b[key]), key
    # Not vacuous: many different codes, and restarts (which draw from the global RNG) happened.
    assert codes_a.unique().numel() > 8 and state_a["quantizer.restarts"] > 0
