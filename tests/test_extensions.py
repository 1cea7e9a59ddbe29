"""Extensions: interpolation, inpainting (both methods, honest selection), super-resolution
baselines, and the sampler's known-codes option they rely on."""

import pytest
import torch
import torch.nn.functional as F

from helpers import extensions as ext
from helpers.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig
from helpers.models.superres import SuperRes
from helpers.models.vqvae import VQVAE, VQVAEConfig
from helpers.models.vqvae2 import VQVAE2, VQVAE2Config
from helpers.sampling import decode, sample_codes, sample_codes_naive

K = 12


def _vqvae():
    torch.manual_seed(0)
    return VQVAE(VQVAEConfig(hidden=32, res_hidden=16, res_blocks=1, num_codes=K, embed_dim=8,
                             kmeans_init=False)).eval()


def _prior(kind="gated", num_classes=0):
    torch.manual_seed(1)
    cfg = dict(num_codes=K, hidden=16, layers=3, head_hidden=16, num_classes=num_classes)
    model = PixelCNN(PixelCNNConfig(**cfg)) if kind == "pixelcnn" else GatedPixelCNN(GatedPixelCNNConfig(**cfg))
    return model.eval()


def _images(n, seed=0):
    """uint8 32x32: a coloured rectangle on white each."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, 32, 32), 255, dtype=torch.uint8)
    for i in range(n):
        y, x = torch.randint(0, 16, (2,), generator=g).tolist()
        images[i, :, y:y + 14, x:x + 14] = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
    return images


# ---- the sampler's known codes ----------------------------------------------------------------

class CopyLeft(torch.nn.Module):
    """A prior that all but certainly repeats the code to its left (column 0: uniform)."""

    def forward(self, codes, labels=None, cond=None):
        left = F.pad(codes, (1, 0))[:, :, :-1]
        logits = 30.0 * F.one_hot(left, K).permute(0, 3, 1, 2).float()
        logits[:, :, :, 0] = 0
        return logits


def test_known_codes_are_kept_and_condition_the_codes_after_them():
    n = 6
    known = torch.randint(0, K, (n, 8, 8))
    mask = torch.zeros(n, 8, 8, dtype=torch.bool)
    mask[:, :, 0] = True                                     # the first column is given
    out = sample_codes(CopyLeft(), n, known_codes=known, known_mask=mask, generator=torch.Generator().manual_seed(0),
                       progress=False)
    assert torch.equal(out[:, :, 0], known[:, :, 0])
    assert torch.equal(out, known[:, :, :1].expand(n, 8, 8))   # every row copies its given first code


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_known_codes_on_the_fast_path_draw_what_the_naive_loop_draws(kind):
    prior, n = _prior(kind), 5
    known = torch.randint(0, K, (n, 8, 8))
    mask = torch.rand(n, 8, 8, generator=torch.Generator().manual_seed(3)) < 0.5
    kw = dict(known_codes=known, known_mask=mask, temperature=0.9, progress=False)
    fast = sample_codes(prior, n, generator=torch.Generator().manual_seed(1), **kw)
    naive = sample_codes(prior, n, generator=torch.Generator().manual_seed(1), method="naive", **kw)
    assert torch.equal(fast, naive) and torch.equal(fast[mask], known[mask])
    # nothing given: exactly the unconstrained samples (the random stream is unchanged)
    free = sample_codes(prior, n, generator=torch.Generator().manual_seed(1), progress=False,
                        known_codes=known, known_mask=torch.zeros_like(mask))
    assert torch.equal(free, sample_codes_naive(prior, n, generator=torch.Generator().manual_seed(1), progress=False))
    with pytest.raises(ValueError):
        sample_codes(prior, n, known_codes=known, progress=False)


# ---- interpolation ----------------------------------------------------------------------------

def test_interpolation_runs_from_a_to_b_in_every_row():
    vq, (a, b) = _vqvae(), _images(2)
    rows = ext.interpolate(vq, a, b, steps=12)
    assert list(rows) == ["latent blend", "snapped to codes", "pixel cross-fade"]
    assert all(r.shape == (12, 3, 32, 32) and r.dtype == torch.uint8 for r in rows.values())
    recon = decode(vq, vq.encode(torch.stack([a, b])))         # the VQ-VAE's reconstructions of A and B
    for name in ("latent blend", "snapped to codes"):
        assert (rows[name][0].int() - recon[0].int()).abs().max() <= 1
        assert (rows[name][-1].int() - recon[1].int()).abs().max() <= 1
    assert torch.equal(rows["pixel cross-fade"][0], a) and torch.equal(rows["pixel cross-fade"][-1], b)
    # snapping changes the middle: a blend of two code vectors is (almost never) a code itself
    assert not torch.equal(rows["latent blend"][6], rows["snapped to codes"][6])
    one = ext.blend_at(vq, a, b, 0.5, source="encoder")
    assert list(one) == ["A", "latent blend", "snapped to codes", "pixel cross-fade", "B"]
    assert all(v.shape == (1, 3, 32, 32) for v in one.values())


# ---- inpainting -------------------------------------------------------------------------------

def test_random_masks_are_seeded_squares_inside_the_image():
    m = ext.random_masks(50, seed=4)
    assert m.shape == (50, 1, 32, 32) and m.dtype == torch.bool
    assert (m.flatten(1).sum(1) == 64).all()
    rows, cols = m[:, 0].any(2), m[:, 0].any(1)
    assert (rows.sum(1) == 8).all() and (cols.sum(1) == 8).all()   # one 8x8 square each
    assert torch.equal(m, ext.random_masks(50, seed=4)) and not torch.equal(m, ext.random_masks(50, seed=5))


def test_code_mask_marks_exactly_the_cells_a_mask_touches():
    aligned, offset = ext.code_mask(ext.mask_at([4, 5], [4, 5]))
    assert aligned.sum() == 4 and aligned[1:3, 1:3].all()            # pixels 4..11 = cells 1, 2
    assert offset.sum() == 9 and offset[1:4, 1:4].all()              # pixels 5..12 = cells 1, 2, 3


def test_autoencoder_inpaint_changes_only_masked_pixels():
    vq, images = _vqvae(), _images(4)
    masks = ext.random_masks(4, seed=1)
    out = ext.autoencoder_inpaint(vq, images, masks)
    assert torch.equal(out[~masks.expand_as(out)], images[~masks.expand_as(images)])
    assert not torch.equal(out, images)


def test_prior_inpaint_never_sees_the_hidden_pixels_and_keeps_visible_codes():
    vq, prior, n, s = _vqvae(), _prior(num_classes=3), 3, 4
    images, masks = _images(n), ext.mask_at([8, 4, 20], [8, 20, 2])
    other = torch.where(masks, torch.randint(0, 256, images.shape, dtype=torch.uint8), images)  # other hidden pixels
    kw = dict(n_samples=s, labels=torch.tensor([0, 1, 2]), seed=7, progress=False)
    res = ext.prior_inpaint(prior, vq, images, masks, **kw)
    res_other = ext.prior_inpaint(prior, vq, other, masks, **kw)
    assert res.samples.shape == (n, s, 3, 32, 32) and res.nll.shape == (n, s)
    assert torch.equal(res.codes, res_other.codes) and torch.equal(res.best_index, res_other.best_index)
    visible = ~ext.code_mask(masks)
    given = vq.encode(ext.apply_mask(images, masks))
    for k in range(s):
        assert torch.equal(res.codes[:, k][visible], given[visible])
    assert torch.equal(res.samples[~masks[:, None].expand_as(res.samples)],
                       images[:, None].expand_as(res.samples)[~masks[:, None].expand_as(res.samples)])
    assert not torch.equal(res.codes[:, 0], res.codes[:, 1])        # several different samples
    expected = prior.nll_per_image(res.codes.flatten(0, 1), torch.tensor([0, 1, 2]).repeat_interleave(s))
    torch.testing.assert_close(res.nll.flatten(), expected, rtol=1e-4, atol=1e-4)   # with categories too


def test_best_sample_is_chosen_by_likelihood_or_visible_pixels_and_the_sampler_runs_once():
    vq, prior, n, s = _vqvae(), _prior(), 3, 5
    images, masks = _images(n, seed=2), ext.random_masks(n, seed=2)
    batches = []
    start = prior.start_sampling
    prior.start_sampling = lambda b, *a, **k: batches.append(b) or start(b, *a, **k)
    res = ext.prior_inpaint(prior, vq, images, masks, n_samples=s, progress=False)
    assert batches == [n * s]                                  # all images x samples: one batch
    assert torch.equal(res.best_index, res.nll.argmin(1))
    assert torch.equal(res.best, res.samples[torch.arange(n), res.best_index])
    expected = prior.nll_per_image(res.codes.flatten(0, 1)).view(n, s)   # the sampler's NLL is the model's
    torch.testing.assert_close(res.nll, expected, rtol=1e-4, atol=1e-4)
    vis = ext.prior_inpaint(prior, vq, images, masks, n_samples=s, select="visible", progress=False)
    assert torch.equal(vis.best_index, vis.visible_mse.argmin(1))


def test_masked_metrics_measure_the_masked_region_alone():
    images, masks = _images(2), ext.mask_at([0, 10], [0, 12])
    perfect = ext.inpainting_metrics(images, images, masks)
    assert perfect["psnr_masked"] == pytest.approx(100.0) and perfect["ssim_masked"] == pytest.approx(1.0)
    wrong = torch.where(masks, 255 - images, images)           # errors only inside the mask
    m = ext.inpainting_metrics(images, wrong, masks)
    assert m["mse"] == pytest.approx(m["mse_masked"] * 64 / 1024, rel=1e-5)
    assert m["psnr_masked"] < m["psnr"] and m["ssim_masked"] < m["ssim"]


def test_evaluate_inpainting_reports_both_methods_in_the_metrics_file_shape():
    vq, prior = _vqvae(), _prior()
    images, masks = _images(3), ext.random_masks(3)
    metrics, outputs = ext.evaluate_inpainting(vq, prior, images, masks, n_samples=2, progress=False)
    assert set(metrics) == {"autoencoder", "prior", "prior_mean"}
    keys = {"mse", "psnr", "ssim", "mse_masked", "psnr_masked", "ssim_masked"}
    assert all(set(v) == keys for v in metrics.values())
    flat = ext.by_method({"train": metrics, "val": metrics})
    assert flat["prior"]["val_psnr_masked"] == metrics["prior"]["psnr_masked"] and "train_ssim" in flat["autoencoder"]
    assert outputs["autoencoder"].shape == images.shape


# ---- super-resolution -------------------------------------------------------------------------

def _discs(n):
    """(64 px, 128 px) uint8 renderings of the same soft discs."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    big = torch.ones(n, 3, 128, 128)
    for k in range(n):
        inside = torch.sigmoid((0.05 - (xx - 0.3 - 0.1 * k) ** 2 - (yy - 0.5) ** 2) * 100)
        big[k] = 1 - inside * torch.tensor([0.2, 0.6, 0.9]).view(3, 1, 1)
    small = F.avg_pool2d(big, 2)
    return (small * 255).round().to(torch.uint8), (big * 255).round().to(torch.uint8)


def test_upsampling_baselines_beat_nearest_on_smooth_images():
    small, big = _discs(3)
    for method in ("bicubic", "lanczos"):
        up = ext.upsample(small, 128, method)
        assert up.shape == (3, 3, 128, 128) and up.dtype == torch.uint8
        assert ext.per_image_psnr(big, up).mean() > ext.per_image_psnr(big, ext.upsample(small, 128, "nearest")).mean()
    flat = torch.full((1, 3, 64, 64), 200, dtype=torch.uint8)
    assert (ext.upsample(flat, 128, "lanczos") == 200).all()


def test_evaluate_superres_compares_the_decoder_with_both_baselines():
    torch.manual_seed(0)
    vq = VQVAE2(VQVAE2Config(hidden=16, res_hidden=8, decoder_hidden=16, res_blocks=1, embed_dim=8,
                             num_codes_top=16, num_codes_bottom=16, kmeans_init=False)).eval()
    model = SuperRes.from_vqvae2(vq, hidden=16, res_hidden=8, res_blocks=1)
    small, big = _discs(2)
    metrics, outputs = ext.evaluate_superres(model, vq, small, big)
    assert set(metrics) == {"decoder", "bicubic", "lanczos"}
    assert all(set(v) == {"val_mse", "val_psnr", "val_ssim"} for v in metrics.values())
    assert all(o.shape == big.shape and o.dtype == torch.uint8 for o in outputs.values())
    assert metrics["bicubic"]["val_psnr"] > metrics["decoder"]["val_psnr"]   # an untrained decoder loses


# ---- 05's stages on a dataset without 128 px images -------------------------------------------

def _small_pngs(root, n=30, size=48):
    """A folder of ``n`` small PNG emojis (a coloured square on white each): too small for any
    128 px image, as a 64 px vendor or a user's folder of icons is."""
    from PIL import Image, ImageDraw

    folder = root / "small"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        image = Image.new("RGB", (size, size), "white")
        x, y = torch.randint(2, size // 2, (2,), generator=g).tolist()
        colour = tuple(torch.randint(0, 200, (3,), generator=g).tolist())
        ImageDraw.Draw(image).rectangle([x, y, x + size // 3, y + size // 3], fill=colour)
        image.save(folder / f"icon{i:02d}.png")
    return folder


def test_05_runs_on_a_dataset_without_128px_images_and_records_superres_as_not_measured(tmp_path, monkeypatch,
                                                                                       capsys):
    from helpers import paths, results
    from helpers.data import build_dataset, load_dataset
    from helpers.profiles import get_profile
    from helpers.train import TrainConfig

    monkeypatch.setattr(paths, "PROCESSED_ROOT", tmp_path / "processed")
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path / "artifacts")
    profile = get_profile("smoke")
    build_dataset([f"folder:{_small_pngs(tmp_path)}"], profile, verbose=False)
    ds = load_dataset("smoke")
    assert len(ds.images128) == 0 and len(ds.val_idx) > 0 and ext.superres_skipped(ds) == "no 128 px images"

    prior = _prior("pixelcnn", num_classes=len(ds.category_names))
    inpainting = ext.inpaint_splits(_vqvae(), prior, ds, ds.category, profile=profile, prior_name="pixelcnn",
                                    n_samples=2, select="visible", train_subset=5)
    assert set(inpainting.metrics) == {"autoencoder", "prior", "prior_mean"}
    assert inpainting.protocol["n_val"] == len(ds.val_idx) and inpainting.protocol["n_train"] == 5
    # nothing to train on or measure against: said, and nothing is built, trained or written
    sr = ext.fit_superres(None, ds, None, TrainConfig(max_steps=1), profile=profile)
    assert sr.skipped == "no 128 px images" and sr.model is None and sr.trainer is None
    assert "super-resolution skipped: this dataset has no 128 px images" in capsys.readouterr().out
    assert not paths.checkpoint_path("smoke", "superres").exists()
    scores = ext.score_superres(sr, None, profile=profile)
    assert scores.metrics == {"not_measured": "no 128 px images"} and not scores.outputs
    assert ext.superres_samples(sr, None, None, None, 4, seed=0) is None
    ext.save_extensions(inpainting, scores, sr, ds, profile=profile)
    written = results.load_metrics("smoke", "extensions")
    assert written["superres"] == {"not_measured": "no 128 px images"}
    assert written["inpainting"]["prior"]["val_psnr"] == pytest.approx(inpainting.metrics["prior"]["val_psnr"],
                                                                       abs=1e-5)
    assert written["protocol"]["superres"]["n_val"] == 0


class _Pairs:
    """A dataset whose 128 px images all sit in one split."""

    def __init__(self, train: int, val: int):
        self.rows = {"train": torch.arange(train), "val": torch.arange(val)}

    def superres_rows(self, split):
        return self.rows[split]


def test_superres_is_skipped_when_either_split_has_no_128px_pair():
    assert ext.superres_skipped(_Pairs(5, 0)) == "no 128 px images in the val split"
    assert ext.superres_skipped(_Pairs(0, 3)) == "no 128 px images in the train split"
    assert ext.superres_skipped(_Pairs(0, 0)) == "no 128 px images"
    assert ext.superres_skipped(_Pairs(5, 3)) is None
