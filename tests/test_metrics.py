"""helpers.metrics: reconstruction numbers, codebook usage, and the FID network.

Inception costs ~0.05-0.15 s per image on 2 CPU cores, so the tests that run it use a
few dozen 32 px images, extract each set once (module fixture) and are marked slow.
"""

from __future__ import annotations

import math

import pytest
import torch

from helpers import metrics
from helpers.checkpoints import safe_load
from helpers.metrics import features as metrics_features
from helpers.metrics import inception as metrics_inception


def shapes(n: int, kind: str, seed: int = 0, size: int = 32) -> torch.Tensor:
    """``n`` uint8 emoji-like images: coloured discs or squares on white."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = torch.full((n, 3, size, size), 255, dtype=torch.uint8)
    for i in range(n):
        cy, cx = (size / 4 + torch.rand(2, generator=g) * size / 2).tolist()
        r = size / 6 + float(torch.rand(1, generator=g)) * size / 6
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2) if kind == "disc" else \
            ((yy - cy).abs() < r) & ((xx - cx).abs() < r)
        out[i][:, mask] = (torch.rand(3, 1, generator=g) * 255).to(torch.uint8)
    return out


# --------------------------------------------------------------------------- reconstruction

def test_psnr_of_identical_images_is_capped_at_100db():
    x = torch.rand(3, 3, 32, 32)
    m = metrics.reconstruction_metrics(x, x.clone())
    assert m["mse"] == 0.0
    assert m["psnr"] == pytest.approx(metrics.PSNR_CAP_DB)   # capped, never inf
    assert math.isfinite(m["psnr"])


def test_psnr_of_constant_offset_0_1_is_20db():
    x = torch.rand(4, 3, 32, 32) * 0.9
    m = metrics.reconstruction_metrics(x, x + 0.1)
    assert m["mse"] == pytest.approx(0.01, rel=1e-4)
    assert m["psnr"] == pytest.approx(20.0, abs=1e-3)


def test_psnr_is_averaged_per_image_not_over_the_pooled_mse():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[0] += 0.1      # image 0: MSE 1e-2 -> 20 dB
    y[1] += 0.01     # image 1: MSE 1e-4 -> 40 dB; pooled MSE would give 23.0 dB
    assert metrics.reconstruction_metrics(x, y)["psnr"] == pytest.approx(30.0, abs=1e-3)


def test_ssim_of_identical_images_is_one_and_drops_with_noise():
    x = shapes(4, "disc").float() / 255
    assert metrics.reconstruction_metrics(x, x.clone())["ssim"] == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert metrics.reconstruction_metrics(x, noisy)["ssim"] < 0.8


def test_batched_reconstruction_metrics_match_one_call_on_uint8():
    x, y = shapes(10, "disc", seed=1), shapes(10, "disc", seed=2)
    whole = metrics.reconstruction_metrics(x.float() / 255, y.float() / 255)
    chunked = metrics.reconstruction_metrics_batched(x, y, batch_size=3)
    for k in ("mse", "psnr", "ssim"):
        assert chunked[k] == pytest.approx(whole[k], rel=1e-5)


# --------------------------------------------------------------------------- codebook

def test_codebook_usage_counts_used_and_dead_codes_and_perplexity():
    u = metrics.codebook_usage(torch.tensor([[0, 0], [1, 1]]), num_codes=4)
    assert (u["usage"], u["used"], u["dead"]) == (0.5, 2, 2)
    assert u["perplexity"] == pytest.approx(2.0)
    assert u["counts"].tolist() == [2, 2, 0, 0]


def test_codebook_perplexity_is_num_codes_when_uniform_and_one_when_collapsed():
    assert metrics.codebook_usage(torch.arange(512).repeat(3), 512)["perplexity"] == pytest.approx(512)
    collapsed = metrics.codebook_usage(torch.full((100,), 7), 512)
    assert collapsed["perplexity"] == pytest.approx(1.0)
    assert collapsed["used"] == 1


def test_codebook_usage_rejects_codes_outside_the_codebook():
    with pytest.raises(ValueError):
        metrics.codebook_usage(torch.tensor([0, 8]), num_codes=8)


# --------------------------------------------------------------------------- FID network, cheap parts

@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (17, 23), (299, 299), (400, 300)])
def test_matrix_resize_matches_torch_fidelity_tf1x_bilinear(shape):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = torch.rand(2, 3, *shape) * 255
    ref = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert (metrics.tf1x_resize(x, 299) - ref).abs().max() < 1e-3    # on the 0..255 scale


def test_torchscript_weights_map_onto_every_torch_fidelity_inception_weight():
    import io

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    mapped = metrics_inception._map_torchscript_weights(metrics_inception._load_torchscript().state_dict())
    buffer = io.BytesIO()
    torch.save(mapped, buffer)
    buffer.seek(0)
    # torch-fidelity's own module (BatchNorms not folded) loads the mapping strictly.
    ref = FeatureExtractorInceptionV3("ref", ["2048"], feature_extractor_weights_path=buffer).state_dict()
    assert set(mapped) == set(ref)
    assert all(mapped[k].shape == ref[k].shape for k in ref)
    # TF batch norm has no scale; the mapping must not invent one.
    assert all(torch.equal(v, torch.ones_like(v)) for k, v in mapped.items() if k.endswith("bn.weight"))


def test_extractors_are_registered_with_torch_fidelity():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert FEATURE_EXTRACTORS_REGISTRY[metrics.FAST] is metrics.TFInceptionFast
    assert FEATURE_EXTRACTORS_REGISTRY[metrics.PLAIN] is metrics.TFInceptionPlain


def test_train_features_are_computed_once_then_reused_from_disk(tmp_path, monkeypatch):
    calls = []

    def fake_network(images, **kwargs):
        calls.append(len(images))
        return torch.randn(len(images), 2048, dtype=torch.float64)

    monkeypatch.setattr(metrics_features, "inception_features", fake_network)
    train = shapes(12, "disc")
    key = "fp0123abcd-train-32"
    first = metrics.cached_features(train, key, tmp_path)
    second = metrics.cached_features(train, key, tmp_path)
    assert calls == [12]                                  # the network ran once
    assert torch.equal(first.float(), second.float())
    entry = safe_load(metrics.features_cache_path(key, tmp_path))   # weights_only loadable
    assert entry["version"] == metrics.FEATURES_VERSION and entry["n"] == 12

    # Other pixels under the same key are never served stale features.
    metrics.cached_features(shapes(12, "square"), key, tmp_path)
    assert calls == [12, 12]


def test_cached_features_say_computed_then_reused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(metrics_features, "inception_features",
                        lambda images, **kw: torch.zeros(len(images), 2048, dtype=torch.float64))
    images = shapes(3, "disc")
    metrics.cached_features(images, "fp-val-32", tmp_path)
    metrics.cached_features(images, "fp-val-32", tmp_path)
    out = capsys.readouterr().out
    assert "computed" in out.splitlines()[0] and "reused" in out.splitlines()[1]


def test_reference_is_the_whole_split_or_a_seeded_subset_with_its_own_cache(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from helpers import paths, references

    seen = []
    monkeypatch.setattr(metrics_features, "inception_features",
                        lambda images, **kw: seen.append(len(images)) or images.flatten(1)[:, :4].double())
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path)
    train = shapes(20, "disc")
    ds = SimpleNamespace(fingerprint="fp", images=lambda size, split: train)
    images, features = references.reference(ds, 32, "train")
    assert torch.equal(images, train) and len(features) == 20
    sub, sub_features = references.reference(ds, 32, "train", limit=8, seed=0)
    again, _ = references.reference(ds, 32, "train", limit=8, seed=0)
    other, _ = references.reference(ds, 32, "train", limit=8, seed=1)
    assert len(sub) == 8 and torch.equal(sub, again) and not torch.equal(sub, other)
    assert torch.equal(sub_features, sub.flatten(1)[:, :4].double())     # the subset's own features
    assert seen == [20, 8, 8]                     # each set through the network once, then cached
    assert len(list(tmp_path.glob("inception_*.pt"))) == 3


def test_generation_metrics_from_features_report_every_key():
    # 64-d stand-in features: the metrics do not care about the width, and 2048-d
    # eigendecompositions cost seconds each on 2 cores.
    g = torch.Generator().manual_seed(0)
    real = torch.randn(60, 64, generator=g, dtype=torch.float64)
    same = torch.randn(50, 64, generator=g, dtype=torch.float64)
    shifted = same + 3.0
    good = metrics.generation_metrics(same, real)
    bad = metrics.generation_metrics(shifted, real)
    assert set(good) >= {"fid", "kid", "kid_std", "precision", "recall", "density", "coverage"}
    assert bad["fid"] > good["fid"] + 100 and bad["kid"] > good["kid"]
    assert bad["precision"] < good["precision"]
    assert bad["density"] < good["density"] and bad["coverage"] < good["coverage"]
    stats = metrics.fid_statistics(real)
    assert metrics.generation_metrics(same, real, real_stats=stats)["fid"] == pytest.approx(good["fid"])
    only_fid = metrics.generation_metrics(same, stats)
    assert only_fid["fid"] == pytest.approx(good["fid"]) and only_fid["kid"] is None
    assert only_fid["density"] is None and only_fid["coverage"] is None


def test_density_and_coverage_count_real_balls_as_naeem_et_al_define_them():
    # real points 0..4 on a line, k = 2: the balls reach 2, 1, 1, 1, 2 (the 2nd nearest other point)
    real = torch.arange(5.0)[:, None]
    fake = torch.tensor([[0.5], [10.0]])
    # 0.5 lies in the balls of 0 (0.5 < 2) and 1 (0.5 < 1), not of 2 (1.5 < 1 fails); 10 in none
    density, coverage = metrics.density_coverage_from_features(fake, real, neighborhood=2)
    assert density == pytest.approx(2 / (2 * 2))
    assert coverage == pytest.approx(2 / 5)                     # only the balls of 0 and 1 hold a fake
    # reals as fakes: every real ball holds its own centre; in row batches the same figures
    g = torch.Generator().manual_seed(0)
    cloud = torch.randn(300, 8, generator=g)
    whole = metrics.density_coverage_from_features(cloud, cloud)
    assert whole[1] == 1.0 and whole == metrics.density_coverage_from_features(cloud, cloud, batch_size=7)
    fresh = metrics.density_coverage_from_features(torch.randn(300, 8, generator=g), cloud)
    assert 0.7 < fresh[0] < 1.3 and fresh[1] > 0.8              # like the reals: density about 1
    crowd = metrics.density_coverage_from_features(cloud[:10].repeat(30, 1), cloud)
    assert crowd[1] < 0.2                                        # ten places, copied: poor coverage
    with pytest.raises(ValueError, match="more than 5 real"):
        metrics.density_coverage_from_features(fake, real)


@pytest.mark.parametrize("n_b", [120, 400])    # rank-deficient and full-rank covariance
def test_every_fid_method_equals_torch_fidelitys_fid(n_b):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, 256, generator=g, dtype=torch.float64) * torch.linspace(0.1, 2, 256, dtype=torch.float64)
    b = torch.randn(n_b, 256, generator=g, dtype=torch.float64) + 0.1
    ref = metrics.fid_from_features(a, b, method="torch-fidelity")
    assert metrics.fid_from_features(a, b, method="samples") == pytest.approx(ref, rel=1e-6)
    stats = metrics.fid_statistics(b)
    assert metrics.fid_from_features(a, stats, method="eigh") == pytest.approx(ref, rel=1e-6)
    assert "sigma_sqrt" in stats                                           # cached for the next call
    assert metrics.fid_from_features(stats, a, method="eigh") == pytest.approx(ref, rel=1e-6)


# --------------------------------------------------------------------------- FID network, real runs

@pytest.fixture(scope="module")
def discs_and_squares():
    """20 images (10 discs, 10 squares) and their features, extracted once for the module."""
    images = torch.cat([shapes(10, "disc", seed=3), shapes(10, "square", seed=4)])
    return images, metrics.inception_features(images, batch_size=8, progress=False)


@pytest.mark.slow
def test_fid_of_a_set_against_itself_is_zero(discs_and_squares):
    images, features = discs_and_squares
    # Again, in another order and batching: the features must not depend on either.
    again = metrics.inception_features(images.flip(0), batch_size=5, progress=False).flip(0)
    assert (again - features).abs().max() < 1e-4
    assert abs(metrics.fid_from_features(features, again)) < 1e-2
    # ... and the metric can fail: discs against squares are far apart.
    assert metrics.fid_from_features(features[:10], features[10:]) > 10


@pytest.mark.slow
def test_kid_and_precision_recall_of_a_set_against_itself(discs_and_squares):
    _, features = discs_and_squares
    kid_self, _ = metrics.kid_from_features(features, features, subsets=10)
    kid_apart, _ = metrics.kid_from_features(features[:10], features[10:], subsets=10)
    # The unbiased MMD estimate of a set against itself is -2/n (mean k(x,x) - mean k(x,y)):
    # zero up to a 1/n bias (measured -0.011 for n = 20); discs vs squares measured 0.14.
    assert abs(kid_self) < 0.03 and kid_apart > 0.07
    assert metrics.precision_recall_from_features(features, features) == (1.0, 1.0)
    precision, recall = metrics.precision_recall_from_features(features[:10], features[10:])
    assert precision < 0.5 and recall < 0.5


@pytest.mark.slow
def test_registered_extractor_gives_the_torchscript_features():
    images = torch.cat([shapes(3, "disc", seed=5), shapes(1, "square", seed=6)])
    big = shapes(1, "disc", seed=7, size=64)
    for batch in (images, big):
        plain = metrics.inception_features(batch, kind="plain", progress=False)
        fast = metrics.inception_features(batch, kind="fast", progress=False)
        assert plain.shape == (len(batch), 2048) and plain.abs().max() > 0.1
        assert (plain - fast).abs().max() < 1e-4


@pytest.mark.slow
def test_features_stay_fp32_under_a_callers_bf16_autocast(discs_and_squares):
    images, features = discs_and_squares
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = metrics.inception_features(images[:4], progress=False)
    assert (under_autocast - features[:4]).abs().max() < 1e-4


@pytest.mark.slow
def test_torch_fidelity_calculate_metrics_runs_our_extractor(discs_and_squares):
    import torch_fidelity

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    images, features = discs_and_squares
    # KID rather than FID: same extractor path, without a 2048-d eigendecomposition (~10 s).
    discs, squares = slice(0, 4), slice(10, 14)
    out = torch_fidelity.calculate_metrics(
        input1=Images(images[discs]), input2=Images(images[squares]), kid=True, kid_subset_size=4,
        feature_extractor=metrics.FAST, cuda=False, cache=False, save_cpu_ram=True, verbose=False)
    ours, _ = metrics.kid_from_features(features[discs], features[squares], subset_size=4)
    assert out["kernel_inception_distance_mean"] == pytest.approx(ours, rel=1e-3)


def test_evaluation_subset_is_seeded_sorted_and_everything_without_a_limit():
    from helpers import references

    assert torch.equal(references.subset(10, None), torch.arange(10))
    assert torch.equal(references.subset(10, 10), torch.arange(10))
    sub = references.subset(100, 30, seed=0)
    assert len(sub) == 30 and len(sub.unique()) == 30 and torch.equal(sub, sub.sort().values)
    assert torch.equal(sub, references.subset(100, 30, seed=0))
    assert not torch.equal(sub, references.subset(100, 30, seed=1))


def test_blank_share_counts_nearly_white_images_only():
    images = torch.zeros(4, 3, 10, 10, dtype=torch.uint8)
    images[0] = 255                                   # blank
    images[1] = 255
    images[1, :, 0, :2] = 0                           # 2 % dark pixels: still blank at 97 %
    images[2] = 255
    images[2, 0, :4, :] = 0                           # 40 % with a dark red channel: not blank
    assert metrics.blank_share(images) == 0.5         # images[3] is black
    assert metrics.blank_share(images, coverage=1.0) == 0.25
    assert metrics.blank_share(images[:0]) == 0.0
    with pytest.raises(ValueError, match="uint8"):
        metrics.blank_share(images.float())


def test_per_vendor_scores_each_vendors_rows_only():
    from helpers import autoencode

    images = torch.zeros(6, 3, 8, 8, dtype=torch.uint8)
    recons = images.clone()
    recons[3:] = 255                                          # vendor 1 reconstructed all wrong
    vendor = torch.tensor([0, 0, 0, 1, 1, 2])
    rows = autoencode.per_vendor(images, recons, vendor, ["a", "b", "c", "absent"])
    assert [r["vendor"] for r in rows] == ["a", "b", "c"] and [r["images"] for r in rows] == [3, 2, 1]
    assert rows[0]["psnr"] > 60 and rows[1]["psnr"] == pytest.approx(0.0, abs=1e-6)



def test_the_real_density_radii_are_computed_once_per_real_set(monkeypatch):
    """Several fake sets against one real set (a prior stage's floor and priors): the real
    features' k-NN radii are kept in its stats dict, and every figure is what it is without."""
    from helpers.metrics import generation

    g = torch.Generator().manual_seed(0)
    real, fakes = torch.randn(60, 64, generator=g), [torch.randn(40, 64, generator=g) + s for s in (0, 1)]
    alone = [metrics.generation_metrics(f, real) for f in fakes]
    calls = []
    original = generation.real_radii
    monkeypatch.setattr(generation, "real_radii", lambda *a, **k: calls.append(1) or original(*a, **k))
    stats = metrics.fid_statistics(real)
    kept = [metrics.generation_metrics(f, real, real_stats=stats) for f in fakes]
    assert len(calls) == 1 and "density_radii" in stats
    for a, k in zip(alone, kept):
        assert (a["density"], a["coverage"]) == (k["density"], k["coverage"])
        assert k["fid"] == pytest.approx(a["fid"])
