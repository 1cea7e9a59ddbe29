"""Rejection at sampling time: the best of k candidates by a colour classifier of the labels (the
rejector, never a judge), and settings chosen by val FID together with the rejector's sureness."""

import dataclasses

import pytest
import torch

from helpers import paths, recognise, stages
from helpers.artifacts import SamplingSetting
from helpers.models.pixelcnn import PixelCNN, PixelCNNConfig
from helpers.models.vqvae import VQVAE, VQVAEConfig
from helpers.sampling import best_of, decode, sample_codes, sample_images

K = 12


class _Colour(torch.nn.Module):
    """A stand-in classifier of two classes: class 0 is how red an image is, class 1 how blue."""

    def probabilities(self, images):
        x = images.float().mean((2, 3))
        logits = torch.stack([x[:, 0] - x[:, 2], x[:, 2] - x[:, 0]], 1) / 20
        return logits.softmax(1)


def _filled(rgb, n):
    return torch.tensor(rgb, dtype=torch.uint8).view(1, 3, 1, 1).expand(n, 3, 4, 4).clone()


def test_best_of_keeps_per_sample_the_candidate_surest_of_its_label():
    red, blue, grey = _filled([200, 0, 0], 3), _filled([0, 0, 200], 3), _filled([90, 90, 90], 3)
    labels = torch.tensor([0, 1, 0])
    kept = best_of([grey, red, blue], labels, _Colour())
    assert torch.equal(kept, torch.stack([red[0], blue[1], red[2]]))
    # (n, 2) labels (class, style): the class decides; a tie keeps the earlier candidate
    styled = torch.stack([labels, torch.tensor([2, 0, 1])], 1)
    assert torch.equal(best_of([grey, red, blue], styled, _Colour()), kept)
    assert torch.equal(best_of([red, red.clone()], labels, _Colour()), red)


def _prior_and_decoder():
    torch.manual_seed(0)
    prior = PixelCNN(PixelCNNConfig(num_codes=K, hidden=16, layers=3, head_hidden=16, num_classes=2)).eval()
    vqvae = VQVAE(VQVAEConfig(hidden=32, res_hidden=16, res_blocks=1, num_codes=K, embed_dim=8)).eval()
    return prior, vqvae


def test_rejection_keeps_one_of_the_candidates_the_first_round_being_the_plain_draw():
    prior, vqvae = _prior_and_decoder()
    labels = torch.tensor([0, 1, 0, 1, 1])
    plain = sample_images(prior, vqvae, 5, labels=labels, seed=3, progress=False)
    setting = SamplingSetting(candidates=3)
    kept = sample_images(prior, vqvae, 5, setting=setting, labels=labels, seed=3, progress=False,
                         rejector=_Colour())
    # the three rounds one seeded stream draws, the first of them the plain draw
    g = torch.Generator().manual_seed(3)
    rounds = [decode(vqvae, sample_codes(prior, 5, labels=labels, generator=g, progress=False)) for _ in range(3)]
    assert torch.equal(rounds[0], plain)
    assert torch.equal(kept, best_of(rounds, labels, _Colour()))
    with pytest.raises(ValueError, match="best of 3 candidates"):
        sample_images(prior, vqvae, 5, setting=setting, labels=labels, seed=3, progress=False)
    with pytest.raises(ValueError, match="give labels and a rejector"):
        sample_images(prior, vqvae, 5, setting=setting, seed=3, progress=False, rejector=_Colour())


def test_a_setting_has_at_least_one_candidate_and_says_when_it_rejects():
    assert str(SamplingSetting(0.7, guidance=3.0)) == "T 0.7, guidance 3"
    assert str(SamplingSetting(0.7, guidance=3.0, candidates=4)) == "T 0.7, guidance 3, best of 4"
    assert SamplingSetting.from_dict({"temperature": 0.7, "val_fid": 1.0}).candidates == 1   # older rows
    with pytest.raises(ValueError, match="at least 1"):
        SamplingSetting(candidates=0)


def test_pick_setting_takes_the_surest_of_the_settings_tied_on_fid():
    rows = [{"candidates": 1, "val_fid": 100.0, "blank_share": 0.0, "rejector_sureness": 0.30},
            {"candidates": 2, "val_fid": 104.0, "blank_share": 0.0, "rejector_sureness": 0.45},
            {"candidates": 4, "val_fid": 111.0, "blank_share": 0.0, "rejector_sureness": 0.60},
            {"candidates": 8, "val_fid": 101.0, "blank_share": 0.2, "rejector_sureness": 0.90}]
    assert stages.pick_setting(rows)["candidates"] == 2             # within 5 % of 100; 8 is too often blank
    assert stages.pick_setting(rows, fid_tie=0.12)["candidates"] == 4
    assert stages.pick_setting(rows, fid_tie=0.0)["candidates"] == 1   # FID alone
    plain = [{k: v for k, v in r.items() if k != "rejector_sureness"} for r in rows]
    assert stages.pick_setting(plain, fid_tie=0.12)["candidates"] == 1   # no sureness: the lowest FID


def test_score_settings_reports_the_rejectors_sureness_of_each_setting():
    from helpers import metrics

    prior, vqvae = _prior_and_decoder()
    real = metrics.inception_features(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8), progress=False)
    labels = torch.tensor([0, 1, 0, 1])
    settings = [SamplingSetting(), SamplingSetting(candidates=3)]
    rows = stages.score_settings(prior, vqvae, settings, real, n=4, labels=labels, seed=3, rejector=_Colour())
    assert [r["candidates"] for r in rows] == [1, 3]
    assert all(0.0 < r["rejector_sureness"] < 1.0 for r in rows)
    # the best of three is at least as sure as the plain draw, which is its first round
    assert rows[1]["rejector_sureness"] >= rows[0]["rejector_sureness"]


def test_the_rejector_is_a_classifier_of_its_own_never_the_gan_tests(tmp_path, monkeypatch):
    from test_recognise import _toy_dataset

    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path)
    ds = _toy_dataset(n_per_class=16)
    profile = type("P", (), {"name": "test", "seed": 0, "classifier_steps": 2, "curve_every": None})()
    config = dataclasses.replace(recognise.JudgeConfig(), batch_size=8)
    rejector = recognise.fit_rejector(ds, 32, profile, "category", config)
    classifier = recognise.fit_classifier(ds, 32, "test", config.train_config(profile))
    assert (tmp_path / "test" / "rejector32_category.pt").exists()
    assert not all(torch.equal(a, b) for a, b in zip(rejector.state_dict().values(),
                                                      classifier.state_dict().values()))   # another seed
    images, labels = ds.images(32, "val"), ds.category[ds.rows("val")]
    p = recognise.label_probability(rejector, images, labels)
    assert p == pytest.approx(float(rejector.probabilities(images)[torch.arange(len(labels)), labels].mean()))


def test_a_profile_gives_rejection_to_the_families_it_names_and_one_candidate_to_the_rest():
    from helpers.profiles import get_profile

    settings = (SamplingSetting(0.7, guidance=3.0), SamplingSetting(0.7, guidance=3.0, candidates=4))
    full = get_profile("full")
    assert stages.family_settings(settings, "pixelsnail", full) == settings
    assert stages.family_settings(settings, "pixelcnn", full) == settings[:1]
    every = dataclasses.replace(full, rejection_priors=None)
    assert stages.family_settings(settings, "pixelcnn", every) == settings
    with pytest.raises(ValueError, match="add a setting with candidates 1"):
        stages.family_settings(settings[1:], "pixelcnn", full)
