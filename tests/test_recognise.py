"""The GAN-test: a category classifier, its real val accuracy, and the recognisable share of samples."""

import dataclasses

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
