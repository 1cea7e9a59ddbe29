"""Autoregressive priors over a grid of VQ codes, in raster order.

Papers:
- van den Oord, Kalchbrenner, Kavukcuoglu 2016, "Pixel Recurrent Neural Networks": PixelCNN,
  masked convolutions (mask A at the input excludes the current position, mask B after it
  includes it). Its stack of masked 3x3 convolutions has a blind spot: positions up-right
  of the current one that it never sees.
- van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders": the gated
  PixelCNN. A vertical stack (everything above) and a horizontal stack (everything to the
  left in the current row) remove the blind spot; tanh x sigmoid gates; a class embedding
  added as a bias inside every gate conditions it on a category.

Both models here:
- read codes (B, H, W) long and return logits (B, K, H, W); the logits at (i, j) depend on
  codes strictly before (i, j) in raster order only (tests check this by gradients);
- may be conditioned on a category (``num_classes > 0``; class embedding as a bias in every
  layer), on a style as well (``num_styles > 0``: the vendor; a second embedding added to the
  first, with labels (B, 2)) and on a spatial map ``cond`` (B, cond_channels, H, W), added
  through a 1x1 conv in every layer — generic enough for the VQ-VAE-2 bottom prior, which is
  conditioned on the (embedded, upsampled) top codes;
- depend, at row i, on rows <= i of their inputs only, so a sampler may run them on the
  rows sampled so far (``supports_row_crop``; see helpers/sampling.py);
- offer ``start_sampling(...)``: an incremental evaluator that caches every layer's
  activations and computes, per sampled position, only that position (plus, for the gated
  model, the vertical stack once per row) — one full forward's work per grid instead of one
  per position. Same maths as ``forward`` (tests compare the two).

Their training step (NLL in nats per code), NLL per image and sampling entry are those of every
prior (prior.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .prior import Dropout, Prior, PriorConfig, init_label_embeddings, layer_bias, style_embedding


class _Conditioning(nn.Module):
    """Per-layer bias from a category and a style (embeddings) and/or a spatial map (1x1 conv)."""

    def __init__(self, channels: int, num_classes: int, cond_channels: int, num_styles: int = 0):
        super().__init__()
        # index num_classes is "no category": what label dropout trains, and what labels=None uses
        self.cls = nn.Embedding(num_classes + 1, channels) if num_classes > 0 else None
        self.cond = nn.Conv2d(cond_channels, channels, 1) if cond_channels > 0 else None
        self.style = style_embedding(channels, num_classes, num_styles)
        init_label_embeddings(self.cls, self.style)

    def forward(self, labels, cond):
        return layer_bias(self.cls, self.style, self.cond, labels, cond)

    def at(self, labels, cond, i: int, j: int):
        """The bias at position (i, j) as (B, C) (or 0), for incremental sampling."""
        bias = self(labels, None if cond is None else cond[:, :, i:i + 1, j:j + 1])
        return bias.flatten(1) if torch.is_tensor(bias) else bias


def _head(cfg) -> nn.Sequential:
    """Both PixelCNNs' head: 1x1 convolutions from the last layer's features to the logits."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(cfg.hidden, cfg.head_hidden, 1), nn.ReLU(),
                         nn.Conv2d(cfg.head_hidden, cfg.num_codes, 1))


def _head_at(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A PixelCNN's 1x1 convolution head applied to (B, C) vectors: one position's logits."""
    for m in head:
        x = F.linear(x, m.weight.flatten(1), m.bias) if isinstance(m, nn.Conv2d) else m(x)
    return x


@dataclass
class PixelCNNConfig(PriorConfig):
    """The report's PixelCNN (``dropout`` inside its residual blocks); the gated PixelCNN has the same fields."""

    hidden: int = 128           # channels of the residual stack (gated: of both stacks)
    layers: int = 12            # residual blocks (gated: gated layers, the first one the mask-A layer)
    kernel: int = 3             # kernel of the mask-B convs (gated: of the gated layers after the first)
    first_kernel: int = 7       # kernel of the mask-A input conv (gated: of the first layer): a wide first view
    head_hidden: int = 256      # width of the 1x1 head before the logits
    cond_channels: int = 0      # channels of a spatial condition map (0: none)


# ---- (a) the report's PixelCNN ----------------------------------------------------------------

class MaskedConv2d(nn.Conv2d):
    """A 'same' convolution whose kernel sees only positions before the centre (mask A) or up to
    and including it (mask B), in raster order."""

    def __init__(self, c_in: int, c_out: int, kernel: int, mask_type: str):
        super().__init__(c_in, c_out, kernel, padding=kernel // 2)
        assert mask_type in ("A", "B")
        mask = torch.ones(kernel, kernel)
        c = kernel // 2
        mask[c, c + (mask_type == "B"):] = 0
        mask[c + 1:] = 0
        self.register_buffer("mask", mask[None, None], persistent=False)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class _PixelCNNBlock(nn.Module):
    def __init__(self, cfg: PixelCNNConfig):
        super().__init__()
        self.conv = MaskedConv2d(cfg.hidden, cfg.hidden, cfg.kernel, "B")
        self.norm = nn.BatchNorm2d(cfg.hidden)
        self.drop = Dropout(cfg.dropout)
        self.cond = _Conditioning(cfg.hidden, cfg.num_classes, cfg.cond_channels, cfg.num_styles)

    def forward(self, x, labels, cond):
        return x + self.drop(self.norm(self.conv(F.relu(x)))) + self.cond(labels, cond)


class _PixelCNNSampler:
    """Incremental PixelCNN: zero-padded caches of every layer's input (channels last, so a window
    is a few contiguous runs); at (i, j) each layer reads its (k//2+1) x k window above-and-left
    (the masked taps have zero weight) and writes one position."""

    def __init__(self, model: "PixelCNN", B: int, shape, labels, cond):
        cfg, (H, W) = model.config, shape
        dev, dt = model.embed.weight.device, model.embed.weight.dtype
        self.m, self.labels, self.cond, self.W = model, labels, cond, W
        self.p1, self.p = cfg.first_kernel // 2, cfg.kernel // 2
        p1, p, C = self.p1, self.p, cfg.hidden
        self.emb = torch.zeros(B, H + p1, W + 2 * p1, C, device=dev, dtype=dt)
        # block inputs are cached after their ReLU (relu(0) = 0 keeps the zero padding)
        self.xs = [torch.zeros(B, H + p, W + 2 * p, C, device=dev, dtype=dt) for _ in model.blocks]

        def top_half(conv, k):   # masked kernel rows 0..k//2, flattened in (row, col, channel) order
            return (conv.weight * conv.mask)[:, :, :k // 2 + 1].permute(0, 2, 3, 1).reshape(C, -1)

        self.w_in = top_half(model.input, cfg.first_kernel)
        self.w_blocks = [top_half(b.conv, cfg.kernel) for b in model.blocks]

    def step(self, codes, i: int, j: int):
        m, p1, p, B = self.m, self.p1, self.p, codes.shape[0]
        if i or j:   # the code sampled last enters the embedding cache
            pi, pj = (i, j - 1) if j else (i - 1, self.W - 1)
            self.emb[:, pi + p1, pj + p1] = m.embed(codes[:, pi, pj])
        win = self.emb[:, i:i + p1 + 1, j:j + 2 * p1 + 1].reshape(B, -1)
        x = F.linear(win, self.w_in, m.input.bias) + m.input_cond.at(self.labels, self.cond, i, j)
        for block, buf, w in zip(m.blocks, self.xs, self.w_blocks):
            buf[:, i + p, j + p] = F.relu(x)
            y = F.linear(buf[:, i:i + p + 1, j:j + 2 * p + 1].reshape(B, -1), w, block.conv.bias)
            n = block.norm
            y = F.batch_norm(y, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps)
            x = x + y + block.cond.at(self.labels, self.cond, i, j)
        return _head_at(m.head, x)


@register
class PixelCNN(Prior):
    """The report's PixelCNN: a mask-A input convolution, residual blocks of ReLU, a mask-B
    convolution and BatchNorm (each block adds the conditioning bias), a 1x1 head."""

    config_class = PixelCNNConfig
    sampler_class = _PixelCNNSampler

    def __init__(self, cfg: PixelCNNConfig):
        super().__init__(cfg, cfg.hidden)
        self.input = MaskedConv2d(cfg.hidden, cfg.hidden, cfg.first_kernel, "A")
        self.input_cond = _Conditioning(cfg.hidden, cfg.num_classes, cfg.cond_channels, cfg.num_styles)
        self.blocks = nn.ModuleList([_PixelCNNBlock(cfg) for _ in range(cfg.layers)])
        self.head = _head(cfg)

    def forward(self, codes, labels=None, cond=None):
        labels = self.labels_of(labels, codes)
        x = self.input(self.embed(codes).permute(0, 3, 1, 2)) + self.input_cond(labels, cond)
        for block in self.blocks:
            x = block(x, labels, cond)
        return self.head(x)


# ---- (b) gated PixelCNN, no blind spot --------------------------------------------------------

@dataclass
class GatedPixelCNNConfig(PixelCNNConfig):
    """The gated PixelCNN's fields are the PixelCNN's (see there); its ``dropout`` is on the horizontal
    stack's residual branch."""


class GatedLayer(nn.Module):
    """One gated layer. Vertical stack: a (k//2+1) x k conv over rows <= i (the current row is
    only handed to the horizontal stack after a one-row shift down). Horizontal stack: a
    1 x (k//2+1) conv over columns <= j (< j in the first, mask-A layer, which also has no
    residual connection, since its input holds the current code)."""

    def __init__(self, c: int, k: int, first: bool, num_classes: int, cond_channels: int, dropout: float,
                 num_styles: int = 0):
        super().__init__()
        self.k, self.first = k, first
        self.v_conv = nn.Conv2d(c, 2 * c, (k // 2 + 1, k))
        self.h_conv = nn.Conv2d(c, 2 * c, (1, k // 2 + 1))
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_out = nn.Conv2d(c, c, 1)
        self.v_cond = _Conditioning(2 * c, num_classes, cond_channels, num_styles)
        self.h_cond = _Conditioning(2 * c, num_classes, cond_channels, num_styles)
        self.drop = Dropout(dropout)

    @staticmethod
    def _gate(x):
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, v, h, labels, cond):
        H, W = v.shape[-2:]
        p = self.k // 2
        v_pre = self.v_conv(F.pad(v, (p, p, p, 0)))                        # rows i-p..i, cols j-p..j+p
        v_shift = F.pad(v_pre, (0, 0, 1, 0))[:, :, :H]                      # row i sees rows <= i-1 only
        if self.first:
            h_pre = self.h_conv(F.pad(h, (p + 1, 0, 0, 0)))[..., :W]       # cols j-p-1..j-1
        else:
            h_pre = self.h_conv(F.pad(h, (p, 0, 0, 0)))                    # cols j-p..j
        h_pre = h_pre + self.v_to_h(v_shift) + self.h_cond(labels, cond)
        v_new = self._gate(v_pre + self.v_cond(labels, cond))
        h_new = self.drop(self.h_out(self._gate(h_pre)))
        if not self.first:
            h_new = h + h_new
        return v_new, h_new


class _GatedSampler:
    """Incremental gated PixelCNN. The horizontal stack is computed at (i, j) only, from a cache of
    the current row; the vertical stack of row i once row i is complete (it feeds row i+1).
    Caches are channels last, so a window is one contiguous run."""

    def __init__(self, model: "GatedPixelCNN", B: int, shape, labels, cond):
        cfg, (H, W) = model.config, shape
        dev, dt = model.embed.weight.device, model.embed.weight.dtype
        self.m, self.labels, self.cond, self.W = model, labels, cond, W
        C = cfg.hidden
        self.ps = [layer.k // 2 for layer in model.layers]
        # vertical-stack inputs (rows above and current, zero-padded top/left/right)
        self.V = [torch.zeros(B, H + p, W + 2 * p, C, device=dev, dtype=dt) for p in self.ps]
        # horizontal-stack inputs of the current row (zero-padded left: p+1 for mask A, else p)
        self.Hrow = [torch.zeros(B, W + p + int(layer.first), C, device=dev, dtype=dt)
                     for p, layer in zip(self.ps, model.layers)]
        # v_to_h of the row above, (B, W, 2C) (row 0: of zeros, i.e. the bias)
        self.VH = [layer.v_to_h.bias.view(1, 1, -1).expand(B, W, -1) for layer in model.layers]
        self.w_h = [layer.h_conv.weight.permute(0, 2, 3, 1).reshape(2 * C, -1) for layer in model.layers]

    def _finish_row(self, codes, r: int):
        m, W = self.m, self.W
        v = m.embed(codes[:, r])                                        # (B, W, C)
        c = None if self.cond is None else self.cond[:, :, r:r + 1]
        for l, (layer, p) in enumerate(zip(m.layers, self.ps)):
            self.V[l][:, r + p, p:p + W] = v
            win = self.V[l][:, r:r + p + 1].permute(0, 3, 1, 2)         # (B, C, p+1, W+2p) view
            v_pre = layer.v_conv(win)                                   # (B, 2C, 1, W)
            self.VH[l] = layer.v_to_h(v_pre)[:, :, 0].transpose(1, 2)  # (B, W, 2C)
            v = layer._gate(v_pre + layer.v_cond(self.labels, c))[:, :, 0].transpose(1, 2)

    def step(self, codes, i: int, j: int):
        m, B = self.m, codes.shape[0]
        if j == 0:
            if i > 0:
                self._finish_row(codes, i - 1)
            for buf in self.Hrow:
                buf.zero_()
        else:   # the code sampled last enters the first layer's row cache
            self.Hrow[0][:, j - 1 + self.ps[0] + 1] = m.embed(codes[:, i, j - 1])
        h = None
        for l, (layer, p) in enumerate(zip(m.layers, self.ps)):
            buf = self.Hrow[l]
            if not layer.first:
                buf[:, j + p] = h
            h_pre = F.linear(buf[:, j:j + p + 1].reshape(B, -1), self.w_h[l], layer.h_conv.bias) \
                + self.VH[l][:, j] + layer.h_cond.at(self.labels, self.cond, i, j)
            a, b = h_pre.chunk(2, dim=1)
            out = F.linear(torch.tanh(a) * torch.sigmoid(b), layer.h_out.weight.flatten(1), layer.h_out.bias)
            h = out if layer.first else h + out
        return _head_at(m.head, h)


@register
class GatedPixelCNN(Prior):
    """The gated PixelCNN: a stack of :class:`GatedLayer` (the first one mask A), a 1x1 head on the
    horizontal stack. At 64 px (``for_vqvae2``) the bottom prior, conditioned on the top codes'
    vectors (``VQVAE2.top_condition``), is narrower and shallower: its 16x16 grid costs four
    times the 8x8 top grid per layer."""

    config_class = GatedPixelCNNConfig
    sampler_class = _GatedSampler
    level_configs = {"top": GatedPixelCNNConfig(), "bottom": GatedPixelCNNConfig(hidden=64, layers=10)}

    def __init__(self, cfg: GatedPixelCNNConfig):
        super().__init__(cfg, cfg.hidden)
        self.layers = nn.ModuleList([
            GatedLayer(cfg.hidden, cfg.first_kernel if i == 0 else cfg.kernel, i == 0,
                       cfg.num_classes, cfg.cond_channels, cfg.dropout, cfg.num_styles)
            for i in range(cfg.layers)])
        self.head = _head(cfg)

    def forward(self, codes, labels=None, cond=None):
        labels = self.labels_of(labels, codes)
        v = h = self.embed(codes).permute(0, 3, 1, 2)
        for layer in self.layers:
            v, h = layer(v, h, labels, cond)
        return self.head(h)
