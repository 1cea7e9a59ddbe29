"""The emoji dataset: pinned npm packages (or a folder of images) -> uint8 tensors and an honest split.

One module per concern:

* ``sources``  the pinned packages of ``data/sources.json``, fetched with ``npm pack`` and
  checked against their sha256, extracted safely;
* ``catalog``  names, categories and skin-tone relations from ``emoji.json``; the identity of an image;
* ``decode``   any raster file or SVG -> RGBA, or a :class:`BadImage` with the reason;
* ``framing``  one rule that frames every vendor's drawing alike (content box at 15/16 of the canvas);
* ``split``    80/20 by emoji identity, seeded (or the report's random 80/20 of images);
* ``build``    ``build_dataset``: index, subset, decode, frame, split -> ``dataset.pt``;
* ``dataset``  ``EmojiDataset`` / ``load_dataset`` and the tables notebook 00 shows.

Tensor conversions (uint8 <-> model input) live in :mod:`helpers.tensors`, where models reach
them without importing this package.
"""

from .build import Item, build_dataset, dataset_is_current, decode_item, folder_digest, npm_items
from .catalog import UNKNOWN_CATEGORY, Emoji, load_catalog, normalize_code
from .dataset import (FORMAT_VERSION, LABELS, EmojiDataset, aligned_samples, counts, framing_table, load_dataset,
                      size_ladder, split_table, subcategory_parents)
from .decode import (MAX_SIDE, BadImage, composite_on_white, open_image, open_rgba, pad_square, render_svg,
                     render_svg_rgba, resize, to_rgba)
from .errors import ChecksumError, DataError, DataWarning, FetchError, UnsafeArchiveError
from .framing import FRAME_SHARE, content_box, frame
from .sources import IMAGE_FORMATS, Source, extract, fetch, load_manifest, resolve_source, sha256_file, unpack
from .split import (SPLIT_RULES, VAL_FRACTION, merge_duplicates, random_split, rank, seen_share,
                    split)

__all__ = [name for name in dir() if not name.startswith("_")]
