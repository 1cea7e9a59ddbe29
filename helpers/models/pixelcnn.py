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

``training_step`` returns the NLL in nats per code (mean cross-entropy).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import Configurable, register


# ---- shared pieces ----------------------------------------------------------------------------

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


def prepare_labels(cfg, labels, batch: int, device, training: bool):
    """Labels as the embeddings read them, for a prior config with ``num_classes`` (and
    ``num_styles``, ``label_dropout``): None without categories; else (B,) categories, or (B, 2)
    category and style columns when the prior has styles. ``labels``: None, one category, (B,)
    categories (any style) or (B, 2). In training each column is replaced by its "none" index
    with probability ``label_dropout``, so that guidance and unconditional sampling work."""
    num_classes, num_styles = cfg.num_classes, getattr(cfg, "num_styles", 0)
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
        bias = label_bias(self.cls, self.style, labels)
        if torch.is_tensor(bias):
            bias = bias[:, :, None, None]
        if self.cond is not None and cond is not None:
            bias = bias + self.cond(cond)
        return bias

    def at(self, labels, cond, i: int, j: int):
        """The bias at position (i, j) as (B, C) (or 0), for incremental sampling."""
        bias = self(labels, None if cond is None else cond[:, :, i:i + 1, j:j + 1])
        return bias.flatten(1) if torch.is_tensor(bias) else bias


def _head_at(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A PixelCNN's 1x1 convolution head applied to (B, C) vectors: one position's logits."""
    for m in head:
        x = F.linear(x, m.weight.flatten(1), m.bias) if isinstance(m, nn.Conv2d) else m(x)
    return x


class _PriorMixin(Configurable):
    """What the PixelCNNs and the transformer share: the training step, sampling entry and NLL per image."""

    supports_row_crop = True   # output at row i depends on input rows <= i only

    def training_step(self, batch) -> tuple[torch.Tensor, dict]:
        codes = batch[0].long()
        labels = batch[1] if len(batch) > 1 and self.config.num_classes > 0 else None
        cond = batch[2].float() if len(batch) > 2 else None
        inputs = corrupt_codes(codes, self.config.token_dropout, self.config.num_codes) if self.training else codes
        logits = self(inputs, labels, cond).float()
        nll = F.cross_entropy(logits, codes)   # nats per code
        # argmax over fp32: faster on CPU than over bf16 (docs/EXPERIMENTS.md, "Performance notes")
        with torch.no_grad():
            acc = (logits.argmax(1) == codes).float().mean()
        return nll, {"nll": nll.item(), "acc": acc.item()}

    def start_sampling(self, batch: int, shape, labels=None, cond=None):
        """An incremental evaluator: ``state.step(codes, i, j) -> logits (B, K)`` at (i, j), called
        in raster order after codes before (i, j) are filled in (see helpers/sampling.py)."""
        labels = prepare_labels(self.config, labels, batch, self.embed.weight.device, False)
        return self._sampler_class(self, batch, tuple(shape), labels, cond)

    @torch.no_grad()
    def nll_per_image(self, codes, labels=None, cond=None) -> torch.Tensor:
        """Sum of the per-code NLLs of each image (nats), for likelihood-based analysis."""
        logits = self(codes.long(), labels, cond).float()
        return F.cross_entropy(logits, codes.long(), reduction="none").flatten(1).sum(1)


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


@dataclass
class PixelCNNConfig:
    num_codes: int = 512        # K, size of the VQ codebook (logits per position)
    hidden: int = 128           # channels of the residual stack
    layers: int = 12            # residual blocks (ReLU + 3x3 mask-B conv + BatchNorm)
    kernel: int = 3             # kernel of the mask-B convs
    first_kernel: int = 7       # kernel of the mask-A input conv
    head_hidden: int = 256      # width of the 1x1 head before the logits
    num_classes: int = 0        # categories to condition on (0: unconditional)
    num_styles: int = 0         # styles (the vendor) to condition on as well (0: none; needs categories)
    label_dropout: float = 0.0  # share of training labels replaced by "no category" (then labels=None works)
    cond_channels: int = 0      # channels of a spatial condition map (0: none)
    dropout: float = 0.0        # dropout inside the residual blocks
    token_dropout: float = 0.0  # share of input codes replaced by random ones in training (corrupt_codes)


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
class PixelCNN(_PriorMixin, nn.Module):
    config_class = PixelCNNConfig
    _sampler_class = _PixelCNNSampler

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        self.config = cfg = config
        self.embed = nn.Embedding(cfg.num_codes, cfg.hidden)
        self.input = MaskedConv2d(cfg.hidden, cfg.hidden, cfg.first_kernel, "A")
        self.input_cond = _Conditioning(cfg.hidden, cfg.num_classes, cfg.cond_channels, cfg.num_styles)
        self.blocks = nn.ModuleList([_PixelCNNBlock(cfg) for _ in range(cfg.layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(cfg.hidden, cfg.head_hidden, 1), nn.ReLU(),
                                  nn.Conv2d(cfg.head_hidden, cfg.num_codes, 1))

    def forward(self, codes, labels=None, cond=None):
        cfg = self.config
        labels = prepare_labels(cfg, labels, codes.shape[0], codes.device, self.training)
        x = self.embed(codes).permute(0, 3, 1, 2)
        x = self.input(x) + self.input_cond(labels, cond)
        for block in self.blocks:
            x = block(x, labels, cond)
        return self.head(x)


# ---- (b) gated PixelCNN, no blind spot --------------------------------------------------------

@dataclass
class GatedPixelCNNConfig:
    num_codes: int = 512        # K, size of the VQ codebook (logits per position)
    hidden: int = 128           # channels of both stacks
    layers: int = 12            # gated layers (the first one is the mask-A layer)
    kernel: int = 3             # kernel of the gated layers after the first
    first_kernel: int = 7       # kernel of the first gated layer (a wide first view, as in the paper)
    head_hidden: int = 256      # width of the 1x1 head before the logits
    num_classes: int = 0        # categories to condition on (0: unconditional)
    num_styles: int = 0         # styles (the vendor) to condition on as well (0: none; needs categories)
    label_dropout: float = 0.0  # share of training labels replaced by "no category" (then labels=None works)
    cond_channels: int = 0      # channels of a spatial condition map (0: none)
    dropout: float = 0.0        # dropout on the horizontal stack's residual branch
    token_dropout: float = 0.0  # share of input codes replaced by random ones in training (corrupt_codes)


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
class GatedPixelCNN(_PriorMixin, nn.Module):
    config_class = GatedPixelCNNConfig
    _sampler_class = _GatedSampler

    def __init__(self, config: GatedPixelCNNConfig):
        super().__init__()
        self.config = cfg = config
        self.embed = nn.Embedding(cfg.num_codes, cfg.hidden)
        self.layers = nn.ModuleList([
            GatedLayer(cfg.hidden, cfg.first_kernel if i == 0 else cfg.kernel, i == 0,
                       cfg.num_classes, cfg.cond_channels, cfg.dropout, cfg.num_styles)
            for i in range(cfg.layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(cfg.hidden, cfg.head_hidden, 1), nn.ReLU(),
                                  nn.Conv2d(cfg.head_hidden, cfg.num_codes, 1))

    def forward(self, codes, labels=None, cond=None):
        cfg = self.config
        labels = prepare_labels(cfg, labels, codes.shape[0], codes.device, self.training)
        x = self.embed(codes).permute(0, 3, 1, 2)
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, labels, cond)
        return self.head(h)
