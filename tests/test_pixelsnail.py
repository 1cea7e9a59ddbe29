"""PixelSNAIL priors: causality (by gradients), attention, conditioning, incremental sampling,
hierarchical sampling, checkpoints."""

from dataclasses import replace

import pytest
import torch

from helpers.checkpoints import build_model, load_checkpoint, save_checkpoint
from helpers.models.pixelsnail import (PIXELSNAIL_CONFIGS, CausalAttention, PixelSNAIL, PixelSNAILConfig)
from helpers.sampling import sample_codes
from helpers.sampling import sample_hierarchical

TOP = PixelSNAILConfig(num_codes=16, height=6, width=7, channels=16, blocks=2, res_blocks=1, heads=2,
                       head_dim=8, dropout=0.0, num_classes=3)

BOTTOM = PixelSNAILConfig(num_codes=16, height=6, width=8, channels=16, blocks=2, res_blocks=1, heads=2,
                          head_dim=8, dropout=0.0, cond_num_codes=5, cond_channels=8, cond_res_blocks=1,
                          cond_upsample=2)
BOTTOM_CONV = replace(BOTTOM, attention=False)   # convolutions only, as the named bottom prior
EACH_PRIOR = pytest.mark.parametrize("cfg", [TOP, BOTTOM, BOTTOM_CONV], ids=["top", "bottom", "bottom-conv"])


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    model = PixelSNAIL(cfg).double().eval()
    with torch.no_grad():   # non-zero positions and null slots: nothing is trivially zero
        model.pos.normal_(0, 0.1)
    return model


def _inputs(cfg, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, cfg.num_codes, (batch, cfg.height, cfg.width), generator=g)
    labels = torch.randint(0, cfg.num_classes, (batch,), generator=g) if cfg.num_classes else None
    cond = None
    if cfg.cond_num_codes:
        up = cfg.cond_upsample
        cond = torch.randint(0, cfg.cond_num_codes, (batch, cfg.height // up, cfg.width // up), generator=g)
    return codes, labels, cond


def _input_gradients(model, codes, labels, cond, i, j):
    """|d logits(i, j) / d embedding| per input position (H, W), through the code embeddings."""
    emb = model.embed(codes).detach().requires_grad_()
    hook = model.embed.register_forward_hook(lambda mod, inp, out: emb)
    try:
        model(codes, labels, cond)[:, :, i, j].sum().backward()
    finally:
        hook.remove()
    return emb.grad.abs().sum((0, 3))


@EACH_PRIOR
def test_pixelsnail_logits_never_see_current_or_later_codes(cfg):
    model = _model(cfg)
    codes, labels, cond = _inputs(cfg)
    H, W = cfg.height, cfg.width
    for p in range(H * W):
        i, j = divmod(p, W)
        g = _input_gradients(model, codes, labels, cond, i, j)
        assert torch.all(g.flatten()[p:] == 0), f"logits at {(i, j)} depend on codes at or after it"
        if cfg.attention and p > 0:
            assert torch.all(g.flatten()[:p] > 0), f"logits at {(i, j)} ignore some earlier code"
        if j > 0:   # every prior sees its left neighbour and (convolutions only) the code above
            assert g[i, j - 1] > 0
        if i > 0:
            assert g[i - 1, j] > 0


def test_attention_never_attends_to_current_or_later_positions():
    torch.manual_seed(0)
    attn = CausalAttention(c=6, heads=2, head_dim=4).double()
    H, W = 3, 4
    x = torch.randn(2, 6, H, W, dtype=torch.double, requires_grad=True)
    e = torch.randn(2, 6, H, W, dtype=torch.double, requires_grad=True)
    out = attn(x, e)                                        # (B, L, heads * head_dim)
    for p in range(H * W):
        gx, ge = torch.autograd.grad(out[:, p].sum(), (x, e), retain_graph=True)
        gx, ge = gx.abs().sum((0, 1)).flatten(), ge.abs().sum((0, 1)).flatten()
        assert torch.all(ge[p:] == 0), f"position {p} sees its own code or later ones"
        assert torch.all(gx[p + 1:] == 0), f"position {p} sees later features"
        assert torch.all(ge[:p] > 0), f"position {p} does not attend to every earlier position"
    # the first position attends only to the learned null slot
    assert torch.allclose(out[:, 0], attn.null_kv[1, :, 0].reshape(1, -1).expand(2, -1))


def test_attention_covers_the_convolutions_blind_spot():
    # Causal convolutions only reach up-right as far as their kernels; a code far to the right in
    # the row above is invisible to them (the blind spot) and seen through attention alone.
    cfg = replace(TOP, blocks=1, res_blocks=1, height=4, width=8)
    model = _model(cfg)
    codes, labels, _ = _inputs(cfg)
    far = 1 * cfg.width + 7                                 # (1, 7), seen from (2, 0)
    assert _input_gradients(model, codes, labels, None, 2, 0).flatten()[far] > 0
    with torch.no_grad():
        model.blocks[0].mix.weight.zero_()                  # cut the attention path
    assert _input_gradients(model, codes, labels, None, 2, 0).flatten()[far] == 0
    conv_only = _model(replace(cfg, attention=False))
    assert _input_gradients(conv_only, codes, labels, None, 2, 0).flatten()[far] == 0


@EACH_PRIOR
def test_row_i_depends_on_rows_up_to_i_only(cfg):
    model = _model(cfg)
    codes, labels, cond = _inputs(cfg)
    full = model(codes, labels, cond)
    cmap = model.condition(cond) if cond is not None else None
    for rows in (1, 3):
        cropped = model(codes[:, :rows], labels, None if cmap is None else cmap[:, :, :rows])
        assert torch.allclose(cropped, full[:, :, :rows], atol=1e-10)


@EACH_PRIOR
def test_incremental_sampler_matches_the_full_forward(cfg):
    model = _model(cfg)
    codes, labels, cond = _inputs(cfg, batch=3)
    full = model(codes, labels, cond)
    state = model.start_sampling(3, (cfg.height, cfg.width), labels, cond)
    for i in range(cfg.height):
        for j in range(cfg.width):
            assert torch.allclose(state.step(codes, i, j), full[:, :, i, j], atol=1e-10), (i, j)


def test_a_styled_pixelsnail_samples_incrementally_as_its_forward_and_the_style_matters():
    cfg = replace(TOP, num_styles=4)
    model = _model(cfg)
    codes, labels, _ = _inputs(cfg, batch=3)
    styled = torch.stack([labels, torch.tensor([0, 1, 3])], 1)
    full = model(codes, styled)
    state = model.start_sampling(3, (cfg.height, cfg.width), styled)
    for i in range(cfg.height):
        for j in range(cfg.width):
            assert torch.allclose(state.step(codes, i, j), full[:, :, i, j], atol=1e-10), (i, j)
    assert not torch.allclose(full, model(codes, torch.stack([labels, torch.tensor([2, 2, 2])], 1)))
    assert torch.allclose(model(codes, labels), model(codes, torch.stack([labels, torch.full((3,), 4)], 1)))
    nll, _ = model.train().training_step((codes, styled))
    assert torch.isfinite(nll)


def test_incremental_and_row_cropped_sampling_draw_the_same_codes():
    cfg = BOTTOM
    model = _model(cfg).float()
    _, _, cond = _inputs(cfg, batch=6)
    cmap = model.condition(cond).detach()
    a, b = (sample_codes(model, 6, (cfg.height, cfg.width), cond=cmap, method=m, progress=False,
                         generator=torch.Generator().manual_seed(3)) for m in ("incremental", "crop"))
    assert torch.equal(a, b)


def test_bottom_conditioning_changes_the_distribution():
    # Bottom codes copy the top code above them: a briefly trained bottom prior must use its
    # condition (far lower NLL than with the condition shuffled) and reproduce the rule.
    torch.manual_seed(0)
    cfg = replace(BOTTOM, num_codes=5, height=4, width=4, channels=16, heads=1)
    model = PixelSNAIL(cfg)
    top = torch.randint(0, 5, (256, 2, 2))
    bottom = top.repeat_interleave(2, 1).repeat_interleave(2, 2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        idx = torch.randint(0, 256, (64,))
        loss, logs = model.training_step((bottom[idx], None, top[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    right = model.training_step((bottom, None, top))[0].item()
    wrong = model.training_step((bottom, None, top[torch.randperm(256)]))[0].item()
    assert right < 0.3 and wrong > 1.0, (right, wrong)
    samples = sample_codes(model, 32, (4, 4), cond=model.condition(top[:32]).detach(), progress=False,
                           generator=torch.Generator().manual_seed(0))
    assert (samples == bottom[:32]).float().mean() > 0.9


def test_training_step_takes_codes_labels_cond_as_the_pixelcnn():
    cfg = replace(BOTTOM, num_classes=3)
    model = _model(cfg).float()
    codes, labels, cond = _inputs(cfg, batch=4)
    a, logs = model.training_step((codes, labels, cond))
    b, _ = model.training_step((codes, labels, model.condition(cond)))   # the map instead of the codes
    assert torch.allclose(a, b) and set(logs) == {"nll", "acc"}
    assert abs(logs["nll"] - torch.log(torch.tensor(16.0)).item()) < 1.0   # about uniform at init
    with pytest.raises(ValueError, match="codes, labels"):
        model.training_step((codes, cond, labels))                        # the order is not guessed
    without = _model(BOTTOM).float()                                        # no categories: labels ignored
    assert torch.equal(without.training_step((codes, labels, cond))[0], without.training_step((codes, None, cond))[0])


def test_sample_hierarchical_shapes_and_condition_computed_once_per_batch():
    top_cfg = replace(TOP, num_codes=5, height=3, width=4, num_classes=0)
    bottom_cfg = replace(BOTTOM, cond_num_codes=5, height=6, width=8)
    top, bottom = _model(top_cfg).float(), _model(bottom_cfg).float()
    calls = []
    bottom.condition_net.register_forward_hook(lambda *a: calls.append(1))
    out = sample_hierarchical(top, bottom, 10, shapes=((3, 4), (6, 8)), batch_size=4, progress=False,
                              generator=torch.Generator().manual_seed(0))
    assert out.top.shape == (10, 3, 4) and out.bottom.shape == (10, 6, 8) and out.images is None
    assert out.top.max() < 5 and out.bottom.max() < 16
    assert len(calls) == 3          # ceil(10 / 4) batches, not once per position
    again = sample_hierarchical(top, bottom, 10, shapes=((3, 4), (6, 8)), batch_size=4, progress=False,
                                generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.bottom, again.bottom)


def test_sample_hierarchical_with_a_gated_pixelcnn_bottom_decodes_images():
    # The report's other prior: a gated PixelCNN bottom, conditioned through cond_fn on the top
    # code vectors of the VQ-VAE-2 (computed once per batch as well).
    from helpers.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig
    from helpers.models.vqvae2 import VQVAE2, VQVAE2Config

    torch.manual_seed(0)
    vq = VQVAE2(VQVAE2Config(hidden=16, res_hidden=8, decoder_hidden=16, res_blocks=1, embed_dim=4,
                             num_codes_top=5, num_codes_bottom=16)).eval()
    top = _model(replace(TOP, num_codes=5, height=8, width=8, num_classes=0)).float()
    bottom = GatedPixelCNN(GatedPixelCNNConfig(num_codes=16, hidden=8, layers=2, head_hidden=8,
                                               cond_channels=4)).eval()
    calls = []

    def cond_fn(codes_top):
        calls.append(len(codes_top))
        return vq.top_condition(codes_top)

    out = sample_hierarchical(top, bottom, 5, batch_size=3, cond_fn=cond_fn, vqvae2=vq, progress=False,
                              generator=torch.Generator().manual_seed(0))
    assert calls == [3, 2]
    assert out.bottom.shape == (5, 16, 16) and out.images.shape == (5, 3, 64, 64)
    assert out.images.dtype == torch.uint8


def test_priors_for_a_vqvae2_take_its_code_counts_and_grids():
    from helpers.models.vqvae2 import VQVAE2Config

    vc = VQVAE2Config(num_codes_top=128, num_codes_bottom=300)
    top = PixelSNAIL.for_vqvae2(vc, "top", num_classes=7)
    bottom = PixelSNAIL.for_vqvae2(vc, "bottom", channels=32)
    assert (top.config.num_codes, top.shape, top.config.num_classes) == (128, (8, 8), 7)
    assert (bottom.config.num_codes, bottom.shape, bottom.config.cond_num_codes) == (300, (16, 16), 128)
    assert bottom.config.channels == 32 and top.condition_net is None
    assert top.config == replace(PIXELSNAIL_CONFIGS["top"], num_codes=128, num_classes=7)   # the rest: its level's
    assert top.config.attention and not bottom.config.attention
    with pytest.raises(ValueError, match="level"):
        PixelSNAIL.for_vqvae2(vc, "middle")


def test_pixelsnail_checkpoint_rebuilds_the_same_model(tmp_path):
    from helpers.models.vqvae2 import VQVAE2Config

    model = PixelSNAIL.for_vqvae2(VQVAE2Config(), "bottom", channels=16, cond_channels=8).eval()
    path = save_checkpoint(tmp_path / "pixelsnail_bottom.pt", model)
    ckpt = load_checkpoint(path, expect={"model_class": "PixelSNAIL"})
    rebuilt = build_model(ckpt)
    codes = torch.randint(0, 512, (2, 16, 16))
    top = torch.randint(0, 256, (2, 8, 8))
    assert torch.equal(rebuilt(codes, cond=top), model(codes, cond=top))
    ckpt["model_kwargs"]["attn_dropout"] = 0.0             # a field older versions saved, never set
    assert torch.equal(build_model(ckpt)(codes, cond=top), model(codes, cond=top))


def test_guided_greedy_hierarchical_sampling_takes_the_argmax_of_the_guided_logits_at_both_levels():
    top_cfg = replace(TOP, num_codes=5, height=3, width=4)
    bottom_cfg = replace(BOTTOM, cond_num_codes=5, height=6, width=8, num_classes=3)
    top, bottom = _model(top_cfg).float(), _model(bottom_cfg).float()
    with torch.no_grad():   # categories that matter
        for m in (top, bottom):
            for name, p in m.named_parameters():
                if name.endswith("label.weight"):
                    p.mul_(30)
    labels = torch.tensor([0, 2, 1, 2, 0])
    out = sample_hierarchical(top, bottom, 5, labels=labels, temperature=0, guidance=2.5, bottom_guidance=1.5,
                              shapes=((3, 4), (6, 8)), batch_size=3, progress=False)
    null = torch.full_like(labels, 3)
    with torch.no_grad():
        for model, codes, cond, w in ((top, out.top, None, 2.5), (bottom, out.bottom, out.top, 1.5)):
            given, free = model(codes, labels, cond), model(codes, null, cond)
            assert torch.equal((free + w * (given - free)).argmax(1), codes)
    plain = sample_hierarchical(top, bottom, 5, labels=labels, temperature=0, shapes=((3, 4), (6, 8)),
                                batch_size=3, progress=False)
    assert not torch.equal(plain.top, out.top)
