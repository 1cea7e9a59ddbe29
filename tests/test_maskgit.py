"""The masked prior (MaskGIT): every position reads every other, it learns to fill masked codes, its
sampler fixes every code in its rounds (keeping known codes), seeds and guidance behave as for the
raster priors, and what it cannot do (a likelihood, a raster method) is refused by name."""

import math

import pytest
import torch

from _causality import embedding_grads
from helpers.checkpoints import build_model, load_checkpoint, save_checkpoint
from helpers.models.maskgit import MaskedPriorConfig, MaskedTransformerPrior, mask_share
from helpers.sampling import sample_codes

K, H, W = 12, 8, 8


def _small(**kw):
    torch.manual_seed(0)
    return MaskedTransformerPrior(MaskedPriorConfig(num_codes=K, height=H, width=W, hidden=32, layers=2, heads=4,
                                                    **kw))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_every_position_reads_every_code_of_the_grid():
    grads = embedding_grads(_small(num_classes=3), torch.randint(0, K, (1, H, W)), torch.tensor([1]))
    assert (grads > 0).all()   # no order: position t depends on the codes before and after it


def test_the_mask_schedule_falls_from_all_to_none():
    shares = mask_share(torch.linspace(0, 1, 11))
    assert shares[0] == 1 and abs(shares[-1]) < 1e-6
    assert (shares[1:] < shares[:-1]).all()


def test_training_predicts_masked_codes_and_learns_them():
    model = _small(num_classes=2, dropout=0.0, label_dropout=0.0)
    codes, labels = torch.randint(0, K, (16, H, W)), torch.randint(0, 2, (16,))
    loss, logs = model.training_step((codes, labels))
    assert abs(loss.item() - math.log(K)) < 0.2 and set(logs) == {"nll", "acc"}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        model.training_step((codes, labels))[0].backward()
        opt.step()
    hidden = torch.rand(16, H, W, generator=_gen(1)) < 0.25
    with torch.no_grad():
        filled = model.eval()(codes.masked_fill(hidden, model.mask_code), labels).argmax(1)
    assert (filled[hidden] == codes[hidden]).float().mean() > 3 / K   # a quarter hidden: well above chance


def test_validation_masks_are_the_same_every_time_and_leave_the_training_stream_alone():
    model = _small(num_classes=2).eval()
    batch = (torch.randint(0, K, (8, H, W)), torch.randint(0, 2, (8,)))
    torch.manual_seed(5)
    first = model.training_step(batch)[0]
    after = torch.rand(1)
    torch.manual_seed(5)
    assert model.training_step(batch)[0] == first and torch.rand(1) == after


def test_sampling_fixes_every_code_in_its_rounds_and_a_seed_repeats_it():
    model = _small(num_classes=3, rounds=4)
    labels = torch.tensor([0, 1, 2, 0, 1])
    codes = sample_codes(model, 5, (H, W), labels=labels, generator=_gen(), progress=False, guidance=2.0)
    assert codes.shape == (5, H, W) and codes.min() >= 0 and codes.max() < K   # no mask token left
    assert torch.equal(codes, sample_codes(model, 5, (H, W), labels=labels, generator=_gen(), progress=False,
                                           guidance=2.0))
    assert not torch.equal(codes, sample_codes(model, 5, (H, W), labels=labels, generator=_gen(1), progress=False,
                                               guidance=2.0))


def test_each_round_runs_the_prior_once_on_the_whole_batch():
    model = _small(rounds=3)
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(tuple(args[0].shape)))
    sample_codes(model, 6, (H, W), generator=_gen(), progress=False, batch_size=4)
    assert calls == [(4, H, W)] * 3 + [(2, H, W)] * 3


def test_greedy_sampling_at_one_round_is_the_argmax_of_the_all_masked_grid():
    model = _small(num_classes=2, rounds=1).eval()
    labels = torch.tensor([0, 1])
    codes = sample_codes(model, 2, (H, W), labels=labels, temperature=0, progress=False)
    with torch.no_grad():
        expected = model(torch.full((2, H, W), model.mask_code), labels).argmax(1)
    assert torch.equal(codes, expected)


def test_known_codes_are_kept_and_the_rest_drawn_around_them():
    model = _small(num_classes=2)
    known = torch.randint(0, K, (3, H, W))
    mask = torch.zeros(3, H, W, dtype=torch.bool)
    mask[:, :4] = True                                 # the top half given, the bottom half drawn
    codes = sample_codes(model, 3, (H, W), labels=1, generator=_gen(), known_codes=known, known_mask=mask,
                         progress=False)
    assert torch.equal(codes[mask], known[mask])
    everything = sample_codes(model, 3, (H, W), labels=1, generator=_gen(), known_codes=known,
                              known_mask=torch.ones_like(mask), progress=False)
    assert torch.equal(everything, known)


def test_what_a_masked_prior_cannot_do_is_refused_by_name():
    model = _small()
    with pytest.raises(ValueError, match="drawn in rounds, not by the raster method 'naive'"):
        sample_codes(model, 1, (H, W), method="naive")
    with pytest.raises(ValueError, match="no likelihood"):
        sample_codes(model, 1, (H, W), return_nll=True)
    with pytest.raises(ValueError, match="no likelihood"):
        model.nll_per_image(torch.zeros(1, H, W, dtype=torch.long))
    with pytest.raises(ValueError, match="8x8 grids, not 7x8"):
        model(torch.zeros(1, 7, W, dtype=torch.long))
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        MaskedTransformerPrior(MaskedPriorConfig(rounds=0))


def test_checkpoint_rebuilds_the_same_model(tmp_path):
    model = _small(num_classes=3, num_styles=2).eval()
    save_checkpoint(tmp_path / "m.pt", model)
    rebuilt = build_model(load_checkpoint(tmp_path / "m.pt")).eval()
    codes, labels = torch.randint(0, K, (2, H, W)), torch.tensor([[0, 1], [2, 0]])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(codes, labels), model(codes, labels))
