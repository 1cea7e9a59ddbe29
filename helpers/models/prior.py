"""What every prior over a code grid shares: its config fields, its training step, its NLL per
image and its sampling entry (:class:`Prior`, :class:`PriorConfig`), and the pieces its layers
condition and regularise with.

A prior maps codes (B, H, W) long to logits (B, K, H, W), the logits at (i, j) depending on codes
strictly before (i, j) in raster order only, optionally given labels (a category, or a category
and a style: :func:`prepare_labels`) and a spatial condition ``cond``. Each family (pixelcnn.py,
pixelsnail.py, transformer.py) brings its network (``forward``) and its incremental evaluator
(``sampler_class``); everything else is here. The masked prior (maskgit.py) is the exception that
has no reading order: it brings its own training step and is drawn in rounds. The families are listed in
``helpers.models.PRIOR_FAMILIES``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import Configurable


@dataclass
class PriorConfig:
    """The fields every prior has; each family's config adds its own after them."""

    num_codes: int = 512         # K: the codebook size of the codes modelled (logits per position)
    num_classes: int = 0         # categories to condition on (0: unconditional)
    num_styles: int = 0          # styles (the vendor) to condition on as well (0: none; needs categories)
    label_dropout: float = 0.1   # share of training labels replaced by "none": then labels=None samples
                                 # unconditionally and classifier-free guidance has its contrast
    dropout: float = 0.1         # inside the network (each family says where): few images, priors overfit
    token_dropout: float = 0.0   # share of input codes replaced by random ones in training (corrupt_codes):
                                 # a lever against over-fitting that the chain's priors do without


class Prior(Configurable, nn.Module):
    """Base of every prior: its code embedding ``embed``, ``training_step`` (NLL in nats per code),
    ``nll_per_image`` and ``start_sampling``. A family sets ``config_class`` and ``sampler_class``
    (its incremental evaluator: ``sampler_class(model, n, shape, labels, cond).step(codes, i, j)``
    -> logits (n, K) at (i, j), see helpers/sampling.py) and brings ``forward``."""

    config_class: type = PriorConfig
    sampler_class: type
    supports_row_crop = True   # output at row i depends on input rows <= i only
    # Cross-entropy over (B*H*W, K) rows instead of the (B, K, H, W) map: for a family whose logits
    # are (B, H, W, K) in memory, the rows are a free view and the kernels over them faster on CPU.
    loss_over_rows = False
    # The family's config of each level of a VQ-VAE-2 ("top", "bottom"), for for_vqvae2; none: it
    # has no 64 px prior.
    level_configs: dict = {}

    def __init__(self, config, channels: int, extra_codes: int = 0):
        """``embed``: the codes as ``channels``-wide vectors, the network's first parameters, with
        ``extra_codes`` indices past the codebook for a family that needs them (a start token)."""
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.num_codes + extra_codes, channels)

    @classmethod
    def for_vqvae2(cls, vqvae2, level: str, image_size: int = 64, **overrides):
        """This family's prior of ``level`` ("top" or "bottom") over the codes of ``vqvae2`` (a VQVAE2
        or its config) at ``image_size`` px: the level's config (``level_configs``) with the sizes
        :meth:`level_fields` takes from ``vqvae2``; ``overrides`` change any other field."""
        if level not in cls.level_configs:
            raise ValueError(f"{cls.__name__} has no prior of level {level!r}; its levels: {list(cls.level_configs)}")
        fields = cls.level_fields(getattr(vqvae2, "config", vqvae2), level, image_size)
        return cls(replace(cls.level_configs[level], **{**fields, **overrides}))

    @staticmethod
    def level_fields(vqvae2_config, level: str, image_size: int) -> dict:
        """The config fields a VQ-VAE-2 sets for a prior of ``level``: its code count and, for the
        bottom, the channels of ``VQVAE2.top_condition``, the map it is conditioned on."""
        if level == "top":
            return {"num_codes": vqvae2_config.num_codes_top}
        return {"num_codes": vqvae2_config.num_codes_bottom, "cond_channels": vqvae2_config.embed_dim}

    def labels_of(self, labels, codes: torch.Tensor):
        """``labels`` as this prior's embeddings read them for a batch of ``codes`` (:func:`prepare_labels`;
        in training, with label dropout)."""
        return prepare_labels(self.config, labels, codes.shape[0], codes.device, self.training)

    def unpack(self, batch) -> tuple:
        """``(codes[, labels[, cond]])`` -> codes (long), labels (None for an unconditional prior)
        and cond (None, a float map, or codes a family turns into one); a batch in another order
        stops here instead of failing deep inside or training on the wrong input."""
        codes = batch[0].long()
        labels = batch[1] if len(batch) > 1 and self.config.num_classes > 0 else None
        cond = batch[2] if len(batch) > 2 else None
        if (labels is not None and labels.dim() not in (1, 2)) or (cond is not None and cond.dim() < 3):
            raise ValueError("a prior's batch is (codes, labels (B,) or (B, 2), cond (B, C, H, W) or (B, h, w)), "
                             f"got shapes {[None if t is None else tuple(t.shape) for t in batch]}")
        if cond is not None and cond.is_floating_point():
            cond = cond.float()
        return codes, labels, cond

    def training_step(self, batch) -> tuple[torch.Tensor, dict]:
        codes, labels, cond = self.unpack(batch)
        inputs = corrupt_codes(codes, self.config.token_dropout, self.config.num_codes) if self.training else codes
        logits = self(inputs, labels, cond).float()
        if self.loss_over_rows:
            logits, codes = logits.permute(0, 2, 3, 1).reshape(-1, self.config.num_codes), codes.reshape(-1)
        nll = F.cross_entropy(logits, codes)   # nats per code
        # argmax over fp32: faster on CPU than over bf16 (docs/EXPERIMENTS.md, "Performance notes")
        with torch.no_grad():
            acc = (logits.argmax(1) == codes).float().mean()
        return nll, {"nll": nll.detach(), "acc": acc.detach()}   # read by the Trainer at its log points

    @torch.no_grad()
    def nll_per_image(self, codes, labels=None, cond=None) -> torch.Tensor:
        """Sum of the per-code NLLs of each image (nats), for likelihood-based analysis."""
        logits = self(codes.long(), labels, cond).float()
        return F.cross_entropy(logits, codes.long(), reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def start_sampling(self, n: int, shape=None, labels=None, cond=None):
        """An incremental evaluator of ``n`` grids of ``shape`` (None: the family's own grid, where it
        has one): ``state.step(codes, i, j) -> logits (n, K)`` at (i, j), called in raster order after
        the codes before (i, j) are filled in (see helpers/sampling.py)."""
        labels = prepare_labels(self.config, labels, n, self.embed.weight.device, False)
        return self.sampler_class(self, n, None if shape is None else tuple(shape), labels, cond)


# ---- conditioning and regularisation, shared by the families' layers ---------------------------

class Dropout(nn.Dropout):
    """nn.Dropout with its mask drawn by ``torch.rand_like``: the same distribution at about half
    the cost of ``bernoulli_`` on CPU, where the masks are a noticeable share of a bottom
    PixelSNAIL's step (docs/PERFORMANCE.md). Keeps the input's memory format."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0
        keep = torch.rand_like(x, dtype=torch.float32).ge_(self.p)
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))


def style_embedding(channels: int, num_classes: int, num_styles: int):
    """The style (vendor) embedding of a conditioned layer, or None; its last index means "none"."""
    return nn.Embedding(num_styles + 1, channels) if num_classes > 0 and num_styles > 0 else None


def init_label_embeddings(*embeddings) -> None:
    """Small label embeddings: a conditioned prior starts close to the unconditional one."""
    for e in embeddings:
        if e is not None:
            nn.init.normal_(e.weight, std=0.1)


def label_bias(cls, style, labels):
    """The (B, C) bias of labels from :func:`prepare_labels` ((B,) categories or (B, 2) category and
    style), or 0 without them."""
    if cls is None or labels is None:
        return 0
    if labels.ndim == 1:
        return cls(labels)
    bias = cls(labels[:, 0])
    return bias + style(labels[:, 1]) if style is not None else bias


def layer_bias(cls, style, conv, labels, cond):
    """A conditioned layer's bias: its labels' (B, C, 1, 1) (:func:`label_bias`) plus the spatial map
    ``cond`` through the 1x1 convolution ``conv`` (B, C, H, W), or 0 without either."""
    bias = label_bias(cls, style, labels)
    if torch.is_tensor(bias):
        bias = bias[:, :, None, None]
    if conv is not None and cond is not None:
        bias = bias + conv(cond)
    return bias


def prepare_labels(cfg, labels, batch: int, device, training: bool):
    """Labels as the embeddings read them, for a prior config with ``num_classes`` (and
    ``num_styles``, ``label_dropout``): None without categories; else (B,) categories, or (B, 2)
    category and style columns when the prior has styles. ``labels``: None, one category, (B,)
    categories (any style) or (B, 2). In training each column is replaced by its "none" index
    with probability ``label_dropout``, so that guidance and unconditional sampling work."""
    num_classes, num_styles = cfg.num_classes, cfg.num_styles
    if num_classes <= 0:
        return None
    if labels is None:
        labels = torch.full((batch,), num_classes, dtype=torch.long, device=device)
        return torch.stack([labels, torch.full_like(labels, num_styles)], 1) if num_styles > 0 else labels
    labels = torch.as_tensor(labels, device=device).long()
    if labels.ndim == 0:   # one category for the whole batch
        labels = labels.expand(batch)
    if labels.ndim == 2 and num_styles <= 0:
        raise ValueError("(category, style) labels given to a prior without styles (num_styles 0)")
    if labels.ndim == 1 and num_styles > 0:
        labels = torch.stack([labels, torch.full_like(labels, num_styles)], 1)
    if training and cfg.label_dropout > 0:
        drop = torch.rand(batch, device=device) < cfg.label_dropout
        if labels.ndim == 1:
            return torch.where(drop, torch.full_like(labels, num_classes), labels)
        drop_style = torch.rand(batch, device=device) < cfg.label_dropout
        labels = torch.stack([torch.where(drop, torch.full_like(labels[:, 0], num_classes), labels[:, 0]),
                              torch.where(drop_style, torch.full_like(labels[:, 1], num_styles), labels[:, 1])], 1)
    return labels


def corrupt_codes(codes: torch.Tensor, share: float, num_codes: int) -> torch.Tensor:
    """``codes`` with each replaced by a uniformly drawn code with probability ``share``: token
    dropout, for the inputs of a prior in training (the targets stay the true codes). A code only
    enters the predictions of the positions after it, so this blurs the context a prediction
    reads, never its target."""
    if share <= 0:
        return codes
    noise = torch.randint_like(codes, num_codes)
    return torch.where(torch.rand(codes.shape, device=codes.device) < share, noise, codes)


__all__ = ["Prior", "PriorConfig", "Dropout", "style_embedding", "init_label_embeddings", "label_bias", "layer_bias",
           "prepare_labels", "corrupt_codes"]
