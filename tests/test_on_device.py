"""The promises that depend on the device, checked on the device this machine has
(``runtime.pick_device()``: CUDA, then MPS, then the CPU; ``EMOJIVQ_DEVICE`` overrides).

On a CPU-only machine they repeat what other tests prove; on a GPU they are the device check's
unit tests (``benchmarks/device_check.py``):

* the fast samplers compute the naive loop's logits and draw its samples (on the CPU exactly;
  elsewhere the logits agree to float rounding, and a draw can differ only where a random number
  falls within that rounding of a boundary between two codes);
* a run interrupted and resumed on the device ends with the uninterrupted run's weights, bit for
  bit: the device's generator travels with the checkpoint;
* with ``deterministic=True`` two runs on the device train the same weights (on CUDA that needs
  the option; a CPU does it anyway);
* the Inception features on the device are the CPU's within 1e-4.
"""

from __future__ import annotations

import pytest
import torch

from _tiny_train import synthetic_images
from helpers import metrics
from helpers.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig
from helpers.models.vqvae import VQVAE
from helpers.runtime import pick_device
from helpers.sampling import sample_codes, sample_codes_naive
from helpers.train import TrainConfig, Trainer

DEVICE = pick_device()
ON_CPU = DEVICE.type == "cpu"
K = 12


def _prior(**kw) -> GatedPixelCNN:
    torch.manual_seed(0)
    model = GatedPixelCNN(GatedPixelCNNConfig(num_codes=K, hidden=16, layers=3, head_hidden=16, num_classes=3, **kw))
    model.train()
    with torch.no_grad():   # a few passes give BatchNorm non-trivial running statistics
        for _ in range(3):
            model(torch.randint(0, K, (8, 8, 8)), torch.randint(0, 3, (8,)))
    return model.to(DEVICE)


def test_incremental_logits_on_the_device_equal_the_full_forward():
    model = _prior().eval()
    codes, labels = torch.randint(0, K, (4, 6, 7), device=DEVICE), torch.tensor([0, 1, 2, 1], device=DEVICE)
    tolerance = 1e-5 if ON_CPU else 1e-4
    with torch.no_grad():
        full = model(codes, labels)
        state = model.start_sampling(4, (6, 7), labels, None)
        for i in range(6):
            for j in range(7):
                torch.testing.assert_close(state.step(codes, i, j), full[:, :, i, j], rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("method", ["incremental", "crop"])
def test_fast_sampling_on_the_device_draws_the_naive_samples(method):
    model = _prior()
    n, labels = 10, torch.randint(0, 3, (10,))
    kw = dict(labels=labels, temperature=0.9, top_k=8, batch_size=4, progress=False)
    fast = sample_codes(model, n, generator=torch.Generator().manual_seed(1), method=method, **kw)
    naive = sample_codes_naive(model, n, generator=torch.Generator().manual_seed(1), **kw)
    same = sum(torch.equal(a, b) for a, b in zip(fast, naive))
    assert same == n if ON_CPU else same >= n - 1, f"{same} of {n} grids identical on {DEVICE}"


def _vqvae() -> VQVAE:
    # flips draw from the device's generator, restarts too: a resume must restore it
    return VQVAE.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes=16, embed_dim=8,
                       restart_window=2, train_flip=True, train_shift=2)


def _interrupt_after(epoch: int):
    def callback(trainer, record):
        if record["epoch"] == epoch:
            raise KeyboardInterrupt
    return callback


def test_a_run_resumed_on_the_device_ends_with_the_uninterrupted_runs_weights(tmp_path):
    images = synthetic_images(72)
    train, val = (images[:64],), (images[64:],)
    config = TrainConfig(epochs=4, batch_size=16, lr=2e-3, warmup_steps=2, progress=False, deterministic=True)

    def trainer(path, callbacks=()):
        return Trainer(_vqvae(), train, val, config, path, callbacks=list(callbacks), device=DEVICE)

    torch.manual_seed(0)
    full = trainer(tmp_path / "a.pt")
    full.run()
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "b.pt", [_interrupt_after(2)]).run()
    torch.manual_seed(123)   # the resumed process starts from other streams, the device's included
    resumed = trainer(tmp_path / "b.pt")
    resumed.run()
    assert resumed.history["val_loss"] == full.history["val_loss"]
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert int(full.model.quantizer.restarts) > 0   # the restarts' draws were part of it


def test_deterministic_training_twice_on_the_device_gives_the_same_weights():
    images = synthetic_images(72)

    def once():
        torch.manual_seed(0)
        t = Trainer(_vqvae(), (images[:64],), (images[64:],),
                    TrainConfig(max_steps=10, batch_size=16, lr=2e-3, progress=False, deterministic=True),
                    device=DEVICE)
        return t.run().state_dict(), t.history

    (a, history_a), (b, history_b) = once(), once()
    assert history_a["val_loss"] == history_b["val_loss"]
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_a_deterministic_prior_trains_the_same_weights_twice_on_the_device():
    """The priors' NLL loss has no deterministic CUDA kernel for its forward sum (it warns); its
    gradient does not depend on that sum, so the weights must still repeat."""
    codes, labels = torch.randint(0, K, (80, 8, 8), generator=torch.Generator().manual_seed(0)), torch.arange(80) % 3

    def once():
        t = Trainer(_prior(dropout=0.1, label_dropout=0.2), (codes[:64], labels[:64]), (codes[64:], labels[64:]),
                    TrainConfig(max_steps=8, batch_size=16, lr=2e-3, progress=False, deterministic=True),
                    device=DEVICE)
        return t.run().state_dict()

    a, b = once(), once()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


@pytest.mark.skipif(ON_CPU, reason="the features on the CPU are the reference")
def test_inception_features_on_the_device_match_the_cpus():
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    here = metrics.inception_features(images, device=DEVICE, progress=False)
    cpu = metrics.inception_features(images, device="cpu", progress=False)
    assert (here - cpu).abs().max() < 1e-4
