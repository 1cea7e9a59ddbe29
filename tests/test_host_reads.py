"""Training without reading the device every step: on a GPU each read of a tensor's value
(``.item()``, ``.tolist()``, ``bool()``, ``int()``) makes the host wait until the device has
finished all it was given. Counted here on the CPU, where the same calls are made."""

import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode

from helpers.models.quantize import VectorQuantizer
from helpers.models.vqvae import VQVAE
from helpers.train import TrainConfig, Trainer

READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
         torch.Tensor.__float__, torch.Tensor.__index__}


class CountReads(TorchFunctionMode):
    """Counts reads of tensor values, but not torch.optim's: Adam keeps its step counts in CPU
    tensors even for a model on a GPU, and reading those waits for nothing."""

    def __init__(self):
        super().__init__()
        self.reads = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in READS and "torch/optim/" not in sys._getframe(1).f_code.co_filename:
            self.reads += 1
        return func(*args, **(kwargs or {}))


def _images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    images = torch.full((n, 3, 32, 32), 255, dtype=torch.uint8)
    for i in range(n):
        x0, y0 = torch.randint(0, 20, (2,), generator=g).tolist()
        images[i, :, y0:y0 + 10, x0:x0 + 10] = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
    return images


def _vqvae(**kw) -> VQVAE:
    torch.manual_seed(0)
    return VQVAE.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes=16, embed_dim=8, ssim_weight=0.2,
                       train_flip=False, train_shift=0, **kw)


def test_an_autoencoder_step_reads_nothing_back_once_it_runs():
    """After the first steps (k-means, the first dead-code test), a VQ-VAE training step, the
    quantizer's EMA and its restarts' bookkeeping included, reads no value from the device."""
    model = _vqvae(restart_window=50).train()
    x = _images(16)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    per_step = []
    for _ in range(12):
        with CountReads() as counter:
            loss, logs = model.training_step((x,))
            opt.zero_grad()
            loss.backward()
            opt.step()
        per_step.append(counter.reads)
    assert per_step[0] > 0                # k-means, and the first look for dead codes
    assert per_step[2:] == [0] * 10, per_step


@pytest.mark.parametrize("window", [3, 5])
def test_skipping_the_dead_code_test_changes_nothing(window):
    """The quantizer looks for dead codes only once one can have been idle ``restart_window``
    steps: the same codebook, bit for bit, as looking every step."""
    def run(look_every_step: bool):
        torch.manual_seed(0)
        vq = VectorQuantizer(32, 4, restart_window=window).train()
        torch.manual_seed(1)
        for step in range(40):
            z = torch.randn(8, 4, 4, 4) + (step % 3)   # moving data: codes die and are re-seeded
            if look_every_step:
                vq._next_dead_check = None
            vq(z)
        return vq.state_dict()

    skipping, looking = run(False), run(True)
    assert int(skipping["restarts"]) > 0
    for key, value in looking.items():
        assert torch.equal(value, skipping[key]), key


def test_loading_a_state_dict_drops_the_quantizers_host_copies():
    a = VectorQuantizer(8, 4, restart_window=3).train()
    a(torch.randn(4, 4, 4, 4))
    assert a._host_initialized and a._host_step == 1
    b = VectorQuantizer(8, 4, restart_window=3).train()
    b(torch.randn(4, 4, 4, 4))
    b.load_state_dict(a.state_dict())
    assert b._host_step is None and b._host_initialized is None and b._next_dead_check is None
    b(torch.randn(4, 4, 4, 4))
    assert b._host_step == int(b.step) == 2


def test_the_trainer_reads_the_logs_every_log_every_steps_not_every_step():
    images = _images(192)

    def reads(log_every: int) -> int:   # 2 epochs of 24 steps
        trainer = Trainer(_vqvae(restart_window=50), (images,), None,
                          TrainConfig(max_steps=48, batch_size=8, progress=False, log_every=log_every), device="cpu")
        with CountReads() as counter:
            trainer.fit()
        return counter.reads

    every_step, every_24 = reads(1), reads(24)
    assert every_step > 48 * 7           # each of the 7 logged keys, every step
    assert every_24 < every_step / 5     # read at 2 points: one copy per key each


def _prior_steps():
    """A training step of each other trained kind: a prior, a classifier, the super-resolution
    decoder, each with what it trains on."""
    from helpers.models.classifier import ClassifierConfig, EmojiClassifier
    from helpers.models.pixelcnn import PixelCNN, PixelCNNConfig
    from helpers.models.superres import SuperRes, SuperResConfig

    torch.manual_seed(0)
    codes, labels = torch.randint(0, 16, (4, 8, 8)), torch.randint(0, 3, (4,))
    prior = PixelCNN(PixelCNNConfig(num_codes=16, hidden=16, layers=2, num_classes=3))
    classifier = EmojiClassifier(ClassifierConfig(num_classes=3, image_size=32))
    superres = SuperRes(SuperResConfig())
    sr_batch = (torch.randint(0, 512, (2, 8, 8)), torch.randint(0, 512, (2, 16, 16)),
                torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8),
                torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8))
    return {"prior": (prior, (codes, labels)), "classifier": (classifier, (_images(4), labels)),
            "superres": (superres, sr_batch)}


@pytest.mark.parametrize("kind", ["prior", "classifier", "superres"])
def test_the_other_training_steps_read_nothing_back(kind):
    """Their logs stay tensors on the device until the Trainer reads them at a log point."""
    model, batch = _prior_steps()[kind]
    model.train()
    with CountReads() as counter:
        loss, logs = model.training_step(batch)
    assert counter.reads == 0, f"{kind}: {counter.reads} reads in one step (logs {sorted(logs)})"
