"""Every number the notebooks report, one module per concern:

reconstruction  MSE, PSNR, SSIM of reconstructions.
codebook        codebook usage and perplexity; the share of blank images.
inception       the TF-Inception FID network, registered with torch-fidelity, and its features.
features        the on-disk cache of the features of real image sets.
generation      FID, KID, precision/recall, density/coverage from features.

The names below are re-exported so that ``from helpers.metrics import X`` works for all of them;
a test that replaces a name must patch the module that owns it (e.g. ``metrics.features``).
"""

from __future__ import annotations

from .codebook import blank_share, codebook_usage
from .features import COUNTERS, cached_features, features_cache_path, images_digest
from .generation import (density_coverage_from_features, fid_from_features, fid_statistics, generation_metrics,
                         kid_from_features, precision_recall_from_features)
from .inception import (FAST, FEATURES_VERSION, INCEPTION_SHA1, INCEPTION_SIZE, PLAIN, TFInceptionFast,
                        TFInceptionPlain, feature_extractor, inception_features, inception_weights_path,
                        tf1x_resize)
from .reconstruction import (PSNR_CAP_DB, reconstruction_metrics, reconstruction_metrics_batched,
                             reconstruction_per_image)

__all__ = [
    "PSNR_CAP_DB", "reconstruction_per_image", "reconstruction_metrics", "reconstruction_metrics_batched",
    "codebook_usage", "blank_share",
    "INCEPTION_SIZE", "INCEPTION_SHA1", "FEATURES_VERSION", "PLAIN", "FAST", "inception_weights_path",
    "tf1x_resize", "TFInceptionPlain", "TFInceptionFast", "feature_extractor", "inception_features",
    "COUNTERS", "images_digest", "features_cache_path", "cached_features",
    "fid_statistics", "fid_from_features", "kid_from_features", "precision_recall_from_features",
    "density_coverage_from_features", "generation_metrics",
]
