"""Super-resolution decoder: VQ-VAE-2 codes -> 128x128 images."""

import pytest
import torch
import torch.nn.functional as F

from helpers.checkpoints import build_model, load_checkpoint, save_checkpoint
from helpers.models.superres import SuperRes
from helpers.models.vqvae2 import VQVAE2, VQVAE2Config

TINY_VQ = VQVAE2Config(hidden=16, res_hidden=8, decoder_hidden=16, res_blocks=1, embed_dim=8,
                       num_codes_top=16, num_codes_bottom=16)


def _pairs(n: int, seed: int = 0):
    """(64 px, 128 px) uint8 renderings of the same soft discs."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    big = torch.ones(n, 3, 128, 128)
    for k in range(n):
        cx, cy, r = (0.3 + 0.4 * torch.rand(3, generator=g)).tolist()
        inside = torch.sigmoid(((r * 0.5) ** 2 - (xx - cx) ** 2 - (yy - cy) ** 2) * 400)
        big[k] = 1 - inside * (1 - torch.rand(3, 1, 1, generator=g))
    small = F.avg_pool2d(big, 2)
    return (small * 255).round().to(torch.uint8), (big * 255).round().to(torch.uint8)


def test_superres_draws_codes_at_twice_the_resolution():
    torch.manual_seed(0)
    vq = VQVAE2(TINY_VQ)
    small, big = _pairs(4)
    vq(small)                                                  # k-means init of the codebooks
    vq.eval()
    model = SuperRes.from_vqvae2(vq, hidden=16, res_hidden=8, res_blocks=1)
    assert torch.equal(model.embed_b.weight, vq.quantizer_b.codebook)
    assert model.config.embed_dim == TINY_VQ.embed_dim
    model.eval()
    out = model.upscale(vq, small)
    assert out.shape == (4, 3, 128, 128) and out.min() >= -1 and out.max() <= 1


def test_superres_learns_on_a_tiny_batch_and_rebuilds_from_checkpoint(tmp_path):
    torch.manual_seed(0)
    vq = VQVAE2(TINY_VQ)
    small, big = _pairs(4)
    vq(small)
    vq.eval()
    codes_top, codes_bottom = vq.encode(small)
    model = SuperRes.from_vqvae2(vq, hidden=16, res_hidden=8, res_blocks=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss, logs = model.training_step((codes_top, codes_bottom, small, big))
        first = first if first is not None else logs["mse"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["mse"] < 0.5 * first and set(logs) >= {"mse", "psnr", "ssim", "loss"}
    # Only the decoder learned: the codebooks are still the VQ-VAE-2's.
    assert torch.equal(model.embed_t.weight, vq.quantizer_t.codebook)
    assert torch.equal(model.embed_b.weight, vq.quantizer_b.codebook)
    model.eval()
    path = save_checkpoint(tmp_path / "superres.pt", model, extra={"image_size": 128})
    rebuilt = build_model(load_checkpoint(path, expect={"model_class": "SuperRes"}))
    assert torch.equal(rebuilt(codes_top, codes_bottom, small), model(codes_top, codes_bottom, small))


def test_superres_skip_reads_the_low_res_image_and_codes_only_does_not():
    torch.manual_seed(0)
    vq = VQVAE2(TINY_VQ)
    small, _ = _pairs(2)
    vq(small)
    vq.eval()
    codes = vq.encode(small)
    other = small.flip(-1)
    model = SuperRes.from_vqvae2(vq, hidden=16, res_hidden=8, res_blocks=1).eval()
    with pytest.raises(ValueError, match="pass low="):
        model(*codes)
    with pytest.raises(ValueError, match="must be 64x64 images"):   # a 32 px image for 64 px codes
        model(*codes, F.avg_pool2d(small.float(), 2).to(torch.uint8))
    # Same codes, another low-res image: a different output (the image is read, not only the codes),
    # and with the decoder's last layer zeroed the output is exactly the bicubic upscale.
    assert not torch.allclose(model(*codes, small), model(*codes, other))
    with torch.no_grad():
        model.net[-1].weight.zero_()
        model.net[-1].bias.zero_()
    bicubic = F.interpolate(small.float() / 127.5 - 1, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.allclose(model(*codes, small), bicubic.clamp(-1, 1), atol=1e-6)
    codes_only = SuperRes.from_vqvae2(vq, hidden=16, res_hidden=8, res_blocks=1, skip=False).eval()
    assert torch.equal(codes_only(*codes), codes_only(*codes, small))
