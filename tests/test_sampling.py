"""Autoregressive sampling: the fast paths draw exactly what the naive loop draws; decoding."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig
from helpers.models.vqvae import VQVAE, VQVAEConfig
from helpers.sampling import decode, sample_codes, sample_codes_naive


K = 12


def _prior(kind, **kw):
    torch.manual_seed(0)
    cfg = dict(num_codes=K, hidden=16, layers=3, head_hidden=16, **kw)
    model = PixelCNN(PixelCNNConfig(**cfg)) if kind == "pixelcnn" else GatedPixelCNN(GatedPixelCNNConfig(**cfg))
    # a few training-mode passes give BatchNorm non-trivial running statistics
    model.train()
    with torch.no_grad():
        for _ in range(3):
            c = torch.randn(8, kw.get("cond_channels", 1), 8, 8) if kw.get("cond_channels") else None
            model(torch.randint(0, K, (8, 8, 8)), torch.randint(0, 3, (8,)) if kw.get("num_classes") else None, c)
    return model


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_incremental_logits_equal_the_full_forward(kind):
    model = _prior(kind, num_classes=3, cond_channels=2).eval()
    codes, labels, cond = torch.randint(0, K, (4, 6, 7)), torch.tensor([0, 1, 2, 1]), torch.randn(4, 2, 6, 7)
    with torch.no_grad():
        full = model(codes, labels, cond)
        state = model.start_sampling(4, (6, 7), labels, cond)
        for i in range(6):
            for j in range(7):
                step = state.step(codes, i, j)   # teacher forcing: the codes before (i, j) are given
                torch.testing.assert_close(step, full[:, :, i, j], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
@pytest.mark.parametrize("method", ["incremental", "crop"])
def test_fast_sampling_draws_exactly_the_naive_samples(kind, method):
    model = _prior(kind, num_classes=3, cond_channels=2)
    n, labels, cond = 10, torch.randint(0, 3, (10,)), torch.randn(10, 2, 8, 8)
    kw = dict(labels=labels, cond=cond, temperature=0.9, top_k=8, batch_size=4, progress=False)
    fast = sample_codes(model, n, generator=_gen(), method=method, **kw)
    naive = sample_codes_naive(model, n, generator=_gen(), **kw)
    assert fast.shape == (n, 8, 8) and fast.dtype == torch.long
    assert torch.equal(fast, naive)
    assert not torch.equal(fast, sample_codes(model, n, generator=_gen(2), method=method, **kw))


def test_sampling_uses_eval_mode_and_restores_training_mode():
    model = _prior("pixelcnn").train()
    a = sample_codes(model, 4, generator=_gen(), progress=False)
    assert model.training                                      # restored
    b = sample_codes(model.eval(), 4, generator=_gen(), progress=False)
    assert torch.equal(a, b)                                   # BatchNorm ran on running stats both times


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_top_k_keeps_only_the_k_most_likely_codes(kind):
    model = _prior(kind).eval()
    codes = sample_codes(model, 6, top_k=2, generator=_gen(), progress=False)
    with torch.no_grad():
        logits = model(codes)                                  # logits given the sampled prefix
    rank = (logits > logits.gather(1, codes[:, None])).sum(1)   # codes strictly more likely than the drawn one
    assert rank.max() <= 1
    greedy = sample_codes(model, 3, temperature=0, progress=False)
    assert torch.equal(greedy, sample_codes(model, 3, top_k=1, generator=_gen(), progress=False))
    assert torch.equal(model(greedy).argmax(1), greedy)


def test_category_changes_the_samples_and_shapes_are_generic():
    model = _prior("gated", num_classes=3)
    with torch.no_grad():
        model.layers[0].h_cond.cls.weight.mul_(50)           # make the category matter a lot
    a = sample_codes(model, 6, shape=(4, 5), labels=0, generator=_gen(), progress=False)
    b = sample_codes(model, 6, shape=(4, 5), labels=2, generator=_gen(), progress=False)
    assert a.shape == (6, 4, 5) and not torch.equal(a, b)


def test_auto_method_falls_back_for_priors_without_a_fast_path():
    class Causal(torch.nn.Module):
        """A prior that only sees the code to the left (enough to check the generic loop)."""

        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(K, K)

        def forward(self, codes, labels=None, cond=None):
            left = F.pad(codes, (1, 0))[:, :, :-1]
            return self.emb(left).permute(0, 3, 1, 2)

    prior = Causal()
    a = sample_codes(prior, 5, generator=_gen(), progress=False)          # auto -> naive
    b = sample_codes_naive(prior, 5, generator=_gen(), progress=False)
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        sample_codes(prior, 1, method="warp")


def test_decode_returns_uint8_images_of_the_decoder_output():
    torch.manual_seed(0)
    vqvae = VQVAE(VQVAEConfig(hidden=32, res_hidden=16, res_blocks=1, num_codes=K, embed_dim=8)).train()
    codes = torch.randint(0, K, (5, 8, 8))
    images = decode(vqvae, codes, batch_size=2)
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.uint8
    assert vqvae.training
    with torch.no_grad():
        expected = ((vqvae.eval().decode_codes(codes) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(images, expected)


def test_score_settings_gives_val_fid_and_blank_share_per_setting_in_order():
    from helpers import metrics, stages
    from helpers.artifacts import SamplingSetting

    prior = _prior("pixelcnn").eval()
    vqvae = VQVAE(VQVAEConfig(hidden=32, res_hidden=16, res_blocks=1, num_codes=K, embed_dim=8)).eval()
    real = metrics.inception_features(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8), progress=False)
    settings = [SamplingSetting(1.0, None), SamplingSetting(0.5, 2, guidance=2.0)]
    rows = stages.score_settings(prior, vqvae, settings, real, n=4, labels=None, seed=3)
    assert [SamplingSetting.from_dict(r) for r in rows] == settings
    for row in rows:
        assert math.isfinite(row["val_fid"]) and row["val_fid"] > 0
        assert 0.0 <= row["blank_share"] <= 1.0
    again = stages.score_settings(prior, vqvae, settings[:1], real, n=4, labels=None, seed=3)
    assert again[0] == rows[0]                      # seeded: the same samples, the same figures


def test_pick_setting_takes_the_best_fid_among_settings_with_few_blank_samples():
    from helpers.stages import pick_setting

    rows = [{"temperature": 0.5, "val_fid": 140.0, "blank_share": 0.065},
            {"temperature": 0.6, "val_fid": 145.0, "blank_share": 0.015},
            {"temperature": 0.7, "val_fid": 150.0, "blank_share": 0.0}]
    assert pick_setting(rows)["temperature"] == 0.6               # 0.5 has the best FID, 6.5 % blank
    assert pick_setting(rows, max_blank=0.1)["temperature"] == 0.5
    assert pick_setting(rows, max_blank=0.015)["temperature"] == 0.7   # the limit itself is too many
    # none under the limit: the fewest blank samples, then the better FID
    worse = [{**r, "blank_share": b} for r, b in zip(rows, (0.6, 0.2, 0.2))]
    assert pick_setting(worse)["temperature"] == 0.6
    with pytest.raises(ValueError, match="at least one"):
        pick_setting([])


def _guided(model, codes, labels, w, cond=None):
    """Classifier-free guided logits (B, K, H, W) of ``codes`` from two full forward passes."""
    null = torch.full_like(labels, model.config.num_classes)
    with torch.no_grad():
        given, free = model(codes, labels, cond).float(), model(codes, null, cond).float()
    return free + w * (given - free)


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
@pytest.mark.parametrize("method", ["incremental", "crop", "naive"])
def test_guided_greedy_sampling_takes_the_argmax_of_the_guided_logits(kind, method):
    model = _prior(kind, num_classes=3, cond_channels=2).eval()
    with torch.no_grad():   # categories that matter, so guidance moves the argmax
        for m in model.modules():
            if hasattr(m, "cls") and m.cls is not None:
                m.cls.weight.mul_(20)
    labels, cond = torch.tensor([0, 1, 2, 1, 0]), torch.randn(5, 2, 8, 8)
    codes = sample_codes(model, 5, labels=labels, cond=cond, temperature=0, guidance=3.0, batch_size=2,
                         method=method, progress=False)
    assert torch.equal(_guided(model, codes, labels, 3.0, cond).argmax(1), codes)
    plain = sample_codes(model, 5, labels=labels, cond=cond, temperature=0, batch_size=2, progress=False)
    assert not torch.equal(plain, codes)   # the guidance changed what was drawn


@pytest.mark.parametrize("method", ["incremental", "crop"])
def test_guided_fast_sampling_draws_exactly_the_naive_samples_and_w_1_is_plain_sampling(method):
    model = _prior("gated", num_classes=3)
    labels = torch.randint(0, 3, (7,), generator=_gen(5))
    kw = dict(labels=labels, temperature=0.8, batch_size=3, progress=False)
    fast = sample_codes(model, 7, generator=_gen(), method=method, guidance=2.0, **kw)
    assert torch.equal(fast, sample_codes(model, 7, generator=_gen(), method="naive", guidance=2.0, **kw))
    assert torch.equal(sample_codes(model, 7, generator=_gen(), method=method, guidance=1.0, **kw),
                       sample_codes(model, 7, generator=_gen(), method=method, **kw))


def test_guidance_is_ignored_without_categories_and_keeps_the_models_own_nll():
    model = _prior("pixelcnn", num_classes=3).eval()
    free = sample_codes(model, 4, generator=_gen(), progress=False)
    assert torch.equal(free, sample_codes(model, 4, generator=_gen(), guidance=4.0, progress=False))
    unconditional = _prior("pixelcnn").eval()
    assert torch.equal(sample_codes(unconditional, 4, labels=1, generator=_gen(), progress=False),
                       sample_codes(unconditional, 4, labels=1, guidance=4.0, generator=_gen(), progress=False))
    codes, nll = sample_codes(model, 4, labels=2, guidance=3.0, generator=_gen(), return_nll=True, progress=False)
    torch.testing.assert_close(nll, model.nll_per_image(codes, 2), rtol=1e-4, atol=1e-4)


# ---- a style (the vendor) beside the category --------------------------------------------------

def _styled(kind):
    """A prior over 3 categories and 4 styles whose labels matter (large embeddings)."""
    torch.manual_seed(0)
    cfg = dict(num_codes=K, hidden=16, layers=3, head_hidden=16, num_classes=3, num_styles=4, label_dropout=0.2)
    model = PixelCNN(PixelCNNConfig(**cfg)) if kind == "pixelcnn" else GatedPixelCNN(GatedPixelCNNConfig(**cfg))
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "style", None) is not None:
                m.style.weight.mul_(20)
    return model.eval()


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
@pytest.mark.parametrize("method", ["incremental", "crop"])
def test_a_style_changes_the_samples_and_fast_guided_sampling_still_draws_the_naive_samples(kind, method):
    model = _styled(kind)
    labels = torch.tensor([[0, 0], [1, 1], [2, 2], [0, 3], [1, 0], [2, 1]])
    kw = dict(labels=labels, temperature=0.8, batch_size=4, progress=False, guidance=2.0)
    fast = sample_codes(model, 6, generator=_gen(), method=method, **kw)
    assert torch.equal(fast, sample_codes(model, 6, generator=_gen(), method="naive", **kw))
    restyled = labels.clone()
    restyled[:, 1] = (restyled[:, 1] + 1) % 4
    assert not torch.equal(fast, sample_codes(model, 6, generator=_gen(), method=method, **{**kw, "labels": restyled}))
    greedy = sample_codes(model, 6, labels=labels, temperature=0, guidance=3.0, method=method, progress=False)
    null = torch.tensor([3, 4]).expand(6, 2)                      # guidance contrasts with no category, no style
    with torch.no_grad():
        given, free = model(greedy, labels).float(), model(greedy, null).float()
    assert torch.equal((free + 3.0 * (given - free)).argmax(1), greedy)


def test_style_labels_are_prepared_as_category_and_style_columns_and_dropped_apart():
    from helpers.models.prior import prepare_labels

    styled, plain = _styled("pixelcnn").config, PixelCNNConfig(num_codes=K, num_classes=3)
    assert prepare_labels(styled, None, 2, "cpu", False).tolist() == [[3, 4], [3, 4]]
    assert prepare_labels(styled, torch.tensor([1, 2]), 2, "cpu", False).tolist() == [[1, 4], [2, 4]]  # any style
    assert prepare_labels(plain, torch.tensor([1, 2]), 2, "cpu", False).tolist() == [1, 2]
    with pytest.raises(ValueError, match="without styles"):
        prepare_labels(plain, torch.tensor([[1, 0]]), 1, "cpu", False)
    torch.manual_seed(0)
    dropped = prepare_labels(styled, torch.zeros(4000, 2, dtype=torch.long), 4000, "cpu", True)
    category_gone, style_gone = dropped[:, 0] == 3, dropped[:, 1] == 4
    assert abs(category_gone.float().mean() - 0.2) < 0.03 and abs(style_gone.float().mean() - 0.2) < 0.03
    assert abs((category_gone & style_gone).float().mean() - 0.04) < 0.015     # independently


def test_draw_labels_draws_category_and_style_pairs_as_often_as_they_occur():
    from helpers.sampling import draw_labels

    pairs = torch.tensor([[0, 0]] * 60 + [[0, 1]] * 30 + [[2, 1]] * 10)
    drawn = draw_labels(pairs, 5000, seed=0)
    assert drawn.shape == (5000, 2) and torch.equal(drawn, draw_labels(pairs, 5000, seed=0))
    share = {tuple(p): (drawn == torch.tensor(p)).all(1).float().mean().item() for p in ([0, 0], [0, 1], [2, 1])}
    assert abs(share[(0, 0)] - 0.6) < 0.03 and abs(share[(0, 1)] - 0.3) < 0.03 and abs(share[(2, 1)] - 0.1) < 0.02
