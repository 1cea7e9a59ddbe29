"""The device the code finds: with ``pick_device`` patched to the "meta" device (tensors with
shapes and no data), the Trainer, the samplers and the FID feature pass must put their models and
the tensors they create there. Meta tensors cannot be drawn from (multinomial) or copied to the
CPU, so the samplers are checked up to the first draw / decode, where a stub stops them."""

from __future__ import annotations

import pytest
import torch

from helpers import checkpoints, metrics, runtime, sampling, train
from helpers.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig
from helpers.models.vqvae import VQVAE, VQVAEConfig

META = torch.device("meta")
K = 12


def _prior():
    torch.manual_seed(0)
    return GatedPixelCNN(GatedPixelCNNConfig(num_codes=K, hidden=16, layers=2, head_hidden=16))


def _on_meta(module: torch.nn.Module) -> bool:
    return all(p.device == META for p in module.parameters())


@pytest.fixture
def tf32_flags():
    """Set the two TF32 flags with ``set(value)``; put back what they were after the test."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    def set_flags(value: bool) -> None:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = value

    yield set_flags
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class _Stop(Exception):
    """Raised by a stub where meta tensors can go no further."""


def test_trainer_defaults_to_the_picked_device_and_prepares_batches_there(monkeypatch):
    monkeypatch.setattr(train, "pick_device", lambda: META)
    codes = torch.randint(0, K, (8, 4, 4))
    trainer = train.Trainer(_prior(), (codes,), (codes,), train.TrainConfig(max_steps=1, batch_size=4, progress=False))
    assert trainer.device == META and _on_meta(trainer.model)
    assert trainer.precision == "fp32"   # bf16 only where runtime.native_bf16 says so (never on meta)
    batch = next(iter(trainer._loader(trainer.train_data, train=True)))
    (prepared,) = trainer._prepare(batch)
    assert prepared.device == META and prepared.shape == (4, 4, 4) and prepared.dtype == torch.long


def test_an_explicit_trainer_device_wins_over_the_picked_one(monkeypatch):
    monkeypatch.setattr(train, "pick_device", lambda: META)
    codes = torch.randint(0, K, (8, 4, 4))
    trainer = train.Trainer(_prior(), (codes,), None, train.TrainConfig(max_steps=1, progress=False), device="cpu")
    assert trainer.device == torch.device("cpu") and not _on_meta(trainer.model)


def test_sampler_computes_logits_on_the_priors_device(monkeypatch):
    seen = []

    def stop_at_first_draw(logits, temperature, top_k, generator):
        seen.append((logits.device, tuple(logits.shape)))
        raise _Stop

    monkeypatch.setattr(sampling, "_draw", stop_at_first_draw)
    prior = _prior().to(META)
    for method in ("incremental", "naive"):
        with pytest.raises(_Stop):
            sampling.sample_codes(prior, 3, (4, 4), method=method, progress=False)
    assert seen == [(META, (3, K)), (META, (3, K))]
    assert prior.training   # the stop still restored the mode sampling found


def _vqvae():
    torch.manual_seed(0)
    return VQVAE(VQVAEConfig(hidden=8, res_blocks=1, res_hidden=4, num_codes=K, embed_dim=4))


def test_decode_moves_cpu_codes_to_the_decoders_device(monkeypatch):
    vqvae = _vqvae().to(META)
    seen = []

    def stop(codes):
        seen.append((codes.device, tuple(codes.shape)))
        raise _Stop

    monkeypatch.setattr(vqvae, "decode_codes", stop)
    with pytest.raises(_Stop):
        sampling.decode(vqvae, torch.randint(0, K, (2, 8, 8)))
    assert seen == [(META, (2, 8, 8))]


def test_fid_extractor_sits_and_computes_on_the_requested_device():
    net = metrics.feature_extractor("fast", "meta")
    assert _on_meta(net)
    # Its forward stops at torch.autocast, which rejects "meta"; the resize it runs first builds
    # its interpolation matrices on the input's device.
    x = metrics.tf1x_resize(torch.zeros(2, 3, 32, 32, device=META), metrics.INCEPTION_SIZE)
    assert x.device == META and x.shape == (2, 3, metrics.INCEPTION_SIZE, metrics.INCEPTION_SIZE)
    body = net.Conv2d_1a_3x3(x.contiguous(memory_format=torch.channels_last))
    assert body.device == META and body.shape[:2] == (2, 32)


def test_fid_feature_pass_runs_on_the_picked_device_with_tf32_off(monkeypatch, tf32_flags):
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append((x.device, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
            return (torch.zeros(len(x), 2048),)

    monkeypatch.setattr(runtime, "pick_device", lambda: META)
    monkeypatch.setattr(metrics.inception, "feature_extractor", lambda kind, device: Recorder())
    tf32_flags(True)   # as if a training run had left TF32 on
    out = metrics.inception_features(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), batch_size=2, progress=False)
    assert out.shape == (3, 2048) and out.device == torch.device("cpu")
    assert seen == [(META, False, False)] * 2
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32   # restored after


def test_tf32_block_restores_the_flags_even_on_error(tf32_flags):
    tf32_flags(False)
    with pytest.raises(_Stop), runtime.tf32(True):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        raise _Stop
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_a_checkpoint_saved_on_cpu_loads_onto_the_requested_device(tmp_path):
    model = _prior()
    path = checkpoints.save_checkpoint(tmp_path / "prior.pt", model)
    ckpt = checkpoints.load_checkpoint(path)
    assert all(t.device == torch.device("cpu") for t in ckpt["state_dict"].values())
    on_meta = checkpoints.build_model(ckpt, device=META)
    assert _on_meta(on_meta)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in on_meta.state_dict().items()} == shapes
    on_cpu = checkpoints.build_model(ckpt)   # the default: the CPU, weights as saved
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in on_cpu.state_dict().items())
