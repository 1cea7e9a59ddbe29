"""A masked, bidirectional transformer over the code grid (MaskGIT): a prior with no reading order.

Papers:
- Chang, Zhang, Jiang, Liu, Freeman 2022, "MaskGIT: Masked Generative Image Transformer": a
  bidirectional transformer learns to predict the masked codes of a grid from the codes left
  visible, a share of them masked by a cosine schedule; it samples from an all-masked grid in a
  few rounds, each round keeping its surest codes and masking the rest again.
- Devlin et al. 2019, "BERT": the masked-token objective.

The raster priors (pixelcnn.py, pixelsnail.py, transformer.py) give the logits at (i, j) from the
codes before it; this one gives them from every code of the grid that is not masked, above and
below, left and right: a smiley's second eye is drawn knowing the first and the mouth. The input
at a position is the embedding of its code (or of the mask token, index ``num_codes``), a learned
position embedding and the label bias; the transformer's blocks (transformer.py) without the
causal mask follow.

What differs from the raster families, and where:
- ``training_step``: the cross-entropy of the masked codes only (nats per masked code), a share
  ``mask_share(u)`` of each grid masked, u uniform. It is not a raster NLL (a code is predicted
  from some of the others, not from those before it), so its val loss is not comparable with the
  other families' val NLL; validation draws its masks from a fixed seed, so epochs compare.
- sampling: ``helpers.sampling.sample_codes`` draws its grids in ``config.rounds`` rounds
  (``masked`` below; module doc there), not one position at a time; no likelihood comes with
  them (``nll_per_image`` and ``return_nll`` refuse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import register
from .transformer import GridTransformer, TransformerPriorConfig


@dataclass
class MaskedPriorConfig(TransformerPriorConfig):
    """The masked prior: the transformer prior's sizes (and defaults), and how it samples."""

    rounds: int = 8             # sampling rounds: each fixes a share of the masked codes (mask_share)
    choice_noise: float = 4.5   # Gumbel noise on the confidences that pick which codes a round keeps,
                                # falling to 0 by the last round (MaskGIT's choice temperature)


def mask_share(progress: torch.Tensor) -> torch.Tensor:
    """MaskGIT's cosine schedule: the share of a grid masked at ``progress`` in [0, 1] (1 at 0,
    0 at 1). Training draws progress uniformly; sampling after round r of R keeps
    ``mask_share((r + 1) / R)`` of the codes it has not been given still masked."""
    return torch.cos(0.5 * math.pi * progress)


@register
class MaskedTransformerPrior(GridTransformer):
    """The transformer prior's network without the causal mask; its extra code index is the mask
    token (module doc)."""

    config_class = MaskedPriorConfig
    causal = False             # every position attends to every other
    masked = True              # sampling.sample_codes draws it in rounds, not in raster order
    supports_row_crop = False  # row i's logits read every row

    def __init__(self, cfg: MaskedPriorConfig):
        if cfg.rounds < 1:
            raise ValueError(f"rounds must be at least 1, not {cfg.rounds}")
        super().__init__(cfg)

    @property
    def mask_code(self) -> int:
        """The index that marks a masked position in the codes :meth:`forward` reads."""
        return self.config.num_codes

    def check_grid(self, shape, cond) -> None:
        """Exactly the configured grid (every position reads every other), no spatial condition."""
        cfg, (H, W) = self.config, tuple(shape)
        if (H, W) != (cfg.height, cfg.width):
            raise ValueError(f"this masked prior models {cfg.height}x{cfg.width} grids, not {H}x{W}")
        if cond is not None:
            raise ValueError("the masked prior takes no spatial condition (cond)")

    def forward(self, codes, labels=None, cond=None):
        """codes (B, H, W), ``mask_code`` where masked -> logits (B, K, H, W) at every position."""
        self.check_grid(codes.shape[1:], cond)
        return self._logits(self.embed(codes.flatten(1)) + self.pos, codes, labels)

    def training_step(self, batch) -> tuple[torch.Tensor, dict]:
        codes, labels, cond = self.unpack(batch)
        B, H, W = codes.shape
        # validation masks from a fixed seed: the same masks every epoch, and the training stream untouched
        generator = None if self.training else torch.Generator().manual_seed(0)
        share = mask_share(torch.rand(B, generator=generator))
        count = (share * H * W).ceil().clamp(min=1)                    # at least one code to predict
        rank = torch.rand(B, H * W, generator=generator).argsort(1).argsort(1)
        mask = (rank < count[:, None]).view(B, H, W).to(codes.device)
        logits = self(codes.masked_fill(mask, self.mask_code), labels, cond).float()
        rows, targets = logits.permute(0, 2, 3, 1)[mask], codes[mask]
        nll = F.cross_entropy(rows, targets)   # nats per masked code
        with torch.no_grad():
            acc = (rows.argmax(1) == targets).float().mean()
        return nll, {"nll": nll.detach(), "acc": acc.detach()}

    def nll_per_image(self, codes, labels=None, cond=None):
        raise ValueError("the masked prior has no likelihood of a whole grid: it predicts masked codes from the "
                         "others, in no order (use a raster prior: pixelcnn, transformer)")

    def start_sampling(self, n: int, shape=None, labels=None, cond=None):
        raise ValueError("the masked prior is not sampled position by position: sampling.sample_codes draws "
                         "its grids in rounds")


__all__ = ["MaskedTransformerPrior", "MaskedPriorConfig", "mask_share"]
