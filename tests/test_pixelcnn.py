"""Priors over codes: causality (by gradients), no blind spot, conditioning, training, checkpoints."""

import math

import pytest
import torch

from _causality import embedding_grads
from helpers.checkpoints import build_model, load_checkpoint, save_checkpoint
from helpers.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig, PixelCNN, PixelCNNConfig


K, H, W = 16, 8, 8


def _small(kind, **kw):
    torch.manual_seed(0)
    if kind == "pixelcnn":
        return PixelCNN(PixelCNNConfig(num_codes=K, hidden=16, layers=kw.pop("layers", 4), head_hidden=16, **kw))
    return GatedPixelCNN(GatedPixelCNNConfig(num_codes=K, hidden=16, layers=kw.pop("layers", 4),
                                             head_hidden=16, **kw))


def _input_grads(model, codes, labels=None, cond=None):
    """|d logits[p] / d (embedded codes)| for every output position p and input position: (H, W, H, W)."""
    return embedding_grads(model, codes, labels, cond).view(H, W, H, W)


def _raster_before(i, j):
    """(H, W) bool: positions strictly before (i, j) in raster order."""
    idx = torch.arange(H * W).view(H, W)
    return idx < i * W + j


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_prior_logits_never_depend_on_current_or_later_codes(kind):
    model = _small(kind, num_classes=3)
    codes = torch.randint(0, K, (2, H, W))
    grads = _input_grads(model, codes, labels=torch.tensor([1, 2]))
    for i in range(H):
        for j in range(W):
            future = ~_raster_before(i, j)
            assert grads[i, j][future].abs().max() == 0, f"position {(i, j)} sees the present or future"
    assert grads.sum() > 0


def test_gated_pixelcnn_sees_every_earlier_code_no_blind_spot():
    model = _small("gated", layers=6)
    grads = _input_grads(model, torch.randint(0, K, (1, H, W)))
    for i in range(H):
        for j in range(W):
            before = _raster_before(i, j)
            assert (grads[i, j][before] > 0).all(), f"blind spot at {(i, j)}: {grads[i, j] > 0}"


def test_report_pixelcnn_has_the_blind_spot_the_gated_one_removes():
    # Stacked masked 3x3 convs never look far up-right: (3, 7) is invisible from (4, 1).
    grads = _input_grads(_small("pixelcnn", layers=6), torch.randint(0, K, (1, H, W)))
    assert grads[4, 1][3, 7] == 0
    gated = _input_grads(_small("gated", layers=6), torch.randint(0, K, (1, H, W)))
    assert gated[4, 1][3, 7] > 0


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_prior_category_conditioning_changes_logits(kind):
    model = _small(kind, num_classes=4).eval()
    codes = torch.randint(0, K, (3, H, W))
    with torch.no_grad():
        a = model(codes, torch.tensor([0, 0, 0]))
        b = model(codes, torch.tensor([1, 1, 1]))
        c = model(codes, 1)                       # one label for all
        free = model(codes)                       # "no category" (label-dropout) slot
    assert (a - b).abs().max() > 1e-3
    assert torch.equal(b, c)
    assert free.shape == (3, K, H, W)
    uncond = _small(kind)
    with torch.no_grad():
        assert torch.equal(uncond.eval()(codes, torch.tensor([0, 0, 0])), uncond(codes))   # ignored


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_prior_spatial_condition_is_used_and_causal_in_rows(kind):
    model = _small(kind, cond_channels=5).eval()
    codes = torch.randint(0, K, (1, H, W))
    cond = torch.randn(1, 5, H, W, requires_grad=True)
    logits = model(codes, cond=cond)
    logits[0, :, 3, 4].sum().backward()
    g = cond.grad[0].abs().sum(0)
    assert g[:4].sum() > 0                        # the condition matters ...
    assert g[4:].sum() == 0                       # ... but rows below are never read (row-cropped sampling)


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_prior_training_step_gives_nll_in_nats_and_learns(kind):
    model = _small(kind, num_classes=2, dropout=0.1).train()
    codes = torch.randint(0, 4, (32, H, W))       # only 4 of the 16 codes occur
    labels = torch.randint(0, 2, (32,))
    loss, logs = model.training_step((codes, labels))
    assert abs(logs["nll"] - math.log(K)) < 1.0   # ~uniform at the start
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(30):
        loss, logs = model.training_step((codes, labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["nll"] < math.log(4) + 0.2 and set(logs) >= {"nll", "acc"}


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_prior_checkpoint_rebuilds_the_same_model(kind, tmp_path):
    model = _small(kind, num_classes=3, cond_channels=2).eval()
    path = save_checkpoint(tmp_path / "prior.pt", model)
    rebuilt = build_model(load_checkpoint(path))
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    codes, labels, cond = torch.randint(0, K, (2, H, W)), torch.tensor([0, 2]), torch.randn(2, 2, H, W)
    with torch.no_grad():
        assert torch.equal(model(codes, labels, cond), rebuilt(codes, labels, cond))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_drops_a_share_p_scales_the_rest_and_passes_gradients_through_the_mask(p):
    from helpers.models.prior import Dropout

    torch.manual_seed(0)
    drop = Dropout(p)
    x = torch.rand(8, 32, 16, 16).add_(1).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - p) < 0.01
    assert torch.allclose(y[kept], x[kept] / (1 - p))
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / (1 - p))
    assert not torch.equal(drop(x), y)                     # a new mask each call
    drop.eval()
    assert drop(x) is x
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    z = torch.ones(4, 4, dtype=torch.bfloat16)
    assert Dropout(p)(z).dtype == torch.bfloat16


def test_token_dropout_replaces_a_share_of_the_codes_with_any_code():
    from helpers.models.prior import corrupt_codes

    torch.manual_seed(0)
    codes = torch.zeros(64, 8, 8, dtype=torch.long)
    assert corrupt_codes(codes, 0.0, K) is codes
    out = corrupt_codes(codes, 0.3, K)
    changed = (out != 0).float().mean().item()
    assert abs(changed - 0.3 * (K - 1) / K) < 0.02               # a replacement may draw the same code
    assert out.max() == K - 1 and out.min() == 0 and out.dtype == torch.long


@pytest.mark.parametrize("kind", ["pixelcnn", "gated", "transformer", "pixelsnail"])
def test_token_dropout_corrupts_only_the_training_inputs_never_the_targets_or_evaluation(kind):
    from helpers.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
    from helpers.models.transformer import TransformerPrior, TransformerPriorConfig

    def build(share):
        torch.manual_seed(0)
        if kind == "transformer":
            model = TransformerPrior(TransformerPriorConfig(num_codes=K, hidden=16, layers=1, heads=2, dropout=0.0,
                                                            token_dropout=share))
        elif kind == "pixelsnail":
            model = PixelSNAIL(PixelSNAILConfig(num_codes=K, channels=16, blocks=1, res_blocks=1, heads=2,
                                                head_dim=8, dropout=0.0, token_dropout=share))
        else:
            model = _small(kind, token_dropout=share)
        forward = model.forward
        model.forward = lambda codes, *rest: (fed.append(codes), forward(codes, *rest))[1]   # what it reads
        return model

    fed = []
    codes = torch.randint(0, K, (8, H, W))
    plain, noisy = build(0.0), build(0.5)
    plain.eval(), noisy.eval()
    with torch.no_grad():
        assert torch.equal(plain.training_step((codes,))[0], noisy.training_step((codes,))[0])
    assert torch.equal(fed[-1], codes)                             # evaluation reads the codes as they are
    noisy.train()
    noisy_loss, _ = noisy.training_step((codes,))
    assert 0.35 < (fed[-1] != codes).float().mean() < 0.6          # about half the inputs replaced ...
    plain.train()
    with torch.no_grad():
        target_only = plain.training_step((fed[-1],))[0]
    assert not torch.equal(noisy_loss.detach(), target_only)       # ... and the targets still the true codes


def test_the_registry_lists_every_prior_family_per_size_each_on_the_one_base():
    from helpers import paths
    from helpers.models import MODEL_REGISTRY, PRIOR_FAMILIES, prior_checkpoints, prior_class
    from helpers.models.prior import Prior, PriorConfig

    for size, families in PRIOR_FAMILIES.items():
        for family in families:
            cls = prior_class(family, size)
            assert issubclass(cls, Prior) and issubclass(cls.config_class, PriorConfig)
            assert MODEL_REGISTRY[cls.__name__] is cls                      # checkpoints rebuild it
            assert size == 32 or set(cls.level_configs) == {"top", "bottom"}
    assert prior_checkpoints(32) == ["pixelcnn", "gated_pixelcnn", "transformer", "maskgit"]
    assert prior_checkpoints(64) == ["pixelsnail_top", "pixelsnail_bottom", "pixelcnn_top", "pixelcnn_bottom"]
    assert paths.PRODUCERS["gated_pixelcnn"] == "02_pixelcnn" and paths.PRODUCERS["pixelcnn_bottom"] == "04_pixelsnail"
    assert paths.PRODUCERS["samples_transformer_32px"] == "02_pixelcnn"
    with pytest.raises(ValueError, match="no prior family 'pixelsnail' at 32 px"):
        prior_class("pixelsnail", 32)


def test_knowing_the_families_imports_no_model():
    import subprocess
    import sys

    code = "import sys, helpers.paths, helpers.curves; print(sorted(m for m in sys.modules if m.startswith('torch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_gated_pixelcnn_for_a_vqvae2_takes_its_code_counts_and_the_top_condition():
    from helpers.models.transformer import TransformerPrior
    from helpers.models.vqvae2 import VQVAE2Config

    vc = VQVAE2Config(num_codes_top=40, num_codes_bottom=50, embed_dim=12)
    top, bottom = (GatedPixelCNN.for_vqvae2(vc, level, num_classes=3, hidden=16) for level in ("top", "bottom"))
    assert top.config == GatedPixelCNNConfig(num_codes=40, num_classes=3, hidden=16)
    assert bottom.config == GatedPixelCNNConfig(num_codes=50, hidden=16, layers=10, cond_channels=12, num_classes=3)
    with pytest.raises(ValueError, match="TransformerPrior has no prior of level 'top'"):
        TransformerPrior.for_vqvae2(vc, "top")
