"""A small classifier of emoji images: the judges of helpers/recognise.py.

"How good is my GAN?" (Shmelkov et al. 2018) measures whether class-conditional samples look like
their class: a classifier trained on the real train images labels the samples, and the share it
assigns to the class they were drawn for, over its accuracy on real val images, says how
recognisable they are. With ``hue_free`` the classifier sees no hue (:func:`hue_free`), so that
colour cannot pass it: it must read shapes and features. The network is plain on purpose
(VGG-style blocks, batch norm, global average pooling): it is a measuring instrument, not a model
under study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime import device_of
from ..tensors import to_model_input
from . import Configurable, register


@dataclass
class ClassifierConfig:
    num_classes: int
    image_size: int = 32      # the input's side: a power of two >= 8
    base_size: int = 32       # larger inputs are average-pooled to this first: 64 px samples are
                              # judged at the detail the 32 px network sees, for a quarter of the work
    width: int = 32           # channels of the first block; each block doubles them
    dropout: float = 0.3      # before the linear head: the train set has ~1,500 emoji identities
    hue_free: bool = False    # read one grey channel, the plain mean of R, G and B (hue_free)
    blobs: float = 0.0        # share of training images replaced by their blob: gaussian_blur with
    blob_sigma: float = 0.0   # a sigma of this share of the image side (helpers/recognise.py's judge)


# Rec. 601 luma weights: a hue-free classifier trains on the grey these make after a random
# permutation of the colour channels, so that no grey level stands for one hue (yellow is light
# under one order, dark under another); their mean over the six permutations is the plain channel
# mean it reads at evaluation, which no permutation or hue rotation changes.
LUMA = (0.299, 0.587, 0.114)


def hue_free(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [-1, 1] images (B, 3, S, S) -> (B, 1, S, S) in [-1, 1]: the plain mean of the three
    channels. It is unchanged by any permutation of the channels and by any rotation of the colours
    about the grey axis (a hue rotation), since both keep R + G + B; on uint8 images the sum is
    taken in integers, so a channel swap gives the very same grey, bit for bit."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, S, S), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.sum(1, keepdim=True, dtype=torch.int32).float().div(3 * 127.5).sub(1.0)
    return images.float().mean(1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Float images (B, C, S, S) under a Gaussian blur of ``sigma`` pixels: separable, the kernel
    out to 3 sigma, the edges padded with their own pixels (a white background stays white).
    Computed in fp32 on a contiguous copy whatever the caller's autocast and memory format (the
    result in ``x``'s dtype): a training step's bf16 channels-last batch sends these depthwise
    convolutions down a CPU path that takes minutes per call."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    with torch.autocast(x.device.type, enabled=False):
        y = F.pad(x.float().contiguous(), (r, r, r, r), mode="replicate")
        y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y.to(x.dtype)


def permuted_luma(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [-1, 1] images (B, 3, S, S) -> (B, 1, S, S) in [-1, 1]: each image's grey by the
    :data:`LUMA` weights given to its channels in a random order (the global random stream)."""
    x = to_model_input(images)
    order = torch.rand(len(x), 3, device=x.device).argsort(1)
    weights = torch.tensor(LUMA, device=x.device)[order]
    return (x * weights[:, :, None, None]).sum(1, keepdim=True)


@register
class EmojiClassifier(Configurable, nn.Module):
    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = cfg = config
        for side in (cfg.image_size, cfg.base_size):
            if side < 8 or side & (side - 1):
                raise ValueError(f"image_size and base_size must be powers of two >= 8, not {side}")
        if not 0 <= cfg.blobs < 1 or (cfg.blobs > 0 and not cfg.blob_sigma > 0):
            raise ValueError(f"blobs must lie in [0, 1) and need a positive blob_sigma, not {cfg.blobs} and "
                             f"{cfg.blob_sigma}")
        self.pool = max(1, cfg.image_size // cfg.base_size)
        blocks = int(math.log2(min(cfg.image_size, cfg.base_size) // 4))
        layers, c_in = [], 1 if cfg.hue_free else 3
        for i in range(blocks):
            c = cfg.width * 2 ** min(i, 3)
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(c_in, cfg.num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [-1, 1] images (B, 3, S, S) -> logits (B, num_classes)."""
        return self._logits(hue_free(images) if self.config.hue_free else to_model_input(images))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Model input (B, 3 or 1, S, S) in [-1, 1] -> logits."""
        if x.shape[-1] != self.config.image_size:
            raise ValueError(f"this classifier reads {self.config.image_size} px images, got {x.shape[-1]} px")
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        x = self.features(x)
        return self.head(x.mean((2, 3)))

    def training_step(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (images, labels). In training, half the batch is mirrored (an emoji's class does
        not depend on which way it faces); with ``blobs`` that share of it is blurred to blobs
        that keep their labels (so the classifier learns what colour and a rough silhouette say,
        and how unsure they leave it, instead of meeting blobs as something never seen); a
        hue-free classifier reads :func:`permuted_luma` greys instead of the channel mean (a hue
        cannot hide in a grey level it has learned)."""
        images, labels = batch
        cfg = self.config
        if not self.training:
            logits = self(images).float()
        else:
            flip = torch.rand(len(images), device=images.device) < 0.5
            x = to_model_input(torch.where(flip[:, None, None, None], images.flip(-1), images))
            if cfg.blobs > 0:
                blob = torch.rand(len(x), device=x.device) < cfg.blobs
                x = x.clone()
                x[blob] = gaussian_blur(x[blob], cfg.blob_sigma * cfg.image_size)
            logits = self._logits(permuted_luma(x) if cfg.hue_free else x).float()
        loss = F.cross_entropy(logits, labels)
        return loss, {"acc": (logits.argmax(1) == labels).float().mean().detach()}

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """(N, num_classes) softmax of each image (eval mode), on the CPU."""
        self.eval()
        device = device_of(self)   # trained on whatever device the Trainer picked; images come from the CPU
        return torch.cat([self(images[i:i + batch_size].to(device)).float().softmax(1).cpu()
                          for i in range(0, len(images), batch_size)])

    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """The most likely class of each image (eval mode)."""
        return self.probabilities(images, batch_size).argmax(1)


__all__ = ["ClassifierConfig", "EmojiClassifier", "LUMA", "gaussian_blur", "hue_free", "permuted_luma"]
