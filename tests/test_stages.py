"""The stage API and its typed artifacts: what 01/03 hand to 02/04, and 02/04 to 06."""

import dataclasses

import pytest
import torch

from helpers import artifacts, paths, recognise, references, results, stages
from helpers.artifacts import CodeGrids, SampleSet, SamplingSetting, StaleArtifactError
from helpers.autoencode import encode_all
from helpers.checkpoints import atomic_save, load_checkpoint
from helpers.models.pixelcnn import PixelCNN, PixelCNNConfig
from helpers.models.vqvae import VQVAE
from helpers.profiles import get_profile
from helpers.runtime import seed_everything
from helpers.tensors import mirrored_shifted_copies
from helpers.train import TrainConfig


class ToyDataset:
    """What the stages read of an EmojiDataset: images per size and split, labels, vendors, the split."""

    def __init__(self, n=24, n_val=8, fingerprint="toy"):
        g = torch.Generator().manual_seed(0)
        self._images = {32: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)}
        self.category = torch.arange(n) % 3
        self.category_names = ["a", "b", "c"]
        self.subcategory = torch.arange(n) % 6     # sub-category s lies in category s % 3
        self.subcategory_names = ["a1", "b1", "c1", "a2", "b2", "c2"]
        self.vendor = torch.arange(n) % 2
        self.vendor_names = ["v0", "v1"]
        self.train_idx, self.val_idx = torch.arange(n_val, n), torch.arange(n_val)
        self.split = "identity"
        self.fingerprint = fingerprint

    def rows(self, split=None):
        return {"train": self.train_idx, "val": self.val_idx, None: torch.arange(len(self.category))}[split]

    def images(self, size, split=None):
        return self._images[size][self.rows(split)]

    def classes(self, label="category"):
        return (self.subcategory, self.subcategory_names) if label == "subcategory" \
            else (self.category, self.category_names)


def _grids(copies=2, fingerprint="toy"):
    n, n_train = 10, 6
    codes = {"codes": torch.arange(n * 4).reshape(n, 2, 2)}
    copy_codes = {"codes": 1000 + torch.arange(copies * n_train * 4).reshape(copies * n_train, 2, 2)} if copies else {}
    return CodeGrids(codes=codes, num_codes={"codes": 2000}, copy_codes=copy_codes, category=torch.arange(n) % 3,
                     category_names=["a", "b", "c"], subcategory=torch.arange(n) % 6,   # s lies in category s % 3
                     subcategory_names=["a1", "b1", "c1", "a2", "b2", "c2"], vendor=torch.arange(n) % 2, vendor_names=["v0", "v1"],
                     train_idx=torch.arange(4, n), val_idx=torch.arange(4),
                     fingerprint=fingerprint, producer="01_vqvae", autoencoder_step=7)


def test_code_grids_train_rows_are_the_train_codes_then_each_copy_with_their_labels():
    g = _grids(copies=2)
    assert g.copies == 2 and g.levels == ("codes",)
    fit = g.fit("codes")
    assert torch.equal(fit[:6], g.codes["codes"][g.train_idx])
    assert torch.equal(fit[6:], g.copy_codes["codes"])
    assert torch.equal(g.fit_labels(), g.category[g.train_idx].repeat(3))
    assert torch.equal(g.val("codes"), g.codes["codes"][:4]) and torch.equal(g.val_labels(), g.category[:4])
    styled = g.fit_labels(style=True)                               # (category, vendor) of each row
    assert styled.shape == (18, 2) and torch.equal(styled[:, 0], g.fit_labels())
    assert torch.equal(styled[6:12, 1], g.vendor[g.train_idx]) and torch.equal(g.val_labels(True)[:, 1], g.vendor[:4])
    plain = _grids(copies=0)
    assert plain.copies == 0 and torch.equal(plain.fit("codes"), plain.codes["codes"][plain.train_idx])


def test_code_grids_condition_on_sub_categories_and_map_them_back_to_categories():
    g = _grids(copies=1)
    assert g.label == "category" and g.class_names == ["a", "b", "c"]
    sub = g.with_label("subcategory")
    assert g.label == "category" and sub.class_names == g.subcategory_names     # a copy: g is unchanged
    assert torch.equal(sub.fit_labels(), (torch.arange(4, 10) % 6).repeat(2))   # a copy keeps its original's
    assert torch.equal(sub.val_labels(style=True), torch.stack([torch.arange(4), torch.arange(4) % 2], 1))
    assert torch.equal(sub.to_category(torch.tensor([0, 4, 5, 3])), torch.tensor([0, 1, 2, 0]))
    assert torch.equal(sub.to_category(torch.tensor([[5, 1], [3, 0]])), torch.tensor([[2, 1], [0, 0]]))
    assert torch.equal(g.to_category(torch.tensor([2, 1])), torch.tensor([2, 1]))
    assert torch.equal(g.category_rows(2), torch.tensor([0, 0, 1, 1, 2, 2]))
    rows = sub.category_rows(50, seed=1)              # sub-categories of each category in turn, as in train
    assert torch.equal(sub.to_category(rows), torch.arange(3).repeat_interleave(50))
    assert set(rows[:50].tolist()) == {0, 3} and torch.equal(rows, sub.category_rows(50, seed=1))
    only_val = dataclasses.replace(sub, train_idx=torch.tensor([1, 2, 4, 5, 7, 8]))   # no category 0 in train
    assert set(only_val.category_rows(20)[:20].tolist()) <= {0, 3}
    with pytest.raises(ValueError, match="unknown label 'vendor'"):
        g.with_label("vendor")


def test_code_grids_round_trip_and_refuse_another_dataset_or_format(tmp_path):
    g = _grids()
    g.save(tmp_path / "codes.pt")
    back = CodeGrids.load(tmp_path / "codes.pt")
    for f in dataclasses.fields(CodeGrids):
        a, b = getattr(g, f.name), getattr(back, f.name)
        assert (all(torch.equal(a[k], b[k]) for k in a) if isinstance(a, dict) and f.name != "num_codes"
                else torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b), f.name
    assert back.check(ToyDataset(fingerprint="toy")) is back
    with pytest.raises(StaleArtifactError, match="run 01_vqvae again"):
        back.check(ToyDataset(fingerprint="other"))
    atomic_save({"codes": torch.zeros(2, 2, 2), "fingerprint": "toy"}, tmp_path / "old.pt")   # the old dict file
    with pytest.raises(StaleArtifactError, match="not a code_grids file.*run 01_vqvae again"):
        CodeGrids.load(tmp_path / "old.pt", "01_vqvae")
    before_vendors = {"kind": "code_grids", **{f.name: getattr(g, f.name) for f in dataclasses.fields(CodeGrids)
                                               if not f.name.startswith("vendor")}}
    atomic_save(before_vendors, tmp_path / "older.pt")
    with pytest.raises(StaleArtifactError, match="no vendor, vendor_names.*run 01_vqvae again"):
        CodeGrids.load(tmp_path / "older.pt", "01_vqvae")
    renamed = {"kind": "code_grids", **{("augmented" if f.name == "copy_codes" else f.name): getattr(g, f.name)
                                        for f in dataclasses.fields(CodeGrids)}}
    atomic_save(renamed, tmp_path / "renamed.pt")        # the copies' codes under their former name
    assert torch.equal(CodeGrids.load(tmp_path / "renamed.pt").copy_codes["codes"], g.copy_codes["codes"])


def test_sample_set_round_trips_with_its_setting(tmp_path):
    s = SampleSet(images=torch.zeros(3, 3, 32, 32, dtype=torch.uint8), labels=torch.tensor([0, 2, 1]),
                  setting=SamplingSetting(0.7, None, 3.0), prior="pixelcnn", seed=4, features_key="k",
                  fingerprint="toy", producer="02_pixelcnn")
    s.save(tmp_path / "s.pt")
    back = SampleSet.load(tmp_path / "s.pt")
    assert back.setting == SamplingSetting(temperature=0.7, guidance=3.0) and back.prior == "pixelcnn"
    assert torch.equal(back.images, s.images) and torch.equal(back.labels, s.labels)
    with pytest.raises(StaleArtifactError, match="pixelcnn samples.*run 02_pixelcnn again"):
        back.check(ToyDataset(fingerprint="other"))


def test_sampling_setting_reads_a_scored_row_and_prints_itself():
    row = {"temperature": 0.8, "top_k": None, "guidance": 5.0, "val_fid": 118.6, "blank_share": 0.0}
    s = SamplingSetting.from_dict(row)
    assert s == SamplingSetting(0.8, None, 5.0) and s.as_dict() == {"temperature": 0.8, "top_k": None, "guidance": 5.0,
                                                          "candidates": 1}
    assert str(s) == "T 0.8, guidance 5" and str(SamplingSetting(1.0, 32)) == "T 1, top-k 32, guidance 1"


def test_loading_an_upstream_artifact_names_the_notebook_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path)
    ds = ToyDataset()
    with pytest.raises(paths.MissingArtifactError, match="run 01_vqvae first"):
        artifacts.load_grids("smoke", "codes_vqvae", ds)
    with pytest.raises(paths.MissingArtifactError, match="run 02_pixelcnn first"):
        artifacts.load_samples("smoke", "pixelcnn", 32, ds)
    _grids(fingerprint="stale").save(paths.checkpoint_path("smoke", "codes_vqvae"))
    with pytest.raises(StaleArtifactError, match="another dataset: run 01_vqvae again"):
        artifacts.load_grids("smoke", "codes_vqvae", ds)


def test_a_prior_the_profile_does_not_train_is_named_as_such_not_as_a_notebook_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path)
    ds = ToyDataset()
    # quick trains one prior per size: running 02 again would not make its transformer
    with pytest.raises(paths.MissingArtifactError, match=r"'quick' does not train transformer.*\(smoke, full, curves, large\)"):
        artifacts.load_model("quick", "transformer", ds)
    with pytest.raises(paths.MissingArtifactError, match="'quick-random' does not train pixelcnn_top"):
        artifacts.load_model("quick-random", "pixelcnn_top", ds)
    # what the profile trains, and every non-prior model, still names the notebook that makes it
    for name, producer in (("pixelcnn", "02_pixelcnn"), ("pixelsnail_top", "04_pixelsnail"), ("vqvae2", "03_vqvae2")):
        with pytest.raises(paths.MissingArtifactError, match=f"run {producer} first"):
            artifacts.load_model("quick", name, ds)


def test_fit_autoencoder_trains_measures_and_encodes_every_image_and_each_augmented_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path)
    ds, profile = ToyDataset(), get_profile("smoke")
    seed_everything(0)
    model = VQVAE.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes=16, embed_dim=8)
    config = TrainConfig(max_steps=2, batch_size=8, lr=1e-3, seed=0, progress=False, precision="fp32")
    fit = stages.fit_autoencoder(model, ds, name="toy_vqvae", size=32, config=config, profile=profile,
                                 producer="01_vqvae", flip=True, shift=1)
    assert fit.trainer.step == 2 and paths.checkpoint_path("smoke", "toy_vqvae").exists()
    m = fit.metrics
    assert {"train_psnr", "val_psnr", "val_ssim", "val_code_usage", "val_perplexity", "steps"} <= set(m)
    assert [r["vendor"] for r in m["val_per_vendor"]] == ["v0", "v1"]
    g = fit.grids
    assert g.levels == ("codes",) and g.codes["codes"].shape == (24, 8, 8)
    assert g.copies == (5 if profile.prior_copies else 0) and g.autoencoder_step == 2
    copies = mirrored_shifted_copies(ds.images(32, "train"), True, 1) if profile.prior_copies else []
    expected = [encode_all(fit.model, ds.images(32, "train"))] + [encode_all(fit.model, x) for x in copies]
    assert torch.equal(g.fit("codes"), torch.cat(expected))
    assert torch.equal(g.val("codes"), encode_all(fit.model, ds.images(32, "val")))
    # the metrics file: the common protocol, the evaluation sizes and what the caller adds
    p = fit.save_metrics(ds, profile, "toy", latent="8x8")
    assert p["split"] == "80/20 by emoji identity" and p["n_eval"] == {"train": 16, "val": 8} and p["latent"] == "8x8"
    without = stages.fit_autoencoder(VQVAE.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes=16,
                                                 embed_dim=8), ds, name="toy2", size=32, config=config,
                                     profile=profile, producer="01_vqvae", encode=False)
    assert without.grids is None and "val_psnr" in without.metrics
    assert stages.rate_row(without)["bits per image"] == 8 * 8 * 4


class _Dead(torch.nn.Module):
    """A ReLU none of whose units is ever active."""

    def forward(self, x):
        return torch.zeros_like(x)


def test_an_autoencoder_whose_codes_collapsed_to_one_is_named_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path)
    ds, profile = ToyDataset(), get_profile("smoke")
    config = TrainConfig(max_steps=1, batch_size=8, lr=1e-3, seed=0, progress=False, precision="fp32")
    toy = lambda: VQVAE.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes=32, embed_dim=8)  # noqa: E731
    seed_everything(0)
    healthy = stages.fit_autoencoder(toy(), ds, name="healthy", size=32, config=config, profile=profile,
                                     producer="01_vqvae")
    assert healthy.metrics["collapsed_levels"] == [] and healthy.metrics["val_code_usage"] >= 0.05
    dead = toy()
    dead.encoder.net[-2] = _Dead()          # every unit before the encoder's last 1x1 convolution dead: z constant
    with pytest.warns(RuntimeWarning, match="dead: its codes level collapsed: 1 of 32 codes used on val"):
        fit = stages.fit_autoencoder(dead, ds, name="dead", size=32, config=config, profile=profile,
                                     producer="01_vqvae")
    assert fit.metrics["collapsed_levels"] == ["codes"] and fit.metrics["val_code_usage"] == 1 / 32
    levels = {"top": 256, "bottom": 512}
    with pytest.warns(RuntimeWarning, match="m: its top level collapsed: 3 of 256"):
        assert stages.collapsed_levels({"val_code_usage_top": 3 / 256, "val_code_usage_bottom": 0.98}, levels,
                                       "m") == ["top"]


def test_a_bottom_prior_trains_on_codes_labels_and_its_condition():
    n, n_train = 6, 4
    grids = CodeGrids(codes={"top": torch.randint(0, 4, (n, 2, 2)), "bottom": torch.randint(0, 4, (n, 4, 4))},
                      num_codes={"top": 4, "bottom": 4}, copy_codes={}, category=torch.arange(n) % 2,
                      category_names=["a", "b"], subcategory=torch.arange(n) % 2, subcategory_names=["a1", "b1"], vendor=torch.zeros(n, dtype=torch.long), vendor_names=["v"],
                      train_idx=torch.arange(2, n), val_idx=torch.arange(2),
                      fingerprint="toy", producer="03_vqvae2", autoencoder_step=1)
    snail = stages.PriorFamily("pixelsnail", {})
    codes, labels, cond = stages._level_data(grids, snail, "bottom", "fit", False)
    assert torch.equal(codes, grids.fit("bottom")) and torch.equal(labels, grids.fit_labels())
    assert torch.equal(cond, grids.fit("top"))                                   # its own ResNet reads them
    cnn = stages.PriorFamily("pixelcnn", {}, cond_fn=lambda top: top.float()[:, None] * 2)
    _, _, cond = stages._level_data(grids, cnn, "bottom", "val", False)
    assert torch.equal(cond, grids.val("top").float()[:, None] * 2)
    assert len(stages._level_data(grids, cnn, "top", "fit", False)) == 2 and n_train == len(grids.train_idx)
    _, styled_labels = stages._level_data(grids, cnn, "top", "fit", True)      # a prior conditioned on the vendor
    assert torch.equal(styled_labels, torch.stack([grids.fit_labels(), torch.zeros(n_train, dtype=torch.long)], 1))
    from helpers.models.pixelcnn import PixelCNN, PixelCNNConfig
    plain, styled = (PixelCNN(PixelCNNConfig(num_codes=4, hidden=8, layers=1, num_classes=2, num_styles=v))
                     for v in (0, 3))
    assert (stages.styled(plain), stages.styled(styled), stages.styled((styled, plain))) == (False, True, True)
    assert cnn.checkpoint_name("bottom") == "pixelcnn_bottom" and stages.PriorFamily("p", {}).checkpoint_name("codes") == "p"


def test_describe_run_tables_the_names_the_model_config_and_the_training_config():
    model = VQVAE.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes=16, embed_dim=8)
    table = stages.describe_run(model, TrainConfig(max_steps=3, lr=1e-3), config="default")
    rows = dict(zip(table.index, table.iloc[:, 0]))
    assert rows["config"] == "default" and rows["num_codes"] == 16 and rows["max_steps"] == 3
    assert rows["parameters"] == sum(p.numel() for p in model.parameters())


def test_train_configs_give_every_model_its_steps_and_one_or_its_own_learning_rate():
    profile = get_profile("smoke")
    shared = stages.train_configs({"a": 5, "b": 7}, profile, lr=1e-3, batch_size=16)
    own = stages.train_configs({"a": 5, "b": 7}, profile, lr={"a": 1e-3, "b": 6e-3}, batch_size=16)
    assert [(c.max_steps, c.lr, c.batch_size) for c in shared.values()] == [(5, 1e-3, 16), (7, 1e-3, 16)]
    assert [(c.max_steps, c.lr) for c in own.values()] == [(5, 1e-3), (7, 6e-3)]
    with pytest.raises(KeyError):
        stages.train_configs({"a": 5, "c": 7}, profile, lr={"a": 1e-3})
    # no batch given: the profile's (quick halves the priors' batch, full keeps 64)
    assert {c.batch_size for c in stages.train_configs({"a": 5}, get_profile("quick"), lr=1e-3).values()} == {32}
    assert {c.batch_size for c in stages.train_configs({"a": 5}, get_profile("full"), lr=1e-3).values()} == {64}


def test_budgeted_keeps_the_families_a_profile_trains_in_order_and_names_the_others(capsys):
    steps32 = {"transformer": 9, "pixelcnn": 5}
    assert stages.budgeted(["pixelcnn", "gated_pixelcnn", "transformer"], steps32, "p") == ["pixelcnn", "transformer"]
    assert "profile p trains no gated_pixelcnn" in capsys.readouterr().out
    steps64 = {"pixelsnail_top": 3, "pixelsnail_bottom": 3, "pixelcnn_top": 2}   # a family needs both levels
    assert stages.budgeted(["pixelsnail", "pixelcnn"], steps64, "p") == ["pixelsnail"]
    assert "trains no pixelcnn" in capsys.readouterr().out
    assert stages.budgeted(["pixelsnail"], steps64, "p") == ["pixelsnail"]
    assert capsys.readouterr().out == ""                     # nothing left out, nothing said
    with pytest.raises(ValueError, match="profile 'p' trains none of \\['gated_pixelcnn'\\]"):
        stages.budgeted(["gated_pixelcnn"], steps32, "p")


def _prior_steps(families, grids, vqvae, ds, config, profile, evaluation=stages.PriorEvaluation()):
    """A prior stage as 02 runs it, one step after the other; returns the fits."""
    fits = stages.train_priors(families, grids, vqvae, ds, configs={f.name: config for f in families},
                               profile=profile)
    stages.choose_settings(fits, ds, profile=profile, size=32, evaluation=evaluation)
    stages.draw_samples(fits, ds, profile=profile, size=32, producer="02_pixelcnn", evaluation=evaluation)
    judges = stages.train_judges(ds, profile=profile, size=32)
    stages.save_scores(stages.score_samples(fits, judges, ds, profile=profile, size=32, evaluation=evaluation),
                       profile, "prior_vqvae")
    return fits


def _colour_features(images, *_, **__):
    """A stand-in for the Inception network: each channel's mean and a few pixels of every image."""
    x = images.float().flatten(2) / 255
    return torch.cat([x.mean(2), x[:, :, :5].flatten(1)], 1)


@pytest.fixture
def colour_features(tmp_path, monkeypatch):
    """Artifacts in a private folder, and every Inception pass of the prior steps replaced by
    :func:`_colour_features`."""
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path)
    import helpers.metrics.generation as generation
    for module in (stages, generation):
        monkeypatch.setattr(module, "inception_features", _colour_features)
    monkeypatch.setattr(stages, "cached_features", _colour_features)
    monkeypatch.setattr(references, "reference", lambda ds, size, split, *_: (ds.images(size, split),
                                                                               _colour_features(ds.images(size, split))))


def _toy_vqvae_and_grids(ds, profile, config):
    seed_everything(0)
    vqvae = VQVAE.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes=16, embed_dim=8)
    grids = stages.fit_autoencoder(vqvae, ds, name="vqvae", size=32, config=config, profile=profile,
                                   producer="01_vqvae").grids
    return vqvae, grids


def _toy_pixelcnn_family(grids):
    """A one-level "pixelcnn" family of a tiny conditioned PixelCNN over the toy grids' 16 codes."""
    return stages.PriorFamily("pixelcnn", {"codes": lambda: PixelCNN(PixelCNNConfig(
        num_codes=16, hidden=8, layers=1, num_classes=len(grids.class_names), label_dropout=0.1))})


def test_the_prior_steps_choose_on_val_draw_with_the_choice_and_save_what_they_score(colour_features):
    ds, profile = ToyDataset(), get_profile("smoke")
    config = TrainConfig(max_steps=2, batch_size=8, lr=1e-3, seed=0, progress=False, precision="fp32")
    vqvae, grids = _toy_vqvae_and_grids(ds, profile, config)
    family = _toy_pixelcnn_family(grids)
    settings = (SamplingSetting(temperature=0.9), SamplingSetting(temperature=0.5, guidance=2.0))   # not the default
    evaluation = stages.PriorEvaluation(settings=settings, max_blank=1.01, fid_seed=7)
    fits = _prior_steps([family], grids, vqvae, ds, config, profile, evaluation)
    fit = fits["pixelcnn"]
    assert [SamplingSetting.from_dict(r) for r in fit.scored] == list(settings)     # every setting, in order
    assert fit.setting == SamplingSetting.from_dict(stages.pick_setting(fit.scored, max_blank=1.01))
    saved = SampleSet.load(paths.samples_path("smoke", "pixelcnn", 32))
    assert saved.setting == fit.setting and saved.seed == 7 and len(saved.images) == profile.n_samples
    assert torch.equal(saved.images, fit.sample(profile.n_samples, labels=saved.labels, seed=7))
    written = results.load_metrics("smoke", "prior_vqvae")
    assert written["pixelcnn"]["sampling"] == fit.setting.as_dict() and {"fid_floor", "fid_recon"} <= set(written)
    assert written["pixelcnn"]["fid"] == pytest.approx(fit.metrics["fid"], abs=1e-5)
    assert written["protocol"]["fid_network"] == evaluation.fid_network
    assert written["protocol"]["n_samples"] == profile.n_samples


def test_choose_settings_scores_a_family_the_profile_keeps_from_rejection_on_one_candidate(colour_features):
    ds = ToyDataset()
    profile = dataclasses.replace(get_profile("smoke"), rejection_priors=("transformer",))
    config = TrainConfig(max_steps=2, batch_size=8, lr=1e-3, seed=0, progress=False, precision="fp32")
    vqvae, grids = _toy_vqvae_and_grids(ds, profile, config)
    family = _toy_pixelcnn_family(grids)
    fits = stages.train_priors([family], grids, vqvae, ds, configs={"pixelcnn": config}, profile=profile)
    fits["pixelcnn"].rejector = recognise.fit_rejector(ds, 32, profile, grids.label)
    settings = (SamplingSetting(temperature=0.9), SamplingSetting(temperature=0.9, candidates=3))
    stages.choose_settings(fits, ds, profile=profile, size=32,
                           evaluation=stages.PriorEvaluation(settings=settings, max_blank=1.01))
    assert [SamplingSetting.from_dict(r) for r in fits["pixelcnn"].scored] == [settings[0]]
    assert fits["pixelcnn"].setting == settings[0]


def test_prior_evaluation_draws_a_twentieth_of_the_fid_samples_per_setting_and_at_least_ten():
    e = stages.PriorEvaluation()
    assert (e.n_choose(16), e.n_choose(100), e.n_choose(2000)) == (10, 10, 100)
    assert e.as_dict()["settings"] == ["T 1, guidance 1"] and e.as_dict()["fid_seed"] != e.choose_seed


def test_describe_runs_gives_every_run_a_column_with_its_whole_config():
    small = VQVAE.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes=16, embed_dim=8)
    prior = PixelCNN(PixelCNNConfig(num_codes=16, hidden=8, layers=1))
    table = stages.describe_runs({"vqvae": (small, TrainConfig(max_steps=3)),
                                  "prior": (prior, TrainConfig(max_steps=5, lr=1e-3))})
    assert list(table.columns) == ["vqvae", "prior"]
    assert table.loc["max_steps", "vqvae"] == 3 and table.loc["lr", "prior"] == 1e-3
    assert table.loc["parameters", "prior"] == sum(p.numel() for p in prior.parameters())
    assert table.loc["beta", "vqvae"] == 0.25 and table.loc["beta", "prior"] == ""    # a PixelCNN has none
    assert set(vars(small.config)) | set(vars(prior.config)) | set(TrainConfig().as_dict()) <= set(table.index)


def test_priors_on_sub_categories_are_judged_on_their_categories_and_their_sub_categories(colour_features,
                                                                                       monkeypatch):
    judged, by_judge = [], []
    real_recognisable, real_score = recognise.recognisable, recognise.Judge.score
    monkeypatch.setattr(recognise, "recognisable", lambda m, x, y, ref: judged.append((m, y)) or real_recognisable(m, x, y, ref))
    monkeypatch.setattr(recognise.Judge, "score", lambda self, x, cats, subs=None: by_judge.append((self, cats, subs))
                        or real_score(self, x, cats, subs))
    ds, profile = ToyDataset(), get_profile("smoke")
    config = TrainConfig(max_steps=2, batch_size=8, lr=1e-3, seed=0, progress=False, precision="fp32")
    vqvae, grids = _toy_vqvae_and_grids(ds, profile, config)
    grids = grids.with_label("subcategory")
    family = _toy_pixelcnn_family(grids)
    fits = _prior_steps([family], grids, vqvae, ds, config, profile)
    metrics = results.load_metrics("smoke", "prior_vqvae")
    m = metrics["pixelcnn"]
    assert {"recognisable_share", "subcategory_share", "judge_accuracy", "sureness", "density"} <= set(m)
    assert {"precision", "density", "judge_accuracy"} <= set(metrics["real_val"]) and "judge_accuracy" in metrics["blobs"]
    drawn = fits["pixelcnn"].samples.labels                       # drawn for sub-categories, as in train
    assert drawn.max() >= 3 and set(drawn.tolist()) <= set(ds.subcategory[ds.train_idx].tolist())
    ((coarse, on_categories),), ((judge, categories, subcategories),) = judged, by_judge
    assert torch.equal(on_categories, drawn % 3) and torch.equal(categories, drawn % 3)   # s lies in s % 3
    assert torch.equal(subcategories, drawn)
    assert (coarse.config.num_classes, judge.model.config.num_classes) == (3, 6) and judge.model.config.hue_free
    assert load_checkpoint(paths.checkpoint_path("smoke", "pixelcnn"))["extra"]["label"] == "subcategory"
    assert load_checkpoint(paths.checkpoint_path("smoke", "judge32"))["extra"]["label"] == "subcategory"
    assert results.load_metrics("smoke", "prior_vqvae")["protocol"]["conditioned_on"] == "subcategory"


def test_the_source_lines_01_shows_are_found_in_the_code_and_a_changed_line_is_an_error():
    from helpers import viz
    from helpers.models.quantize import VectorQuantizer

    table = viz.source_lines(VectorQuantizer, {"q_st = zf + (q - zf).detach()": "straight-through"}).data
    (where,) = table.index
    path, line = where.split(":")
    source = (paths.PROJECT_ROOT / "helpers" / "models" / path).read_text().splitlines()
    assert source[int(line) - 1].strip() == table["code"].iloc[0]
    assert table["code"].iloc[0].startswith("q_st = zf + (q - zf).detach()")
    with pytest.raises(ValueError, match="no line of VectorQuantizer contains 'not in it'"):
        viz.source_lines(VectorQuantizer, {"not in it": "?"})
