"""The judges: the category GAN-test (a classifier in colour, its real val accuracy, the recognisable
share of samples) and the hue-free sub-category judge with its blobs, share and sureness."""

import dataclasses
import math

import pytest
import torch

from helpers import paths, recognise
from helpers.checkpoints import build_model, load_checkpoint
from helpers.models.classifier import ClassifierConfig, EmojiClassifier
from helpers.train import TrainConfig


def _toy_dataset(n_per_class=48, size=32):
    """Two categories that differ in colour (red discs, blue squares): a task a classifier must learn."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, labels = [], []
    for i in range(2 * n_per_class):
        c = i % 2
        img = torch.full((3, size, size), 255, dtype=torch.uint8)
        r = int(torch.randint(6, size // 2 - 2, (1,), generator=g))
        mask = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2 < r * r) if c == 0 else \
            ((yy - size // 2).abs() < r) & ((xx - size // 2).abs() < r)
        img[:, mask] = torch.tensor([220, 30, 30] if c == 0 else [30, 30, 220], dtype=torch.uint8)[:, None]
        images.append(img)
        labels.append(c)
    images, labels = torch.stack(images), torch.tensor(labels)
    train_idx, val_idx = torch.arange(0, len(images) - 16), torch.arange(len(images) - 16, len(images))

    @dataclasses.dataclass
    class Toy:
        category_names = ["red", "blue"]
        fingerprint = "toy"
        category = labels

        def classes(self, label="category"):
            # one sub-category per category, named apart: what the classifier is told to learn
            return self.category, (self.category_names if label == "category" else ["red disc", "blue square"])

        def rows(self, split):
            return train_idx if split == "train" else val_idx

        def images(self, s, split):
            return images[self.rows(split)]
    return Toy()


def test_classifier_shapes_and_refuses_the_wrong_size():
    model = EmojiClassifier(ClassifierConfig(num_classes=5, image_size=64))
    assert model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).shape == (2, 5)
    with pytest.raises(ValueError, match="64 px"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert model.pool == 2                                   # judged at 32 px
    with pytest.raises(ValueError, match="powers of two"):
        EmojiClassifier(ClassifierConfig(num_classes=2, image_size=48))


def test_fitted_classifier_recognises_its_categories_and_is_checkpointed(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path)
    ds = _toy_dataset()
    config = TrainConfig(epochs=6, lr=3e-3, batch_size=16, warmup_steps=5, progress=False, precision="fp32")
    model = recognise.fit_classifier(ds, 32, "test", config)
    reference = recognise.real_val_accuracy(model, ds)
    assert reference >= 0.9
    # Samples that are real images of their category are recognisable; the same images under
    # the other category's label are not.
    images, labels = ds.images(32, "val"), ds.category[ds.rows("val")]
    assert recognise.recognisable(model, images, labels, reference)["recognisable_share"] == pytest.approx(1.0)
    assert recognise.recognisable(model, images, 1 - labels, reference)["recognisable_share"] <= 0.2
    ckpt = load_checkpoint(paths.checkpoint_path("test", "classifier32"))
    assert torch.equal(build_model(ckpt).predict(images), model.predict(images))
    assert ckpt["extra"]["label"] == "category"
    finer = recognise.fit_classifier(ds, 32, "test", dataclasses.replace(config, epochs=1), label="subcategory")
    ckpt = load_checkpoint(paths.checkpoint_path("test", "classifier32_subcategory"))   # a checkpoint of its own
    assert ckpt["extra"]["label"] == "subcategory" and ckpt["step"] < 20 and finer.config.num_classes == 2


def test_recognisable_needs_matching_labels_and_a_positive_reference():
    model = EmojiClassifier(ClassifierConfig(num_classes=2))
    x = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        recognise.recognisable(model, x, torch.zeros(3, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="positive"):
        recognise.recognisable(model, x, torch.zeros(4, dtype=torch.long), 0.0)


def test_the_classifier_trains_from_its_seed_whatever_drew_random_numbers_before(tmp_path, monkeypatch):
    ds, config = _toy_dataset(n_per_class=16), TrainConfig(max_steps=1, lr=0.0, batch_size=4, warmup_steps=0,
                                                          progress=False, precision="fp32")
    weights = []
    for draws in (0, 1000):                         # 1000: another model was built before it
        monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path / str(draws))
        torch.manual_seed(123)
        torch.rand(draws)
        weights.append(recognise.fit_classifier(ds, 32, "test", config).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


# ---- the hue-free judge ---------------------------------------------------------------------------

CATEGORIES, SUBCATEGORIES = ["disc", "flag"], ["disc, eyes", "disc, bar", "flag, eyes", "flag, bar"]


def _draw(kind, feature, colour, size=32):
    """A bright ``colour`` disc or wide rectangle (a flag) on white with two dark eyes or a dark bar
    of the same ink on one row (blurred, the two look alike), or (``feature`` None) with nothing
    on it: the silhouette tells the category, only the feature the sub-category."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = size // 2
    img = torch.full((3, size, size), 255, dtype=torch.uint8)
    shape = (yy - c) ** 2 + (xx - c) ** 2 < 12 ** 2 if kind == 0 else ((yy - c).abs() < 7) & ((xx - c).abs() < 14)
    img[:, shape] = colour[:, None]
    if feature == 0:
        img[:, c - 2:c + 1, c - 6:c - 2] = 30
        img[:, c - 2:c + 1, c + 2:c + 6] = 30
    elif feature == 1:
        img[:, c - 2:c, c - 6:c + 6] = 30
    return img


def _judge_dataset(n=224, n_val=96, seed=0):
    """Sub-categories that only features tell apart (eyes or a bar), in categories that the
    silhouette tells apart (discs, flags); every image its own random bright colour."""
    g = torch.Generator().manual_seed(seed)
    sub = torch.arange(n) % 4
    colours = torch.randint(120, 256, (n, 3), generator=g).to(torch.uint8)
    images = torch.stack([_draw(int(s) // 2, int(s) % 2, colours[i]) for i, s in enumerate(sub)])
    train_idx, val_idx = torch.arange(n_val, n), torch.arange(n_val)

    class Toy:
        category_names, fingerprint = CATEGORIES, f"toy-judge-{seed}"
        category, subcategory = sub // 2, sub

        def classes(self, label="category"):
            return (sub, SUBCATEGORIES) if label == "subcategory" else (sub // 2, CATEGORIES)

        def rows(self, split):
            return train_idx if split == "train" else val_idx

        def images(self, size, split=None):
            return images if split is None else images[self.rows(split)]
    return Toy()


JUDGE = recognise.JudgeConfig(lr=1e-3, batch_size=16)     # the toy's classes are learnt in a few steps


@pytest.fixture(scope="module")
def toy_judges(tmp_path_factory):
    """Both classifiers fitted once on the toy (a module's worth of tests read them)."""
    import helpers.paths as p
    from helpers.profiles import get_profile

    before, p.ARTIFACTS_ROOT = p.ARTIFACTS_ROOT, tmp_path_factory.mktemp("artifacts")
    profile = dataclasses.replace(get_profile("smoke"), classifier_steps=80)
    try:
        yield recognise.Judges.fit(_judge_dataset(), 32, profile, JUDGE), profile
    finally:
        p.ARTIFACTS_ROOT = before


@pytest.mark.slow
def test_the_judge_sees_no_hue_so_a_channel_swap_or_a_hue_rotation_changes_nothing(toy_judges):
    judge = toy_judges[0].judge.model
    images = _judge_dataset().images(32, "val")
    logits = judge(images)
    for order in ([1, 0, 2], [2, 0, 1], [0, 2, 1]):          # swaps, and a 120 degree hue rotation
        assert torch.equal(judge(images[:, order]), logits)
    x = images.float() / 127.5 - 1                            # a 50 degree rotation about the grey axis
    axis, angle = torch.ones(3) / 3 ** 0.5, math.radians(50)
    cross = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = torch.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross
    rotated = torch.einsum("ij,bjhw->bihw", rotation, x)
    assert (rotated - x).abs().max() > 0.3                    # the colours did change
    assert torch.equal(judge(rotated).argmax(1), logits.argmax(1))
    assert torch.allclose(judge(rotated), logits, atol=1e-4)
    colour = EmojiClassifier(ClassifierConfig(num_classes=4)).eval()     # the GAN-test's classifier sees hue
    assert not torch.allclose(colour(images[:, [2, 0, 1]]), colour(images))


@pytest.mark.slow
def test_real_val_scores_one_and_blobs_and_single_colour_shapes_about_zero(toy_judges):
    judges, _ = toy_judges
    ds = _judge_dataset()
    real = judges.judge.real_val
    assert real["judge_accuracy"] >= 0.9 and real["judge_accuracy"] > judges.judge.blobs["judge_accuracy"] + 0.3
    assert judges.judge.blobs["judge_top_probability"] < real["judge_top_probability"] - 0.2   # unsure of blobs
    val, sub = ds.images(32, "val"), ds.subcategory[ds.rows("val")]
    on_val = judges.score(val, sub // 2, sub)
    assert on_val["subcategory_share"] == pytest.approx(1.0) and on_val["sureness"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in on_val["sureness_per_category"].values())
    fresh = _judge_dataset(seed=1)                            # blobs of images it never saw
    images, fresh_sub = fresh.images(32, "val"), fresh.subcategory[fresh.rows("val")]
    on_blobs = judges.score(recognise.blobs(images, judges.judge.sigma), fresh_sub // 2, fresh_sub)
    assert abs(on_blobs["subcategory_share"]) < 0.35 and abs(on_blobs["sureness"]) < 0.25
    # single-colour discs and flags drawn for their shape's sub-categories: a blob to the judge,
    # while the category GAN-test, which reads the silhouette, passes them
    g = torch.Generator().manual_seed(2)
    plain_sub = torch.arange(96) % 4
    plain = torch.stack([_draw(int(s) // 2, None, torch.randint(120, 256, (3,), generator=g).to(torch.uint8))
                         for s in plain_sub])
    on_plain = judges.score(plain, plain_sub // 2, plain_sub)
    assert abs(on_plain["subcategory_share"]) < 0.35 and abs(on_plain["sureness"]) < 0.25
    assert on_plain["recognisable_share"] > 0.9
    assert on_val["recognisable_share"] == pytest.approx(1.0)


@pytest.mark.slow
def test_the_judge_is_a_checkpoint_of_its_own_and_loads_when_done(toy_judges):
    judges, profile = toy_judges
    ckpt = load_checkpoint(paths.checkpoint_path(profile.name, "judge32"))
    assert ckpt["extra"]["label"] == "subcategory" and ckpt["step"] == 80
    assert build_model(ckpt).config.hue_free and not judges.classifier.config.hue_free
    assert load_checkpoint(paths.checkpoint_path(profile.name, "classifier32"))["extra"]["label"] == "category"
    again = recognise.Judge.fit(_judge_dataset(), 32, profile, JUDGE)
    images = _judge_dataset().images(32, "val")
    assert torch.equal(again.model(images), judges.judge.model(images))     # loaded, not trained again
    assert again.real_val == judges.judge.real_val and again.blobs == judges.judge.blobs


@pytest.mark.slow
def test_a_prior_on_categories_has_no_sub_category_share_but_a_sureness(toy_judges):
    judges, _ = toy_judges
    ds = _judge_dataset()
    out = judges.score(ds.images(32, "val"), ds.category[ds.rows("val")])
    assert out["subcategory_share"] == recognise.NOT_MEASURED and "judge_accuracy" not in out
    assert isinstance(out["sureness"], float) and set(out["sureness_per_category"]) == set(CATEGORIES)
    with pytest.raises(ValueError, match="3 samples but 2 categories"):
        judges.judge.score(ds.images(32, "val")[:3], torch.zeros(2, dtype=torch.long))


def test_placed_puts_blobs_at_zero_real_at_one_and_refuses_a_judge_that_cannot_tell_them_apart():
    assert recognise.placed(0.5, 0.2, 0.8) == pytest.approx(0.5)
    assert recognise.placed(0.2, 0.2, 0.8) == 0 and recognise.placed(0.8, 0.2, 0.8) == 1
    assert recognise.placed(0.1, 0.2, 0.8) < 0                    # worse than a blob says so
    assert recognise.placed(0.5, 0.3, 0.3) is None and recognise.placed(0.5, 0.4, 0.3) is None
    assert recognise.placed(None, 0.2, 0.8) is None and recognise.placed(0.5, None, 0.8) is None
    assert recognise.placed(0.5, 0.3, 0.33, min_span=0.05) is None          # a span too short to place on
    assert recognise.placed(0.5, 0.3, 0.4, min_span=0.05) == pytest.approx(2.0)


def test_blobs_keep_colour_and_place_but_leave_no_feature():
    yellow = torch.tensor([250, 200, 40], dtype=torch.uint8)
    face = _draw(0, 0, yellow)[None]
    blob = recognise.blobs(face, 32 / 8)
    assert blob.dtype == torch.uint8 and blob.shape == face.shape
    assert torch.equal(blob[..., 0, 0], face[..., 0, 0])          # the white corner stays white
    centre = blob[0, :, 16, 16].int()
    assert (centre - torch.tensor([250, 200, 40])).abs().max() < 70   # about the disc's colour
    eyes, bar = _draw(0, 0, yellow)[None], _draw(0, 1, yellow)[None]
    assert (eyes.int() - bar.int()).abs().max() > 150                                   # sharp, they differ
    assert (recognise.blobs(eyes, 4).int() - recognise.blobs(bar, 4).int()).abs().max() <= 12   # blobs, not
    assert torch.equal(recognise.judge_view(face)[:, 0], recognise.judge_view(face)[:, 2])
    with pytest.raises(ValueError, match="sigma must be positive"):
        recognise.blobs(face, 0)
    with pytest.raises(ValueError, match="uint8"):
        recognise.blobs(face.float(), 2)


def test_one_config_holds_the_judges_training_and_the_profile_only_its_steps():
    from helpers.profiles import get_profile

    config = recognise.JudgeConfig()
    full = config.train_config(get_profile("full"))
    assert (full.max_steps, full.lr, full.batch_size) == (get_profile("full").classifier_steps, config.lr,
                                                           config.batch_size)
    assert config.train_config(get_profile("smoke")).max_steps == get_profile("smoke").classifier_steps
    assert not hasattr(recognise, "classifier_config")
    assert recognise.Judge.min_span == config.min_span                       # stated once
    assert EmojiClassifier(ClassifierConfig(num_classes=2, **config.model_config())).config.blob_sigma == config.blob_sigma
    with pytest.raises(ValueError, match="blob_sigma"):
        EmojiClassifier(ClassifierConfig(num_classes=2, blobs=0.5))


def test_judge_rows_and_sureness_rows_read_the_metrics_files():
    prior = {"fid": 60.0, "recognisable_share": 1.0, "subcategory_share": recognise.NOT_MEASURED, "sureness": 0.3,
             "judge_top_probability": 0.4, "precision": 0.7, "density": 0.9, "coverage": 0.8,
             "sureness_per_category": {"disc": 0.5, "square": None}}
    metrics = {"prior_vqvae": {"fid_floor": 30.0, "real_val": {"precision": 0.75, "judge_accuracy": 0.4},
                               "blobs": {"judge_accuracy": 0.1}, "pixelcnn": prior,
                               "protocol": {"image_size": 32}}}
    rows = recognise.judge_rows(metrics)
    assert [r["images"] for r in rows] == ["pixelcnn (prior_vqvae)", "real val (prior_vqvae)", "blobs (prior_vqvae)"]
    assert rows[0]["fid / floor"] == 2.0 and rows[0]["sub-category share"] == recognise.NOT_MEASURED
    assert rows[0]["category GAN-test (passable by colour)"] == 1.0 and rows[0]["density"] == 0.9
    assert rows[1]["precision"] == 0.75 and rows[1]["judge accuracy"] == 0.4 and rows[2]["judge accuracy"] == 0.1
    assert recognise.sureness_rows(metrics) == [{"category": "disc", "pixelcnn (prior_vqvae)": 0.5},
                                                {"category": "square", "pixelcnn (prior_vqvae)": None}]


def test_the_blur_runs_in_fp32_under_a_training_steps_bf16_autocast_and_channels_last():
    # a judge's training step blurs part of its batch inside bf16 autocast, the batch channels-last:
    # the depthwise convolutions in that form took minutes per call on a bf16 CPU
    from helpers.models.classifier import gaussian_blur

    x = torch.rand(6, 3, 32, 32)
    plain = gaussian_blur(x, 4.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = gaussian_blur(x.contiguous(memory_format=torch.channels_last), 4.0)
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)
    assert gaussian_blur(x.bfloat16(), 4.0).dtype == torch.bfloat16      # the caller's dtype comes back
