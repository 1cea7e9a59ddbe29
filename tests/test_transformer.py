"""The transformer prior: causal in raster order (by gradients), labels used, learns, rebuilds from its
checkpoint, and its incremental sampler draws exactly what the naive loop draws."""

import math

import pytest
import torch

from _causality import embedding_grads
from helpers.checkpoints import build_model, load_checkpoint, save_checkpoint
from helpers.models.transformer import TransformerPrior, TransformerPriorConfig
from helpers.sampling import sample_codes, sample_codes_naive

K, H, W = 12, 8, 8


def _small(**kw):
    torch.manual_seed(0)
    return TransformerPrior(TransformerPriorConfig(num_codes=K, height=H, width=W, hidden=32, layers=2, heads=4,
                                                   **kw))


def test_logits_at_each_position_depend_on_every_earlier_code_and_no_other():
    model = _small(num_classes=3)
    # input slot s holds code s - 1 (slot 0 the start token): code q enters at slot q + 1, the last nowhere
    grads = embedding_grads(model, torch.randint(0, K, (1, H, W)), torch.tensor([1]))
    for t in range(H * W):
        codes_seen = grads[t, 1:]
        assert codes_seen[t:].sum() == 0, f"position {t} sees its own or a later code"
        if t:
            assert (codes_seen[:t] > 0).all(), f"position {t} misses an earlier code"


def test_category_and_style_change_the_logits_and_none_is_the_last_index():
    model = _small(num_classes=3, num_styles=2).eval()
    codes = torch.randint(0, K, (1, H, W)).expand(3, H, W)
    with torch.no_grad():
        by_category = model(codes, torch.tensor([0, 1, 2]))
        by_style = model(codes, torch.tensor([[0, 0], [0, 1], [0, 2]]))
        none = model(codes, None)
        explicit_none = model(codes, torch.tensor([[3, 2]] * 3))
    assert not torch.allclose(by_category[0], by_category[1])
    assert not torch.allclose(by_style[0], by_style[1]) and not torch.allclose(by_style[1], by_style[2])
    torch.testing.assert_close(none, explicit_none)


def test_a_grid_it_was_not_built_for_and_a_spatial_condition_are_refused():
    model = _small()
    with pytest.raises(ValueError, match="8x8 grids, not 8x7"):
        model(torch.zeros(1, H, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="no spatial condition"):
        model(torch.zeros(1, H, W, dtype=torch.long), None, torch.zeros(1, 2, H, W))
    with pytest.raises(ValueError, match="multiple of heads"):
        TransformerPrior(TransformerPriorConfig(hidden=30, heads=4))


def test_training_step_starts_near_uniform_in_nats_and_learns():
    model = _small(num_classes=2, label_dropout=0.1, dropout=0.0)
    codes, labels = torch.randint(0, K, (16, H, W)), torch.randint(0, 2, (16,))
    loss, logs = model.training_step((codes, labels))
    assert abs(loss.item() - math.log(K)) < 0.2   # small initial weights: about log K nats per code
    assert set(logs) == {"nll", "acc"}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        loss, _ = model.training_step((codes, labels))
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * math.log(K)        # it memorises 16 grids


def test_checkpoint_rebuilds_the_same_model(tmp_path):
    model = _small(num_classes=3, num_styles=2).eval()
    save_checkpoint(tmp_path / "t.pt", model)
    rebuilt = build_model(load_checkpoint(tmp_path / "t.pt")).eval()
    codes, labels = torch.randint(0, K, (2, H, W)), torch.tensor([[0, 1], [2, 0]])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(codes, labels), model(codes, labels))


def test_incremental_logits_equal_the_full_forward_on_every_position():
    model = _small(num_classes=3).eval()
    codes, labels = torch.randint(0, K, (4, H, W)), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        full = model(codes, labels)
        state = model.start_sampling(4, (H, W), labels)
        for i in range(H):
            for j in range(W):
                torch.testing.assert_close(state.step(codes, i, j), full[:, :, i, j], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["incremental", "crop"])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_fast_sampling_draws_exactly_the_naive_samples(method, guidance):
    model = _small(num_classes=3, num_styles=2, label_dropout=0.1)
    labels = torch.stack([torch.randint(0, 3, (10,)), torch.randint(0, 2, (10,))], 1)
    kw = dict(labels=labels, temperature=0.9, top_k=8, batch_size=4, progress=False)
    fast = sample_codes(model, 10, generator=torch.Generator().manual_seed(1), method=method, guidance=guidance,
                        **kw)
    naive = sample_codes(model, 10, generator=torch.Generator().manual_seed(1), method="naive", guidance=guidance,
                         **kw)
    assert fast.shape == (10, H, W) and torch.equal(fast, naive)
    if guidance == 1.0:
        torch.testing.assert_close(naive, sample_codes_naive(model, 10, generator=torch.Generator().manual_seed(1),
                                                             **kw))
    assert not torch.equal(fast, sample_codes(model, 10, generator=torch.Generator().manual_seed(2), method=method,
                                              guidance=guidance, **kw))
