"""Explorers: each builds (live and static) and its callback draws an image without a browser."""

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pytest
import torch

from helpers import widgets as w
from helpers.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig
from helpers.models.vqvae import VQVAE, VQVAEConfig

K = 10


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig(hidden=32, res_hidden=16, res_blocks=1, num_codes=K, embed_dim=8, kmeans_init=False)).eval()
    prior = GatedPixelCNN(GatedPixelCNNConfig(num_codes=K, hidden=8, layers=2, head_hidden=8, num_classes=3,
                                              label_dropout=0.1)).eval()
    return vq, prior


def _images(n=4):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_is_static_outside_a_jupyter_session(monkeypatch):
    monkeypatch.delenv("EMOJIVQ_STATIC", raising=False)
    assert w.is_static()                                      # pytest: no kernel at all
    monkeypatch.setenv("EMOJIVQ_STATIC", "0")
    assert not w.is_static()
    monkeypatch.setenv("EMOJIVQ_STATIC", "1")
    assert w.is_static()


def test_sampler_callback_and_explorer(models):
    vq, prior = models
    sources = {"gated": (prior, vq)}
    a = w.draw_samples(sources, "gated", temperature=0.8, top_k=3, category=1, n=5, seed=2)
    assert a.shape == (5, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, w.draw_samples(sources, "gated", temperature=0.8, top_k=3, category=1, n=5, seed=2))
    assert not torch.equal(a, w.draw_samples(sources, "gated", temperature=0.8, top_k=3, category=1, n=5, seed=3))
    guided = w.draw_samples(sources, "gated", temperature=0.8, top_k=3, guidance=20.0, category=1, n=5, seed=2)
    assert not torch.equal(a, guided)                         # guidance reaches the sampler
    fig = w.sampler_explorer(sources, ["a", "b", "c"], n=4, static=True)
    assert isinstance(fig, plt.Figure)
    box = w.sampler_explorer(sources, ["a", "b", "c"], n=4, max_top_k=K, static=False)
    assert isinstance(box, widgets.VBox)
    controls = box.children[0].children
    assert box.children[0].layout.flex_flow == "row wrap"     # a narrow page wraps the controls
    button = next(c for c in controls if isinstance(c, widgets.Button))
    assert "seed 0" in box.figure.axes[0].get_title()
    button.click()                                            # draws a fresh grid, no browser needed
    assert "seed 1" in box.figure.axes[0].get_title()
    assert any(getattr(c, "description", "") == "guidance" for c in controls)


def test_the_sampler_offers_each_prior_its_own_classes(models):
    vq, prior = models
    box = w.sampler_explorer({"coarse": (prior, vq), "fine": (prior, vq)},
                             {"coarse": ["a", "b", "c"], "fine": ["a1", "a2", "b1"]}, n=4, static=False)
    chooser, category = (next(c for c in box.children[0].children if getattr(c, "description", "") == d)
                         for d in ("prior", "category"))
    assert [label for label, _ in category.options] == ["any", "a", "b", "c"]
    chooser.value = "fine"                                    # the classes follow the chosen prior
    assert [label for label, _ in category.options] == ["any", "a1", "a2", "b1"]
    category.value = 1
    next(c for c in box.children[0].children if isinstance(c, widgets.Button)).click()
    assert "a2, guidance" in box.figure.axes[0].get_title()


def test_the_sampler_draws_the_chosen_style_from_a_prior_conditioned_on_the_vendor(models):
    vq, _ = models
    torch.manual_seed(0)
    styled = GatedPixelCNN(GatedPixelCNNConfig(num_codes=K, hidden=8, layers=2, head_hidden=8, num_classes=3,
                                               num_styles=2, label_dropout=0.1)).eval()
    with torch.no_grad():
        for m in styled.modules():
            if getattr(m, "style", None) is not None:
                m.style.weight.mul_(30)                     # a style that shows
    sources = {"styled": (styled, vq)}
    draw = lambda **kw: w.draw_samples(sources, "styled", n=6, seed=2, **kw)   # noqa: E731
    assert not torch.equal(draw(category=1, style=0), draw(category=1, style=1))
    assert not torch.equal(draw(style=0), draw(style=1))      # a style with any category
    assert torch.equal(draw(category=1), draw(category=1, style=None))
    _, plain = models                                         # a prior without styles ignores the choice
    assert torch.equal(w.draw_samples({"p": (plain, vq)}, "p", category=1, style=1, n=4, seed=0),
                       w.draw_samples({"p": (plain, vq)}, "p", category=1, n=4, seed=0))
    box = w.sampler_explorer(sources, ["a", "b", "c"], style_names=["v0", "v1"], n=4, static=False)
    style = next(c for c in box.children[0].children if getattr(c, "description", "") == "style")
    style.value = 1
    box.refresh()
    assert "v1 style" in box.figure.axes[0].get_title()
    for plain_box in (w.sampler_explorer(sources, ["a", "b", "c"], n=4, static=False),     # no vendor names
                      w.sampler_explorer({"p": (plain, vq)}, ["a", "b", "c"], style_names=["v0", "v1"], n=4,
                                         static=False)):                             # no prior with styles
        assert not any(getattr(c, "description", "") == "style" for c in plain_box.children[0].children)


def test_interpolation_view_and_picker(models):
    vq, _ = models
    images = _images()
    view = w.interpolation_view(vq, images[0], images[1], 0.0)
    assert view.shape == (5, 3, 32, 32) and view.dtype == torch.uint8
    assert torch.equal(view[0], images[0]) and torch.equal(view[4], images[1])
    assert torch.equal(view[3], images[0])                   # cross-fade at a = 0 is A itself
    assert not torch.equal(view[1], w.interpolation_view(vq, images[0], images[1], 1.0)[1])
    fig = w.interpolation_picker(vq, images, ["w", "x", "y", "z"], static=True)
    assert isinstance(fig, plt.Figure)
    box = w.interpolation_picker(vq, images, ["w", "x", "y", "z"], static=False)
    slider = next(c for c in box.children[0].children if isinstance(c, widgets.FloatSlider))
    slider.value = 0.25                                       # redraws through the callback
    assert "a = 0.25" in box.figure.axes[0].get_title()


def test_inpaint_view_and_explorer(models):
    vq, prior = models
    images = _images(3)
    view = w.inpaint_view(vq, prior, images, [0, 8, 24], [4, 12, 24], labels=torch.tensor([0, 1, 2]), n_samples=3)
    assert view.shape == (4 + 3, 3, 3, 32, 32) and view.dtype == torch.uint8
    assert torch.equal(view[0], images)
    assert (view[1][0, :, 0:8, 4:12] == 255).all()            # the mask, filled white
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[0:8, 4:12] = False
    for row in view[2:]:                                      # every method keeps the visible pixels
        assert torch.equal(row[0][:, outside], images[0][:, outside])
    fig = w.inpainting_explorer(vq, prior, images, ["p", "q", "r"], labels=[0, 1, 2], static=True)
    assert isinstance(fig, plt.Figure)
    box = w.inpainting_explorer(vq, prior, images, ["p", "q", "r"], n_samples=2, static=False)
    top = next(c for c in box.children[0].children if isinstance(c, widgets.IntSlider))
    before = box.figure
    top.value = 3
    assert box.figure is not before and box.figure.axes[0].get_title().startswith("p:")


def test_sampler_draws_from_a_vqvae2_prior_pair_too():
    from helpers.models.vqvae2 import VQVAE2, VQVAE2Config

    torch.manual_seed(0)
    vq2 = VQVAE2(VQVAE2Config(hidden=16, res_hidden=8, decoder_hidden=16, res_blocks=1, embed_dim=4,
                              num_codes_top=5, num_codes_bottom=6, kmeans_init=False)).eval()
    top = GatedPixelCNN(GatedPixelCNNConfig(num_codes=5, hidden=8, layers=2, head_hidden=8)).eval()
    bottom = GatedPixelCNN(GatedPixelCNNConfig(num_codes=6, hidden=8, layers=2, head_hidden=8, cond_channels=4)).eval()
    images = w.draw_samples({"vqvae2": ((top, bottom), vq2, vq2.top_condition)}, "vqvae2", n=3, top_k=0)
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.uint8
