"""PixelSNAIL: an autoregressive prior that mixes causal convolutions with causal self-attention.

Papers:
- Chen, Mishra, Rohaninejad, Abbeel 2018, "PixelSNAIL: An Improved Autoregressive Generative
  Model": blocks of gated residual causal convolutions, each followed by a causal self-attention
  layer whose keys and values also see the raw input, so every position can look at *every*
  earlier one (a stack of causal convolutions has a finite, blind-spotted receptive field).
- Razavi, van den Oord, Vinyals 2019, "Generating Diverse High-Fidelity Images with VQ-VAE-2":
  PixelSNAIL as the prior of the top codes, and a bottom prior conditioned on the top codes
  through a small ResNet over them, upsampled to the bottom grid and added in every layer.

Causality (raster order; tests check it by gradients):
- the input convolution is *strict*: its output at p = (i, j) sees codes at positions < p only
  (a (k//2+1) x k kernel over rows i-k//2..i with the current row masked from column j on);
- every later convolution may include p itself (masked from column j+1 on): its input at p was
  computed from codes < p. The blind spot of such a stack (up-right of p) is covered by attention;
  without attention (``attention=False``, the named bottom prior) a position sees the codes
  within the convolutions' reach only;
- attention: queries come from the features at p, keys and values from [features, code
  embedding] at positions strictly before p, plus one learned "null" key/value so that the first
  position (which has nothing before it) attends to something.

Consequences used by the samplers:
- output row i depends on input rows <= i only (``supports_row_crop``, see helpers/sampling.py);
- every layer's output at p depends on layer inputs at positions <= p only, so sampling can
  compute one position at a time from caches (``start_sampling``): work per sampled code is one
  position's worth of the network instead of the whole grid (exact: tests compare both).

Conditioning: a category (``num_classes > 0``; embedding -> bias in every gate; index
``num_classes`` means "no category", which ``label_dropout`` trains and ``labels=None`` uses), a
style (``num_styles > 0``: the vendor, a second embedding added to the first) and,
for the bottom prior, the top codes (``cond_num_codes > 0``). ``condition(top_codes)`` computes the
conditioning map once; ``forward`` takes either the top codes (long, (B, h, w)) or that map
(float, (B, cond_channels, H, W)), so samplers compute it once per batch, never per position.

The training step (a batch ``(codes[, labels[, cond]])``, cond the top codes or their map; NLL
in nats per code), NLL per image and sampling entry are those of every prior (prior.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .prior import Dropout, Prior, PriorConfig, init_label_embeddings, layer_bias, style_embedding
from .vqvae import ResBlock


@dataclass
class PixelSNAILConfig(PriorConfig):
    """PixelSNAIL (``dropout`` inside its gated residual blocks); the defaults are the top prior's
    at 64 px (an 8x8 grid), sized for minutes of CPU training."""

    height: int = 8               # grid rows (8: top codes, 16: bottom codes at 64x64)
    width: int = 8                # grid columns
    channels: int = 128           # C: width of the residual stream
    blocks: int = 4               # PixelSNAIL blocks (gated residual blocks + causal attention)
    res_blocks: int = 2           # gated residual blocks per PixelSNAIL block
    kernel: int = 3               # width of the causal convolutions ((k//2+1) x k kernels)
    first_kernel: int = 5         # width of the strictly causal input convolution
    attention: bool = True        # causal self-attention after each block's residual blocks
    heads: int = 4                # attention heads
    head_dim: int = 32            # query/key/value size per head
    cond_num_codes: int = 0       # codebook size of the conditioning (top) codes; 0: no spatial condition
    cond_channels: int = 64       # channels of the conditioning ResNet
    cond_res_blocks: int = 2      # its residual blocks
    cond_upsample: int = 2        # conditioning grid -> this grid (top 8x8 -> bottom 16x16: 2)


# The two levels at 64x64 (their code counts and grids come from the VQ-VAE-2: for_vqvae2). The
# bottom prior (16x16, conditioned on the 8x8 top codes) is narrower, shallower and has no
# attention: its 16x16 attention layers cost a large share of a step, and without them it trained
# faster to a lower val NLL in equal time (docs/EXPERIMENTS.md, "The priors"). Most of what a
# bottom code needs is local and the top codes bring the rest.
PIXELSNAIL_CONFIGS = {
    "top": PixelSNAILConfig(),
    "bottom": PixelSNAILConfig(channels=64, blocks=2, attention=False),
}


def _act(x):
    # The paper uses ELU; SiLU is as smooth and much cheaper on CPU in bf16 (docs/PERFORMANCE.md).
    return F.silu(x)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C) in raster order; free when x is channels-last in memory (the
    code embedding and every block output are)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


def _attend(q, k, v, mask):
    """Masked attention. For short sequences (the 8x8 top grid) explicit matrix products are
    faster on CPU than the fused kernel; for 16x16 the fused kernel wins, and in fp32: its bf16
    version is slower on CPU than the casts around it (docs/PERFORMANCE.md)."""
    if q.shape[-2] > 128:
        with torch.autocast(q.device.type, enabled=False):   # autocast would cast back to bf16
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
        return out.to(q.dtype)
    s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    w = s.masked_fill(~mask, float("-inf")).softmax(-1, dtype=torch.promote_types(s.dtype, torch.float32))
    return w.to(v.dtype) @ v


# ---- causal convolution -----------------------------------------------------------------------

class CausalConv2d(nn.Conv2d):
    """A (k//2+1) x k convolution over rows i-k//2..i and columns j-k//2..j+k//2, the current row
    masked to columns < j (``strict``) or <= j. Zero padding above and at the sides: output
    (B, C_out, H, W) for input (B, C_in, H, W)."""

    def __init__(self, c_in: int, c_out: int, k: int, strict: bool):
        assert k % 2 == 1, "kernel width must be odd"
        super().__init__(c_in, c_out, (k // 2 + 1, k))
        mask = torch.ones(k // 2 + 1, k)
        mask[-1, k // 2 + (0 if strict else 1):] = 0
        self.register_buffer("mask", mask[None, None], persistent=False)
        self.pad = (k // 2, k // 2, k // 2, 0)   # left, right, top, bottom

    def forward(self, x):
        return F.conv2d(F.pad(x, self.pad), self.weight * self.mask, self.bias)

    # -- one position at a time (sampling) --
    # Caches are channels-last (n, H + kh - 1, W + kw - 1, C_in): a patch is n * kh contiguous
    # runs of kw * C_in numbers, so gathering it is a fast copy (channels-first made the gather
    # half of the sampling time).
    def new_cache(self, n: int, H: int, W: int, like: torch.Tensor) -> torch.Tensor:
        """Zero-padded input map that :meth:`write` fills position by position."""
        kh, kw = self.kernel_size
        return like.new_zeros(n, H + kh - 1, W + kw - 1, self.in_channels)

    def write(self, cache: torch.Tensor, i: int, j: int, value: torch.Tensor) -> None:
        kh, kw = self.kernel_size
        cache[:, i + kh - 1, j + kw // 2] = value

    def at(self, cache: torch.Tensor, i: int, j: int, weight: torch.Tensor) -> torch.Tensor:
        """Output at (i, j) -> (n, C_out); ``weight`` from :meth:`flat_weight`."""
        kh, kw = self.kernel_size
        patch = cache[:, i:i + kh, j:j + kw].reshape(cache.shape[0], -1)
        return F.linear(patch, weight, self.bias)

    def flat_weight(self) -> torch.Tensor:
        """Masked weight as (C_out, kh * kw * C_in), in the order of a channels-last patch."""
        return (self.weight * self.mask).permute(0, 2, 3, 1).reshape(self.out_channels, -1)


# ---- gated residual block -----------------------------------------------------------------------

class GatedResBlock(nn.Module):
    """x + a * sigmoid(g), [a, g] = conv(dropout(act(conv(act(x))))) + condition biases."""

    def __init__(self, c: int, k: int, dropout: float, num_classes: int, cond_channels: int, num_styles: int = 0):
        super().__init__()
        self.conv1 = CausalConv2d(c, c, k, strict=False)
        self.conv2 = CausalConv2d(c, 2 * c, k, strict=False)
        self.drop = Dropout(dropout)
        self.label = nn.Embedding(num_classes + 1, 2 * c) if num_classes > 0 else None
        self.cond = nn.Conv2d(cond_channels, 2 * c, 1) if cond_channels > 0 else None
        self.style = style_embedding(2 * c, num_classes, num_styles)
        init_label_embeddings(self.label, self.style)

    def bias(self, labels, cond):
        """Per-image (B, 2C, 1, 1) and per-position (B, 2C, H, W) biases of the gate."""
        return layer_bias(self.label, self.style, self.cond, labels, cond)

    @staticmethod
    def gate(x, h):
        a, g = h.chunk(2, 1)
        return x + a * torch.sigmoid(g)

    def forward(self, x, labels, cond):
        h = self.conv1(_act(x))
        h = self.conv2(self.drop(_act(h)))
        return self.gate(x, h + self.bias(labels, cond))


# ---- causal self-attention ------------------------------------------------------------------

class CausalAttention(nn.Module):
    """Multi-head attention over the raster order: position p attends to the null slot and to
    positions < p. Queries from the features x, keys/values from [x, e] (e: code embeddings)."""

    def __init__(self, c: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.q = nn.Linear(c, heads * head_dim)
        self.kv = nn.Linear(2 * c, 2 * heads * head_dim)
        self.null_kv = nn.Parameter(torch.randn(2, heads, 1, head_dim) * 0.02)

    @staticmethod
    def mask(L: int, device) -> torch.Tensor:
        """(L, L + 1) bool, True = may attend: column 0 is the null slot, column 1 + q is position q."""
        p = torch.arange(L, device=device)
        allowed = p[None, :] < p[:, None]
        return torch.cat([torch.ones(L, 1, dtype=torch.bool, device=device), allowed], 1)

    def split_kv(self, xe: torch.Tensor):
        """(..., 2C) -> keys, values (..., heads, head_dim)."""
        kv = self.kv(xe).unflatten(-1, (2, self.heads, self.head_dim))
        return kv[..., 0, :, :], kv[..., 1, :, :]

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x, e (B, C, H, W) -> (B, L, heads * head_dim), L = H * W in raster order."""
        B, C, H, W = x.shape
        L = H * W
        xs, es = _rows(x), _rows(e)                                                 # (B, L, C)
        q = self.q(xs).unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # (B, h, L, d)
        k, v = self.split_kv(torch.cat([xs, es.to(xs.dtype)], -1))
        null_k, null_v = (t.to(q.dtype).expand(B, -1, -1, -1) for t in self.null_kv)
        k = torch.cat([null_k, k.transpose(1, 2)], 2)                              # (B, h, L+1, d)
        v = torch.cat([null_v, v.transpose(1, 2)], 2)
        out = _attend(q, k, v, self.mask(L, x.device))
        return out.transpose(1, 2).reshape(B, L, -1)


class SNAILBlock(nn.Module):
    """Gated residual blocks, then causal attention mixed back in through a 1x1 layer."""

    def __init__(self, cfg: PixelSNAILConfig, cond_channels: int):
        super().__init__()
        c = cfg.channels
        self.res = nn.ModuleList([GatedResBlock(c, cfg.kernel, cfg.dropout, cfg.num_classes, cond_channels,
                                                 cfg.num_styles)
                                  for _ in range(cfg.res_blocks)])
        self.attn = CausalAttention(c, cfg.heads, cfg.head_dim) if cfg.attention else None
        self.mix = nn.Linear(c + cfg.heads * cfg.head_dim, c) if cfg.attention else None

    def forward(self, x, e, labels, cond):
        for r in self.res:
            x = r(x, labels, cond)
        if self.attn is None:
            return x
        B, C, H, W = x.shape
        a = self.attn(x, e)
        xs = _rows(x)
        xs = xs + self.mix(_act(torch.cat([xs, a.to(xs.dtype)], -1)))
        return xs.view(B, H, W, C).permute(0, 3, 1, 2)     # channels-last in memory, as the convs like


class ConditionNet(nn.Module):
    """Top codes (B, h, w) -> conditioning map (B, C_c, h * up, w * up): embedding, 3x3 conv,
    residual blocks, stride-2 transposed convolutions (one per factor 2)."""

    def __init__(self, num_codes: int, channels: int, res_blocks: int, upsample: int):
        super().__init__()
        n_up = int(round(math.log2(upsample)))
        assert 2 ** n_up == upsample, "cond_upsample must be 1, 2, 4, ..."
        self.embed = nn.Embedding(num_codes, channels)
        layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, padding=1)]
        layers += [ResBlock(channels, channels) for _ in range(res_blocks)]
        for _ in range(n_up):
            layers += [nn.ReLU(), nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)]
        layers += [nn.SiLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, codes):
        return self.net(self.embed(codes).permute(0, 3, 1, 2))


# ---- sampling one position at a time --------------------------------------------------------

class IncrementalSampler:
    """Fills a grid in raster order with one position's worth of work per code.

    Each convolution keeps its (zero-padded) input map; each attention layer keeps the keys and
    values of the positions sampled so far. ``step(codes, i, j)`` first records the code sampled
    at the previous position (its embedding feeds the input convolution and the attention
    keys/values), then computes every layer at (i, j) only, writing each layer's input there into
    its cache. Model in eval mode: the logits equal ``model(codes)[:, :, i, j]`` up to rounding.
    The conditioning map and every per-position bias are computed here, once. Made by
    ``model.start_sampling`` (prior.py), which prepares the labels.
    """

    def __init__(self, model: PixelSNAIL, n: int, shape=None, labels=None, cond=None):
        self.model, self.n = model, n
        cfg = model.config
        H, W = self.H, self.W = tuple(shape) if shape is not None else (cfg.height, cfg.width)
        if W != cfg.width or H > cfg.height:
            raise ValueError(f"this PixelSNAIL samples grids of width {cfg.width} and at most "
                             f"{cfg.height} rows, not {(H, W)}")
        ref = model.pos
        cond = model._cond_map(cond, H, W)
        self.input_cache = model.input.new_cache(n, H, W, ref)
        self.input_w = model.input.flat_weight()
        self.res = []     # per gated block: (caches, flat weights, gate bias (n, 2C) or (n, H, W, 2C))
        self.attn = []    # per attention layer: keys, values (n, heads, L+1, d) and its input at p
        L = H * W
        for block in model.blocks:
            for r in block.res:
                b = r.bias(labels, cond)      # 0, (n, 2C, 1, 1) or (n, 2C, H, W)
                if not torch.is_tensor(b):
                    b = ref.new_zeros(n, 2 * cfg.channels)
                elif b.shape[-1] == 1:
                    b = b.expand(n, -1, 1, 1)[:, :, 0, 0]           # the same at every position
                else:
                    b = b.permute(0, 2, 3, 1).contiguous()         # channels-last: b[:, i, j] is contiguous
                self.res.append(((r.conv1.new_cache(n, H, W, ref), r.conv2.new_cache(n, H, W, ref)),
                                 (r.conv1.flat_weight(), r.conv2.flat_weight()), b))
            a = block.attn
            if a is None:
                self.attn.append(None)
                continue
            k = ref.new_zeros(n, a.heads, L + 1, a.head_dim)
            v = ref.new_zeros(n, a.heads, L + 1, a.head_dim)
            k[:, :, 0], v[:, :, 0] = a.null_kv[0, :, 0], a.null_kv[1, :, 0]
            self.attn.append({"k": k, "v": v, "x": ref.new_zeros(n, cfg.channels)})

    @torch.no_grad()
    def step(self, codes: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Logits (n, K) at (i, j); ``codes`` (n, H, W) holds the codes of every position before it."""
        p = i * self.W + j
        if p > 0:
            pi, pj = divmod(p - 1, self.W)
            self.push(pi, pj, codes[:, pi, pj])
        return self.logits(i, j)

    @torch.no_grad()
    def logits(self, i: int, j: int) -> torch.Tensor:
        """Logits (n, K) of position (i, j), given the codes pushed so far (all before (i, j))."""
        m, p = self.model, i * self.W + j
        x = m.input.at(self.input_cache, i, j, self.input_w) + m.pos[:, i, j]
        r_i = 0
        for block, att in zip(m.blocks, self.attn):
            for r in block.res:
                (c1, c2), (w1, w2), bias = self.res[r_i]
                r_i += 1
                r.conv1.write(c1, i, j, _act(x))
                h = r.conv1.at(c1, i, j, w1)
                r.conv2.write(c2, i, j, _act(h))
                h = r.conv2.at(c2, i, j, w2) + (bias[:, i, j] if bias.dim() == 4 else bias)
                x = r.gate(x, h)
            a = block.attn
            if a is None:
                continue
            att["x"] = x                                   # keys/values of p need its code: see push
            q = a.q(x).view(self.n, a.heads, 1, a.head_dim)
            k, v = att["k"][:, :, :p + 1], att["v"][:, :, :p + 1]          # null slot + positions < p
            w = ((q @ k.transpose(-1, -2)) * a.head_dim ** -0.5).softmax(-1)
            out = w @ v                                    # one query: plain products beat the fused kernel
            x = x + block.mix(_act(torch.cat([x, out.reshape(self.n, -1)], -1)))
        return m.head(_act(x))

    @torch.no_grad()
    def push(self, i: int, j: int, codes: torch.Tensor) -> None:
        """Record the codes (n,) sampled at (i, j), after :meth:`logits` (i, j)."""
        m, p = self.model, i * self.W + j
        e = m.embed(codes)                                   # (n, C)
        m.input.write(self.input_cache, i, j, e)
        for block, att in zip(m.blocks, self.attn):
            if att is None:
                continue
            k, v = block.attn.split_kv(torch.cat([att["x"], e], -1))
            att["k"][:, :, p + 1], att["v"][:, :, p + 1] = k, v


# ---- the model --------------------------------------------------------------------------------

@register
class PixelSNAIL(Prior):
    config_class = PixelSNAILConfig
    sampler_class = IncrementalSampler
    level_configs = PIXELSNAIL_CONFIGS
    retired_fields = {"attn_dropout": 0.0}
    loss_over_rows = True   # its logits are (B, H, W, K) in memory (see forward)

    def __init__(self, cfg: PixelSNAILConfig):
        super().__init__(cfg, cfg.channels)
        c = cfg.channels
        cond_channels = cfg.cond_channels if cfg.cond_num_codes > 0 else 0
        self.input = CausalConv2d(c, c, cfg.first_kernel, strict=True)
        # Position is not data: adding it after the strict input conv tells p where it is.
        self.pos = nn.Parameter(torch.zeros(c, cfg.height, cfg.width))
        self.blocks = nn.ModuleList([SNAILBlock(cfg, cond_channels) for _ in range(cfg.blocks)])
        self.head = nn.Linear(c, cfg.num_codes)
        self.condition_net = (ConditionNet(cfg.cond_num_codes, cfg.cond_channels, cfg.cond_res_blocks,
                                           cfg.cond_upsample) if cond_channels else None)

    @staticmethod
    def level_fields(vqvae2_config, level: str, image_size: int) -> dict:
        """A level's code count and grid, and for the bottom the top codes it is conditioned on
        (through its own ConditionNet)."""
        vc, top, bottom = vqvae2_config, image_size // 8, image_size // 4
        if level == "top":
            return dict(num_codes=vc.num_codes_top, height=top, width=top)
        return dict(num_codes=vc.num_codes_bottom, height=bottom, width=bottom, cond_num_codes=vc.num_codes_top,
                    cond_upsample=bottom // top)

    @property
    def shape(self) -> tuple[int, int]:
        return self.config.height, self.config.width

    # ---- conditioning ---------------------------------------------------------------------------

    def condition(self, cond_codes: torch.Tensor) -> torch.Tensor:
        """Top codes (B, h, w) long -> the conditioning map (B, cond_channels, H, W). Compute it
        once per batch and pass it as ``cond`` (samplers do; see :meth:`start_sampling`)."""
        if self.condition_net is None:
            raise ValueError("this PixelSNAIL has no spatial condition (cond_num_codes=0)")
        return self.condition_net(cond_codes.long())

    def _cond_map(self, cond, H: int, W: int):
        if self.condition_net is None:
            return None
        if cond is None:
            raise ValueError("this PixelSNAIL is conditioned on top codes: "
                             "pass cond= (the codes or condition(codes))")
        if not torch.is_floating_point(cond):
            cond = self.condition(cond)
        return cond[:, :, :H, :W]   # a row-cropped sampler runs on the rows done so far

    # ---- the network ------------------------------------------------------------------------------

    def forward(self, codes: torch.Tensor, labels=None, cond=None) -> torch.Tensor:
        """Codes (B, H, W) long -> logits (B, K, H, W). ``labels``: None, one category or (B,);
        ``cond``: top codes (B, h, w) long or their map from :meth:`condition` (bottom prior)."""
        H, W = codes.shape[1:]
        labels = self.labels_of(labels, codes)
        cond = self._cond_map(cond, H, W)
        e = self.embed(codes).permute(0, 3, 1, 2)
        x = self.input(e) + self.pos[:, :H, :W]
        for block in self.blocks:
            x = block(x, e, labels, cond)
        # (B, H, W, K) in memory, returned as a (B, K, H, W) view: the loss reads it back as
        # (B*H*W, K) rows without a copy.
        return self.head(_act(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


__all__ = ["PixelSNAIL", "PixelSNAILConfig", "PIXELSNAIL_CONFIGS", "CausalConv2d", "IncrementalSampler"]
