"""Analysis: codebook usage, k chosen by silhouette, t-SNE, code patches, nearest neighbours and
the memorization share."""

import numpy as np
import pytest
import torch

from helpers import analysis, viz
from helpers.models.vqvae import VQVAE, VQVAEConfig
from helpers.sampling import decode


def _blobs(centres=3, per=20, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(centres, dim, generator=g) * 10
    x = means.repeat_interleave(per, 0) + 0.3 * torch.randn(centres * per, dim, generator=g)
    return x, torch.arange(centres).repeat_interleave(per)


def test_usage_counts_dead_codes_and_perplexity():
    codes = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3]])        # 4 of 8 codes, used equally
    u = analysis.usage(codes, 8)
    assert u["used"] == 4 and u["dead"] == 4 and u["usage"] == 0.5
    assert u["perplexity"] == pytest.approx(4.0)
    assert u["sorted_counts"].tolist() == [2, 2, 2, 2, 0, 0, 0, 0]
    table = analysis.usage_table({"vqvae": u, "top": analysis.usage(torch.zeros(5, dtype=torch.long), 4)})
    assert table.loc["top", "dead"] == 3 and table.loc["vqvae", "perplexity"] == 4.0
    viz.usage_histograms({"vqvae": u}).clf()


def test_choose_k_finds_the_number_of_blobs():
    x, truth = _blobs(centres=4)
    out = analysis.choose_k(x, ks=range(2, 9))
    assert out["k"] == 4 and set(out["scores"]) == set(range(2, 9))
    assert out["silhouette"] == max(out["scores"].values())
    labels = torch.as_tensor(out["labels"])
    for c in range(4):                                        # each blob is one cluster
        assert len(labels[truth == c].unique()) == 1
    viz.score_curve(out["scores"], best=out["k"]).clf()


def test_choose_k_scores_every_k_but_only_min_k_and_up_may_win():
    x, _ = _blobs(centres=2, per=20)                          # silhouette peaks at k = 2
    free = analysis.choose_k(x, ks=range(2, 7))
    held = analysis.choose_k(x, ks=range(2, 7), min_k=3)
    assert free["k"] == 2 and held["k"] >= 3
    assert held["scores"] == free["scores"]                   # the whole curve, still shown
    assert held["silhouette"] == max(v for k, v in held["scores"].items() if k >= 3)
    with pytest.raises(ValueError):
        analysis.choose_k(x, ks=range(2, 5), min_k=5)


def test_tsne_keeps_blobs_apart():
    x, truth = _blobs(centres=2, per=15)
    xy = torch.as_tensor(analysis.tsne(x, perplexity=5))
    assert xy.shape == (30, 2)
    d = torch.cdist(xy, xy)
    same = truth[:, None] == truth[None, :]
    assert d[same].mean() < d[~same].mean() / 2
    assert np.allclose(analysis.tsne(x, perplexity=5), xy.numpy())   # seeded
    viz.scatter_2d(xy, truth).clf()
    viz.scatter_2d(xy, truth, sizes=torch.arange(30)).clf()   # torch counts as point sizes


def test_code_patches_show_each_code_in_context():
    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig(hidden=32, res_hidden=16, res_blocks=1, num_codes=10, embed_dim=8,
                           kmeans_init=False)).eval()
    patches = analysis.code_patches(vq)
    assert patches.shape == (10, 3, 12, 12) and patches.dtype == torch.uint8
    assert torch.equal(patches[5], decode(vq, torch.full((1, 8, 8), 5))[0, :, 12:24, 12:24])  # centre crop
    assert len({p.numpy().tobytes() for p in patches}) == 10                 # each code its own patch
    lone = analysis.code_patches(vq, codes=[3, 7], context="background", background=3, cells=8)
    assert torch.equal(lone[0], decode(vq, torch.full((1, 8, 8), 3))[0])    # code 3 on its own background
    grid = torch.full((1, 8, 8), 3)
    grid[0, 4, 4] = 7
    assert torch.equal(lone[1], decode(vq, grid)[0])                         # code 7 alone amid code 3
    rows, names = analysis.cluster_rows(patches, [0, 0, 1, 1, 1, 2, 2, 2, 2, 2], per_cluster=4)
    assert rows.shape == (12, 3, 12, 12) and names == ["cluster 0 (2)", "cluster 1 (3)", "cluster 2 (5)"]
    assert (rows[2:4] == 255).all()                           # cluster 0 has two members: white fill


def test_nearest_agrees_with_brute_force():
    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(37, 5, generator=g), torch.randn(50, 5, generator=g)
    d, i = analysis.nearest(q, r, batch_size=8)
    full = torch.cdist(q.double(), r.double())
    assert torch.equal(i, full.argmin(1)) and torch.allclose(d, full.min(1).values)
    d_self, i_self = analysis.nearest(r, r, batch_size=7, exclude_self=True)
    assert (i_self != torch.arange(50)).all() and (d_self > 0).all()


def test_memorization_flags_copies_and_not_new_images():
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (40, 3, 8, 8), generator=g, dtype=torch.uint8)

    def noise(x, s):
        return (x.float() + s * torch.randn(x.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)

    val = noise(train[:20], 30)                               # new images: near the train set, not on it
    copies, novel = train[[3, 7, 11, 19, 25]], noise(train[20:25], 90)
    samples = torch.cat([copies, novel])
    feats = lambda x: x.flatten(1).double() / 255              # noqa: E731  stand-in features
    mem = analysis.memorization(samples, train, val, sample_features=feats(samples),
                                train_features=feats(train), val_features=feats(val))
    assert mem["memorized_share"] == 0.5 and mem["memorized_share_pixel"] == 0.5
    assert mem["near_copy_share"] == 0.5
    assert torch.equal(mem["inception"]["sample_nn"][:5], torch.tensor([3, 7, 11, 19, 25]))
    assert set(mem["order"][:5].tolist()) == set(range(5))   # copies first
    rows, labels = analysis.neighbour_rows(samples, train, mem, n=4)
    assert len(rows) == 3 and all(r.shape == (4, 3, 8, 8) for r in rows)
    assert torch.equal(rows[0], rows[1])                      # the nearest samples are the copies
    viz.histograms({"samples": mem["inception"]["sample_dist"], "val": mem["inception"]["val_dist"]},
                   marks={"median val": mem["inception"]["threshold"]}).clf()
    table = analysis.memorization_table({"prior": mem})
    assert table.loc[("prior", "inception"), "memorized_share"] == 0.5 and len(table) == 2
    median = table.loc[("prior", "pixel"), "val_to_train_median"]
    assert median == pytest.approx(mem["pixel"]["threshold"], abs=1e-4)
    summary = analysis.metrics_summary(mem, {"k": 4, "silhouette": 0.6}, {"vqvae": analysis.usage(torch.arange(4), 4)})
    assert summary["k"] == 4 and summary["usage_vqvae"] == 1.0 and summary["n_samples"] == 10


def test_memorization_searches_every_train_image_in_pixels_and_the_reference_in_inception_space():
    g = torch.Generator().manual_seed(1)
    train = torch.randint(0, 256, (40, 3, 8, 8), generator=g, dtype=torch.uint8)
    rows = torch.arange(0, 40, 2)                              # the Inception reference: even rows only
    samples = train[[3, 7, 4]]                                 # two copies outside the reference, one inside
    feats = lambda x: x.flatten(1).double() / 255              # noqa: E731  stand-in features
    mem = analysis.memorization(samples, train, train[20:30], sample_features=feats(samples),
                                train_features=feats(train[rows]), val_features=feats(train[20:30]),
                                train_feature_rows=rows)
    assert torch.equal(mem["pixel"]["sample_nn"], torch.tensor([3, 7, 4]))          # every copy found
    assert mem["inception"]["sample_nn"][2] == 4 and mem["inception"]["sample_dist"][2] == 0
    assert (mem["inception"]["sample_nn"] % 2 == 0).all()      # indices into train, from the reference rows
    assert (mem["inception"]["sample_dist"][:2] > 0).all()


def test_best_prior_is_the_lowest_fid():
    metrics = {"fid_floor": 35.0, "fid_recon": 55.0, "protocol": {"n_samples": 10},
               "pixelcnn": {"fid": 108.3, "sampling": {"temperature": 0.9, "top_k": None}},
               "gated_pixelcnn": {"fid": 109.3, "sampling": {"temperature": 1.0, "top_k": 64, "guidance": 2.0}}}
    assert analysis.best_prior(metrics) == "pixelcnn"
    metrics["gated_pixelcnn"]["fid"] = 100.0
    assert analysis.best_prior(metrics) == "gated_pixelcnn"
    with pytest.raises(ValueError):
        analysis.best_prior({"fid_floor": 35.0})


def test_beside_nearest_puts_each_sample_row_over_its_nearest_train_images():
    samples = torch.zeros(6, 3, 8, 8, dtype=torch.uint8)
    fig = viz.beside_nearest(samples, samples.clone(), ["cats", "flags"], per_row=3)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["cats", "nearest train", "flags", "nearest train"]
    with pytest.raises(ValueError, match="want 3 x 2 samples"):
        viz.beside_nearest(samples[:5], samples[:5], ["cats", "flags"], per_row=3)


def test_nearest_train_finds_the_pixel_nearest_image():
    pool = torch.stack([torch.full((3, 4, 4), v, dtype=torch.uint8) for v in (0, 100, 200, 255)])
    queries = torch.stack([torch.full((3, 4, 4), v, dtype=torch.uint8) for v in (210, 90, 3)])
    assert analysis.nearest_train(queries, pool).tolist() == [2, 1, 0]
