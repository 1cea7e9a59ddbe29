"""VQ-VAE: shapes, the loss, code round trips, checkpoints."""

import dataclasses
import math

import pytest
import torch

from helpers.checkpoints import build_model, load_checkpoint, save_checkpoint
from helpers.models import MODEL_REGISTRY
from helpers.models.losses import ssim
from helpers.models.vqvae import VQVAE, VQVAE_CONFIGS, VQVAEConfig
from helpers.runtime import OnHost, host_floats


TINY = dict(hidden=32, res_hidden=16, res_blocks=1, num_codes=32, embed_dim=8)


def _images(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("downsample,side", [(4, 8), (2, 16)])
def test_vqvae_latent_grid_shapes(downsample, side):
    model = VQVAE(VQVAEConfig(downsample=downsample, **TINY)).eval()
    x = _images(3)
    codes = model.encode(x)
    assert codes.shape == (3, side, side) and codes.dtype == torch.long
    recon, vq = model(x)
    assert recon.shape == (3, 3, 32, 32) and vq.codes.shape == (3, side, side)
    assert recon.min() >= -1 and recon.max() <= 1           # clamped at eval
    assert model.decode_codes(codes).shape == (3, 3, 32, 32)


def test_vqvae_named_configs_build_and_are_registered():
    assert MODEL_REGISTRY["VQVAE"] is VQVAE
    report = VQVAE_CONFIGS["report"]
    assert (report.num_codes, report.hidden, report.embed_dim) == (256, 256, 256)
    for name in VQVAE_CONFIGS:
        m = VQVAE.named(name)
        assert m.latent_size(32) in (8, 16)
    assert VQVAE_CONFIGS["default"] == VQVAEConfig()                       # its values are the defaults
    with pytest.raises(ValueError, match="no VQ-VAE config 'l2'; the named ones"):
        VQVAE.named("l2")


def test_vqvae_training_step_returns_finite_loss_and_logs_read_as_floats():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(ssim_weight=0.5, **TINY)).train()
    loss, raw = model.training_step((_images(),))
    assert loss.ndim == 0 and torch.isfinite(loss)
    # nothing read back from the device in the step: 0-d tensors, or worked out from one when read
    assert all(torch.is_tensor(v) and v.ndim == 0 or isinstance(v, OnHost) for v in raw.values())
    logs = {key: host_floats([value])[0] for key, value in raw.items()}   # as the Trainer reads them
    for key in ("mse", "commit", "perplexity", "used", "psnr", "ssim", "loss"):
        assert isinstance(logs[key], float), key
    assert logs["psnr"] == 10 * math.log10(4.0 / logs["mse"])
    expected = logs["mse"] + logs["commit"] + 0.5 * (1 - logs["ssim"])
    assert math.isclose(logs["loss"], expected, rel_tol=1e-4)
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())   # straight-through reaches the encoder


@pytest.mark.parametrize("module,model_cls,config", [
    ("helpers.models.vqvae", "VQVAE", VQVAEConfig(train_flip=True, train_shift=2, **TINY)),
    ("helpers.models.vqvae2", "VQVAE2", None)])
def test_augmentation_applies_in_training_only(monkeypatch, module, model_cls, config):
    import importlib

    mod = importlib.import_module(module)
    if config is None:                                  # the VQ-VAE-2 test's tiny model, augmenting
        from test_vqvae2 import TINY as TINY2
        config = dataclasses.replace(TINY2, train_flip=True, train_shift=2)
    seen = []
    monkeypatch.setattr(mod, "random_flip_shift", lambda x, flip, shift: seen.append((flip, shift)) or 255 - x)
    model = getattr(mod, model_cls)(config)
    size = 64 if model_cls == "VQVAE2" else 32
    images = torch.randint(0, 256, (4, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.eval().training_step((images,))
    assert seen == []                                   # evaluation sees the images as they are
    loss = model.train().training_step((images,))[0]
    assert seen == [(True, 2)] and torch.isfinite(loss)


def test_vqvae_trains_under_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**TINY)).to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = _images(8)
    losses = []
    for _ in range(15):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, logs = model.training_step((x,))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["mse"])
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert model.quantizer.codebook.dtype == torch.float32


def _blobs(n, seed=0):
    """Emoji-like toy images: a few flat-coloured disks on white."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    out = torch.full((n, 3, 32, 32), 255.0)
    for i in range(n):
        for _ in range(3):
            c, r = torch.rand(2, generator=g) * 32, 4 + torch.rand(1, generator=g) * 8
            inside = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2) < r ** 2
            out[i][:, inside] = (torch.rand(3, generator=g) * 255)[:, None]
    return out.to(torch.uint8)


def test_vqvae_decode_then_encode_gives_back_most_codes():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**TINY)).train()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    x = _blobs(16)
    for _ in range(60):
        loss, _ = model.training_step((x,))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    codes = model.encode(x)
    again = model.encode(model.decode_codes(codes))
    assert (again == codes).float().mean() > 0.5


def test_vqvae_checkpoint_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(downsample=2, **TINY)).train()
    model.training_step((_images(),))                     # k-means init + one EMA step
    path = save_checkpoint(tmp_path / "vqvae.pt", model, epoch=1)
    ckpt = load_checkpoint(path, expect={"model_class": "VQVAE"})
    rebuilt = build_model(ckpt)
    assert isinstance(rebuilt, VQVAE) and rebuilt.config == model.config
    assert bool(rebuilt.quantizer.initialized)
    model.eval()
    x = _images(4, seed=1)
    assert torch.equal(model.encode(x), rebuilt.encode(x))
    assert torch.equal(model(x)[0], rebuilt(x)[0])


def test_a_checkpoint_saved_before_a_config_field_existed_loads_with_that_fields_default(tmp_path):
    from helpers.checkpoints import CheckpointError, model_spec

    model = VQVAE(VQVAEConfig(**TINY))
    path = save_checkpoint(tmp_path / "old.pt", model)
    ckpt = torch.load(path, weights_only=False)
    del ckpt["model_kwargs"]["train_flip"], ckpt["model_kwargs"]["train_shift"]   # as an older version saved it
    torch.save(ckpt, path)
    loaded = load_checkpoint(path, expect=model_spec(model))
    assert build_model(loaded).config == model.config
    with pytest.raises(CheckpointError, match="train_flip is False in the checkpoint, True expected"):
        load_checkpoint(path, expect=model_spec(VQVAE(VQVAEConfig(train_flip=True, **TINY))))


def test_a_checkpoint_with_renamed_or_retired_config_fields_loads_unless_a_retired_one_was_on(tmp_path):
    from helpers.checkpoints import CheckpointError, model_spec

    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(train_shift=1, **TINY)).eval()
    path = save_checkpoint(tmp_path / "old.pt", model)
    ckpt = torch.load(path, weights_only=False)
    kwargs = ckpt["model_kwargs"]
    kwargs["augment_flip"], kwargs["augment_shift"] = kwargs.pop("train_flip"), kwargs.pop("train_shift")
    kwargs.update(restart_threshold=0.0, perceptual_weight=0.0, l2_codes=False)   # as an older version saved it
    torch.save(ckpt, path)
    rebuilt = build_model(load_checkpoint(path, expect=model_spec(model)))
    assert rebuilt.config == model.config
    x = _images(2)
    assert torch.equal(rebuilt(x)[0], model(x)[0])
    kwargs["l2_codes"] = True                                 # a setting the model no longer has
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="no longer has the setting l2_codes"):
        load_checkpoint(path, expect=model_spec(model))
    with pytest.raises(CheckpointError, match="l2_codes=True"):
        build_model(load_checkpoint(path))


def test_ssim_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional")
    torch.manual_seed(0)
    a = torch.rand(4, 3, 32, 32)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    ours = ssim(a, b)
    ref = tm.structural_similarity_index_measure(b, a, data_range=1.0)
    assert abs(ours.item() - ref.item()) < 1e-4
    x = torch.rand(3, 3, 40, 64, requires_grad=True)    # not square: both blur axes must be right
    y = (x.detach() + 0.2 * torch.randn(3, 3, 40, 64)).clamp(0, 1)
    s = ssim(x, y)
    assert abs(s.item() - tm.structural_similarity_index_measure(x.detach(), y, data_range=1.0).item()) < 1e-5
    s.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert abs(ssim(a, a).item() - 1) < 1e-6


def test_command_line_names_the_configs_when_given_one_that_is_gone(capsys):
    from helpers import cli

    with pytest.raises(SystemExit):
        cli.main(["--model", "vqvae", "--config", "augmented", "--profile", "smoke"])
    assert "'augmented': vqvae has the named configs default, report, latent16" in capsys.readouterr().err
