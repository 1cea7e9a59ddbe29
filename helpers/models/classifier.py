"""A small category classifier of emoji images: the judge of the GAN-test (Shmelkov et al. 2018).

"How good is my GAN?" measures whether class-conditional samples look like their class: a
classifier trained on the real train images labels the samples, and the share it assigns to the
class they were drawn for, over its accuracy on real val images, says how recognisable they are.
The network is plain on purpose (VGG-style blocks, batch norm, global average pooling): it is a
measuring instrument, not a model under study.
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


@register
class EmojiClassifier(Configurable, nn.Module):
    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = cfg = config
        for side in (cfg.image_size, cfg.base_size):
            if side < 8 or side & (side - 1):
                raise ValueError(f"image_size and base_size must be powers of two >= 8, not {side}")
        self.pool = max(1, cfg.image_size // cfg.base_size)
        blocks = int(math.log2(min(cfg.image_size, cfg.base_size) // 4))
        layers, c_in = [], 3
        for i in range(blocks):
            c = cfg.width * 2 ** min(i, 3)
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(c_in, cfg.num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [-1, 1] images (B, 3, S, S) -> logits (B, num_classes)."""
        if images.shape[-1] != self.config.image_size:
            raise ValueError(f"this classifier reads {self.config.image_size} px images, got {images.shape[-1]} px")
        x = to_model_input(images)
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        x = self.features(x)
        return self.head(x.mean((2, 3)))

    def training_step(self, batch) -> tuple[torch.Tensor, dict]:
        """batch = (images, labels). In training, half the batch is mirrored: an emoji's category
        does not depend on which way it faces."""
        images, labels = batch
        if self.training:
            flip = torch.rand(len(images), device=images.device) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        logits = self(images).float()
        loss = F.cross_entropy(logits, labels)
        return loss, {"acc": (logits.argmax(1) == labels).float().mean().item()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """The most likely class of each image (eval mode)."""
        self.eval()
        device = device_of(self)   # trained on whatever device the Trainer picked; images come from the CPU
        return torch.cat([self(images[i:i + batch_size].to(device)).argmax(1).cpu()
                          for i in range(0, len(images), batch_size)])


__all__ = ["ClassifierConfig", "EmojiClassifier"]
