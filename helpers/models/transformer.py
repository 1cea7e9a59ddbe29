"""A small causal transformer over the code grid, in raster order: the third prior family.

Papers:
- Vaswani et al. 2017, "Attention Is All You Need": self-attention, here the decoder only,
  with a causal mask.
- Esser, Rombach, Ommer 2021, "Taming Transformers for High-Resolution Image Synthesis": a
  GPT-style transformer as the prior over a VQ model's code grid, read as a sequence.

The grid (B, H, W) is read as the sequence of its H * W codes. The input at position t is the
embedding of code t - 1 (a start token at t = 0), a learned position embedding and the label
bias (category, and style) that every position shares; pre-norm blocks of causal self-attention
and a GELU MLP follow. So the logits at t depend on codes strictly before t, in raster order
(tests check this by gradients), and the model is a prior like the others (prior.py): logits
(B, K, H, W), the shared training step and NLL, rows <= i only at row i (``supports_row_crop``),
and ``start_sampling``: every layer's keys and values are cached, so a sampling step computes one
position (tests compare it with the full forward).

Unlike a convolution, every position sees the whole grid before it at once, and nothing in the
architecture says that neighbouring codes are related: the position embeddings learn it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .prior import Dropout, Prior, PriorConfig, init_label_embeddings, label_bias, style_embedding


@dataclass
class TransformerPriorConfig(PriorConfig):
    """The transformer prior (``dropout`` on the embeddings and after attention and MLP)."""

    height: int = 8             # the code grid it models (its positions have learned embeddings)
    width: int = 8
    hidden: int = 192           # width of the residual stream
    layers: int = 4             # transformer blocks
    heads: int = 6              # attention heads (hidden must divide by them)
    mlp_ratio: int = 4          # MLP width / hidden


class _Block(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x)); attention over positions <= t, or over every
    position where ``causal`` is False (the masked prior, maskgit.py)."""

    def __init__(self, cfg: TransformerPriorConfig, causal: bool = True):
        super().__init__()
        c = cfg.hidden
        self.heads, self.causal = cfg.heads, causal
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.mlp = nn.Sequential(nn.Linear(c, cfg.mlp_ratio * c), nn.GELU(), nn.Linear(cfg.mlp_ratio * c, c))
        self.drop = Dropout(cfg.dropout)

    def _qkv(self, x):
        """(B, L, C) -> query, key and value, each (B, heads, L, C / heads)."""
        B, L, _ = x.shape
        return self.qkv(self.norm1(x)).view(B, L, 3, self.heads, -1).permute(2, 0, 3, 1, 4)

    def _finish(self, x, attended):
        x = x + self.drop(self.proj(attended.transpose(1, 2).flatten(2)))
        return x + self.drop(self.mlp(self.norm2(x)))

    def forward(self, x):
        q, k, v = self._qkv(x)
        return self._finish(x, F.scaled_dot_product_attention(q, k, v, is_causal=self.causal))

    def step(self, x, keys, values, t: int):
        """Position t alone, (B, 1, C): its key and value go into the caches (B, heads, L, d),
        its query attends to positions 0..t of them."""
        q, k, v = self._qkv(x)
        keys[:, :, t], values[:, :, t] = k[:, :, 0], v[:, :, 0]
        return self._finish(x, F.scaled_dot_product_attention(q, keys[:, :, :t + 1], values[:, :, :t + 1]))


class _TransformerSampler:
    """Incremental transformer: keys and values of every layer cached per position; at (i, j) only
    that position runs through the blocks, its query attending to the cached positions before it."""

    def __init__(self, model: "TransformerPrior", B: int, shape, labels, cond):
        cfg = model.config
        H, W = shape = (cfg.height, cfg.width) if shape is None else shape
        model.check_grid(shape, cond)
        weight = model.embed.weight
        self.m, self.W, self.bias = model, W, label_bias(model.cls, model.style, labels)
        size = (B, cfg.heads, H * W, cfg.hidden // cfg.heads)
        self.keys = [weight.new_zeros(size) for _ in model.blocks]
        self.values = [weight.new_zeros(size) for _ in model.blocks]

    def step(self, codes, i: int, j: int):
        m, t = self.m, i * self.W + j
        if t == 0:
            prev = torch.full((codes.shape[0],), m.config.num_codes, dtype=torch.long, device=codes.device)
        else:
            prev = codes[:, (t - 1) // self.W, (t - 1) % self.W]
        x = (m.embed(prev) + m.pos[t] + self.bias)[:, None]
        for block, keys, values in zip(m.blocks, self.keys, self.values):
            x = block.step(x, keys, values, t)
        return m.head(m.norm(x[:, 0]))


class GridTransformer(Prior):
    """What both transformer priors share (this raster one, and the masked one of maskgit.py):
    code embeddings with one extra index (``num_codes``: the start token here, the mask token there),
    learned positions and the label bias; pre-norm blocks, causal where ``causal`` is set; a final
    LayerNorm and linear head."""

    causal = True

    def __init__(self, cfg: TransformerPriorConfig):
        if cfg.hidden % cfg.heads:
            raise ValueError(f"hidden ({cfg.hidden}) must be a multiple of heads ({cfg.heads})")
        super().__init__(cfg, cfg.hidden, extra_codes=1)
        self.pos = nn.Parameter(torch.randn(cfg.height * cfg.width, cfg.hidden) * 0.02)
        # index num_classes (num_styles) is "none": what label dropout trains, and what labels=None uses
        self.cls = nn.Embedding(cfg.num_classes + 1, cfg.hidden) if cfg.num_classes > 0 else None
        self.style = style_embedding(cfg.hidden, cfg.num_classes, cfg.num_styles)
        init_label_embeddings(self.cls, self.style)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([_Block(cfg, causal=self.causal) for _ in range(cfg.layers)])
        self.norm = nn.LayerNorm(cfg.hidden)
        self.head = nn.Linear(cfg.hidden, cfg.num_codes)
        for module in self.modules():   # GPT-2's initialisation: small weights, a near-uniform start
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.embed.weight, std=0.02)

    def _logits(self, x, codes, labels):
        """The embedded input x (B, H * W, C) of ``codes`` (B, H, W) with the label bias, through the
        blocks and the head -> logits (B, K, H, W)."""
        B, H, W = codes.shape
        bias = label_bias(self.cls, self.style, self.labels_of(labels, codes))
        x = self.drop(x + bias[:, None] if torch.is_tensor(bias) else x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)).transpose(1, 2).reshape(B, self.config.num_codes, H, W)


@register
class TransformerPrior(GridTransformer):
    """The raster transformer: the input at position t is code t - 1, a start token at t = 0
    (module doc)."""

    config_class = TransformerPriorConfig
    sampler_class = _TransformerSampler

    def check_grid(self, shape, cond) -> None:
        """A grid of the configured width and at most its height (the first rows, for row-cropped
        sampling); no spatial condition (this family is a one-level prior)."""
        cfg, (H, W) = self.config, tuple(shape)
        if W != cfg.width or H > cfg.height:
            raise ValueError(f"this transformer prior models {cfg.height}x{cfg.width} grids, not {H}x{W}")
        if cond is not None:
            raise ValueError("the transformer prior takes no spatial condition (cond)")

    def forward(self, codes, labels=None, cond=None):
        _, H, W = codes.shape
        self.check_grid((H, W), cond)
        seq = codes.flatten(1)
        start = torch.full_like(seq[:, :1], self.config.num_codes)
        return self._logits(self.embed(torch.cat([start, seq[:, :-1]], 1)) + self.pos[:H * W], codes, labels)


__all__ = ["GridTransformer", "TransformerPrior", "TransformerPriorConfig"]
