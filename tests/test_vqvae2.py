"""VQ-VAE-2: shapes of both code levels, round trips, the training step, SSIM, checkpoints."""

from dataclasses import replace

import pytest
import torch

from helpers.checkpoints import build_model, load_checkpoint, save_checkpoint
from helpers.models.vqvae2 import VQVAE2, VQVAE2_CONFIGS, VQVAE2Config
from helpers.runtime import host_floats

TINY = VQVAE2Config(hidden=32, res_hidden=16, decoder_hidden=32, res_blocks=1, embed_dim=8,
                    num_codes_top=16, num_codes_bottom=16, restart_window=20)


def _discs(n: int, seed: int = 0) -> torch.Tensor:
    """uint8 (n, 3, 64, 64): three coloured discs on white, emoji-like flat colours and edges."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    images = torch.ones(n, 3, 64, 64)
    for k in range(n):
        for _ in range(3):
            cx, cy = torch.randint(10, 54, (2,), generator=g).tolist()
            r = torch.randint(5, 14, (1,), generator=g).item()
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            images[k][:, inside] = torch.rand(3, 1, generator=g)
    return (images * 255).round().to(torch.uint8)


def test_vqvae2_code_grids_and_reconstruction_shapes():
    torch.manual_seed(0)
    model = VQVAE2(TINY)
    x = _discs(3)
    recon, vq_t, vq_b = model(x)
    assert recon.shape == (3, 3, 64, 64)
    assert vq_t.codes.shape == (3, 8, 8) and vq_b.codes.shape == (3, 16, 16)
    model.eval()
    top, bottom = model.encode(x)
    assert top.shape == (3, 8, 8) and bottom.shape == (3, 16, 16) and top.dtype == torch.long
    images = model.decode_codes(top, bottom)
    assert images.shape == (3, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert torch.allclose(images, model(x)[0], atol=1e-5)   # decode(encode(x)) is the reconstruction
    assert model.top_condition(top).shape == (3, TINY.embed_dim, 16, 16)
    assert VQVAE2.latent_sizes(64) == (8, 16)


def test_the_saved_code_grids_of_some_rows_are_what_encoding_those_images_again_gives():
    # 05's super-resolution decoder reads 03's grids instead of encoding its pairs a second time.
    from helpers.artifacts import CodeGrids
    from helpers.autoencode import encode_all

    torch.manual_seed(0)
    model, x = VQVAE2(TINY).eval(), _discs(6)
    top, bottom = encode_all(model, x, batch_size=4)
    n = len(x)
    grids = CodeGrids(codes={"top": top, "bottom": bottom}, num_codes={"top": 16, "bottom": 16}, copy_codes={},
                      category=torch.zeros(n, dtype=torch.long), category_names=["a"],
                      subcategory=torch.zeros(n, dtype=torch.long), subcategory_names=["a1"],
                      vendor=torch.zeros(n, dtype=torch.long), vendor_names=["v"], train_idx=torch.arange(4),
                      val_idx=torch.arange(4, n), fingerprint="toy", producer="03_vqvae2", autoencoder_step=1)
    rows = torch.tensor([5, 1, 3])
    again = encode_all(model, x[rows])
    assert all(torch.equal(a, b) for a, b in zip(grids.of_rows(rows), again)) and len(again) == 2


def test_vqvae2_codes_decode_and_encode_back_after_brief_training():
    torch.manual_seed(0)
    model = VQVAE2(TINY)
    x = _discs(8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        loss, logs = model.training_step((x,))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(logs["psnr"]) > 14
    model.eval()
    top, bottom = model.encode(x)
    top2, bottom2 = model.encode(model.decode_codes(top, bottom))
    assert (top2 == top).float().mean() > 0.6
    assert (bottom2 == bottom).float().mean() > 0.6
    assert top.unique().numel() > 4 and bottom.unique().numel() > 4   # not a collapsed codebook


def test_vqvae2_training_step_under_bf16_and_channels_last():
    torch.manual_seed(0)
    model = VQVAE2(TINY).to(memory_format=torch.channels_last)
    x = _discs(4).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs = model.training_step((x,))
    loss.backward()
    assert torch.isfinite(loss)
    for key in ("mse", "psnr", "ssim", "commit", "perplexity_top", "perplexity_bottom", "used_top",
                "used_bottom", "loss"):
        assert isinstance(host_floats([logs[key]])[0], float), key   # read by the Trainer every few steps
    assert model.quantizer_t.codebook.dtype == torch.float32     # EMA state stays fp32
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "some layer gets no gradient"
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        top, bottom = model.eval().encode(x)
        assert model.decode_codes(top, bottom).shape == (4, 3, 64, 64)


def test_encode_picks_bottom_codes_given_the_quantized_top_as_training_does():
    torch.manual_seed(0)
    model = VQVAE2(TINY)
    x = _discs(3)
    model(x)                                                 # k-means init of both codebooks
    with torch.no_grad():                                    # top code vectors far from the encoder
        model.quantizer_t.codebook.add_(3 * torch.randn_like(model.quantizer_t.codebook))
    model.eval()
    _, vq_t, vq_b = model(x)
    top, bottom = model.encode(x)
    assert torch.equal(top, vq_t.codes) and torch.equal(bottom, vq_b.codes)


def test_bottom_codes_depend_on_the_top_codes():
    # The bottom quantizer sees the decoded top: changing the top codes changes the bottom ones.
    torch.manual_seed(0)
    model = VQVAE2(TINY)
    x = _discs(2)
    model(x)                                   # k-means init of both codebooks
    model.eval()
    h_b = model.enc_b(model._prepare(x))
    top = model.quantizer_t.quantize(model.enc_t(h_b))
    other = (top + 1) % TINY.num_codes_top
    bottom = model.quantizer_b.quantize(model._bottom_input(h_b, model.quantizer_t.embed(top)))
    bottom_other = model.quantizer_b.quantize(model._bottom_input(h_b, model.quantizer_t.embed(other)))
    assert not torch.equal(bottom, bottom_other)


def test_vqvae2_checkpoint_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = VQVAE2(TINY)
    x = _discs(4)
    model.training_step((x,))[0].backward()          # codebooks initialised, EMA moved
    model.eval()
    path = save_checkpoint(tmp_path / "vqvae2.pt", model, extra={"image_size": 64})
    ckpt = load_checkpoint(path, expect={"model_class": "VQVAE2", "image_size": 64})
    rebuilt = build_model(ckpt)
    assert rebuilt.config == model.config
    for a, b in zip(model.encode(x), rebuilt.encode(x)):
        assert torch.equal(a, b)
    assert bool(rebuilt.quantizer_t.initialized) and bool(rebuilt.quantizer_b.initialized)
    rebuilt.train()
    before = rebuilt.quantizer_b.codebook.clone()
    rebuilt(x)                                        # a loaded model never re-runs k-means
    assert torch.allclose(rebuilt.quantizer_b.codebook, before, atol=0.1)


def test_named_configs_include_the_reports_setting():
    report = VQVAE2_CONFIGS["report"]
    assert (report.embed_dim, report.num_codes_top, report.num_codes_bottom) == (256, 512, 512)
    model = VQVAE2.named("default", hidden=32, decoder_hidden=32, res_hidden=16)
    assert model.config == replace(VQVAE2_CONFIGS["default"], hidden=32, decoder_hidden=32, res_hidden=16)
    assert VQVAE2.from_config_dict({"hidden": 32}).config.hidden == 32
    old = VQVAE2.from_config_dict({"hidden": 32, "augment_flip": True, "restart_threshold": 0.0})   # older names
    assert old.config == VQVAE2Config(hidden=32, train_flip=True)
    with pytest.raises(ValueError, match="no longer has the setting restart_threshold"):
        VQVAE2.from_config_dict({"restart_threshold": 0.5})
    with pytest.raises(ValueError, match="no VQ-VAE-2 config"):
        VQVAE2.named("augmented")
