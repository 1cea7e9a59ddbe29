"""Building ``data/processed/<profile>/dataset.pt``: index the sources, keep a subset, decode and frame, split.

    sources.json --fetch--> data/raw/*.tgz --extract--> data/raw/<package>/ --index--> items
        --subset (profile.max_emojis)--> decode / render --> frame --> split --> dataset.pt

The split is the profile's (``profile.split``): by emoji identity, or the report's random one.

Files that the catalogue does not know are left out and counted per vendor; files that fail
to decode are skipped and named in one warning per vendor. Everything is written atomically:
a failed build leaves the previous ``dataset.pt`` and everything under ``data/raw`` as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from .. import paths
from ..profiles import Profile, get_profile
from .catalog import UNKNOWN_CATEGORY, Emoji, load_catalog, normalize_code
from .dataset import FORMAT_VERSION
from .decode import BadImage, open_rgba, render_svg_rgba
from .errors import DataError, DataWarning
from .framing import SIZES, Framed, crop_side, frame
from .sources import Source, load_manifest, resolve_source, unpack
from .split import SPLIT_RULES, VAL_FRACTION, random_split, rank, seen_share, split

SVG_RENDER = 256          # SVGs are rendered this large, framed, then downsampled to every size
SVG_RENDER_MAX = 2048     # a drawing so small that its crop would need more is upsampled at 128 px


@dataclass(frozen=True)
class Item:
    """One image to decode: where it is and what it shows. Indexed without decoding anything."""
    vendor: str
    path: Path
    format: str        # "svg", a raster suffix of an npm source ("png", "webp") or "image" (a folder file)
    code: str
    identity: str
    name: str
    category: str
    order: tuple
    subcategory: str = UNKNOWN_CATEGORY


def npm_items(source: Source, root: Path, catalog: dict[str, Emoji]) -> tuple[list[Item], list[str]]:
    """The images of an extracted npm package that the catalogue knows, and how many it did not."""
    folder = root / source.images
    suffix = f".{source.format}"
    items, unknown, seen = [], [], set()
    for path in sorted(folder.glob(f"*{suffix}")):
        emoji = catalog.get(normalize_code(path.stem))
        if emoji is None:
            unknown.append(path.name)
        if emoji is None or emoji.code in seen:      # two file names of one code: keep the first
            continue
        seen.add(emoji.code)
        items.append(Item(source.vendor, path, source.format, emoji.code, emoji.identity, emoji.name,
                          emoji.category, (emoji.order, emoji.code), emoji.subcategory))
    return sorted(items, key=lambda it: it.order), unknown   # emoji.json order: smileys first


def _folder_items(source: Source) -> list[Item]:
    folder = Path(source.path)
    if not folder.is_dir():
        raise DataError(f"{source.spec}: no such folder. Give an existing folder of images, "
                        "e.g. 'folder:/home/me/my_emojis'.")
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [Item(source.vendor, p, "svg" if p.suffix.lower() in (".svg", ".svgz") else "image",
                 p.stem, p.stem, p.stem, UNKNOWN_CATEGORY, (str(p.relative_to(folder)),)) for p in files]


def folder_digest(folder: str | os.PathLike) -> str:
    """A cheap digest of a folder's files (names, sizes, mtimes): has the folder changed?"""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def decode_item(item: Item) -> tuple[Framed, bool]:
    """The framed images of one item (:func:`framing.frame`) and whether it was animated; raises
    BadImage. An SVG is rendered large enough that even its 128 px crop is a downsample."""
    if item.format != "svg":
        rgba, animated = open_rgba(item.path)
        return frame(rgba), animated
    rgba = render_svg_rgba(item.path, SVG_RENDER)
    side = crop_side(rgba)
    if side < max(SIZES):                       # a small drawing: render it larger
        rgba = render_svg_rgba(item.path, min(SVG_RENDER_MAX, math.ceil(SVG_RENDER * max(SIZES) / side) + 1))
    return frame(rgba), False


def _decode_or_why(item: Item) -> tuple[tuple[Framed, bool] | None, str | None]:
    """:func:`decode_item`'s result, or the BadImage message that names why the file is skipped."""
    try:
        return decode_item(item), None
    except BadImage as e:
        return None, str(e)


def decode_items(items: list[Item], workers: int = 1) -> Iterator[tuple[tuple[Framed, bool] | None, str | None]]:
    """:func:`_decode_or_why` of every item, in order, in ``workers`` processes: each image is
    decoded on its own, so the result does not depend on how many. Decoding (SVG rendering above
    all) is most of a build, and it runs on one core unless spread over processes."""
    if workers <= 1:
        yield from map(_decode_or_why, items)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers need no imports of their own; they run only PIL, resvg and numpy
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(_decode_or_why, items, chunksize=32)


def decode_workers(n_items: int) -> int:
    """The cores this process may use, for a build large enough to repay starting the processes."""
    return len(os.sched_getaffinity(0)) if n_items >= 500 else 1


def _list(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    more = f", … (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more



def _fingerprint(d: dict) -> str:
    """sha256 of the content and the split: what checkpoints and metric caches are keyed on."""
    h = hashlib.sha256()
    for key in ("images32", "images64", "images128", "index128", "vendor", "category", "subcategory",
                "identity", "train_idx", "val_idx"):
        t = d[key].contiguous()
        h.update(f"{key}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    for key in ("vendor_names", "category_names", "subcategory_names", "identity_names", "codes"):
        h.update(json.dumps(d[key]).encode())
    return h.hexdigest()


def _pinned_specs(sources: list[Source]) -> list[str]:
    return [s.spec if s.kind == "npm" else f"{s.spec}#{folder_digest(s.path)}" for s in sources]


def dataset_is_current(path: str | os.PathLike, sources: list[str], profile: Profile,
                       val_fraction: float = VAL_FRACTION) -> bool:
    """Does ``path`` hold a dataset built from these sources with this profile's subset, seed and split?"""
    path = Path(path)
    if not path.exists():
        return False
    try:
        meta = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    resolved = [resolve_source(s) for s in sources]
    return (meta.get("format") == FORMAT_VERSION and meta.get("sources") == _pinned_specs(resolved)
            and meta.get("seed") == profile.seed and meta.get("max_emojis") == profile.max_emojis
            and meta.get("val_fraction") == val_fraction and meta.get("split", "identity") == profile.split)


def build_dataset(sources: list[str] | None = None, profile: Profile | str | None = None, *,
                  force: bool = False, val_fraction: float = VAL_FRACTION, verbose: bool = True) -> Path:
    """Build ``data/processed/<profile>/dataset.pt`` from ``sources`` (default: the manifest's
    default set) and return its path. Nothing is redone when the file is already current
    (same pinned sources, subset and seed) unless ``force``. See the module docstring."""
    from tqdm.auto import tqdm

    from ..checkpoints import atomic_save

    t0 = time.perf_counter()
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    manifest = load_manifest()
    sources = list(sources or manifest["default"])
    if not sources:
        raise DataError("no sources given: name at least one, e.g. ['twemoji', 'google'].")
    resolved = [resolve_source(s, manifest) for s in sources]
    vendors = [s.vendor for s in resolved]
    if len(set(vendors)) != len(vendors):
        raise DataError(f"a source is named twice in {sources}.")
    out = paths.dataset_path(profile.name)
    if not force and dataset_is_current(out, sources, profile, val_fraction):
        if verbose:
            print(f"{out} is up to date with {sources} (profile {profile.name}): nothing to do.")
        return out
    say = print if verbose else (lambda *a, **k: None)

    # 1. Fetch, extract and index (no pixels decoded yet).
    roots = {s.vendor: unpack(s) for s in resolved if s.kind == "npm"}
    catalog: dict[str, Emoji] = {}
    if roots:
        with_catalog = [s for s in resolved if s.kind == "npm" and s.catalog]
        if with_catalog:
            cat_json = roots[with_catalog[0].vendor] / with_catalog[0].catalog
        else:  # e.g. Twemoji alone: the names come from the image-less emoji-datasource package
            cat_src = resolve_source(manifest["catalog"], manifest)
            cat_json = unpack(cat_src) / cat_src.catalog
        catalog = load_catalog(cat_json)
    items: list[Item] = []
    left_out: dict[str, int] = {}
    for s in resolved:
        if s.kind == "npm":
            found, unknown = npm_items(s, roots[s.vendor], catalog)
            if not found:
                raise DataError(f"{s.spec}: no images found under {s.images} in {roots[s.vendor]}. "
                                "Delete that folder and re-run; if it persists, the pin is wrong.")
            left_out[s.vendor] = len(unknown)
            if unknown:
                say(f"{s.vendor}: {len(unknown)} file(s) not in the emoji catalogue are left out: "
                    f"{_list(unknown, 6)}")
        else:
            found = _folder_items(s)
            if not found:
                raise DataError(f"{s.spec}: the folder holds no files. Put PNG, JPEG, GIF, WebP or SVG "
                                "images in it (one emoji per file; the file name is its identity).")
        items += found

    # 2. Keep a seeded subset of identities (all their vendors); decode only what is kept.
    if profile.max_emojis is not None:
        keep = set(rank("subset", profile.seed, sorted({it.identity for it in items}))[:profile.max_emojis])
        items = [it for it in items if it.identity in keep]

    # 3. Decode / render.
    im32, im64, im128, idx128, shares, kept = [], [], [], [], [], []
    bad: dict[str, list[str]] = {}
    animated: dict[str, list[str]] = {}
    decoded_items = tqdm(decode_items(items, decode_workers(len(items))), total=len(items), desc="decode/render",
                         unit="img", disable=not verbose)
    for it, (decoded, why) in zip(items, decoded_items):
        if decoded is None:
            bad.setdefault(it.vendor, []).append(f"{it.path.name} ({why})")
            continue
        framed, anim = decoded
        if anim:
            animated.setdefault(it.vendor, []).append(it.path.name)
        if 128 in framed.images:
            idx128.append(len(kept))
            im128.append(framed.images[128])
        im32.append(framed.images[32])
        im64.append(framed.images[64])
        shares.append(framed.share)
        kept.append(it)
    for vendor, names in bad.items():
        warnings.warn(f"{vendor}: skipped {len(names)} unusable file(s): {_list(names)}", DataWarning,
                      stacklevel=2)
    for vendor, names in animated.items():
        warnings.warn(f"{vendor}: {len(names)} animated image(s), kept their first frame: {_list(names)}",
                      DataWarning, stacklevel=2)
    for s in resolved:
        if not any(it.vendor == s.vendor for it in kept):
            raise DataError(f"{s.spec}: no usable image ({len(bad.get(s.vendor, []))} file(s) skipped, "
                            "see the warning). Give a source with at least one PNG, JPEG, GIF, WebP or SVG.")

    # 4. Labels, split and the file.
    def stack(arrays: list[np.ndarray], size: int) -> torch.Tensor:
        if not arrays:
            return torch.zeros((0, 3, size, size), dtype=torch.uint8)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    category_names = sorted({it.category for it in kept})
    subcategory_names = sorted({it.subcategory for it in kept})
    identity_names = sorted({it.identity for it in kept})
    cat_ix = {c: i for i, c in enumerate(category_names)}
    sub_ix = {c: i for i, c in enumerate(subcategory_names)}
    id_ix = {n: i for i, n in enumerate(identity_names)}
    d = {
        "format": FORMAT_VERSION,
        "images32": stack(im32, 32),
        "images64": stack(im64, 64),
        "images128": stack(im128, 128),
        "index128": torch.tensor(idx128, dtype=torch.long),
        "vendor": torch.tensor([vendors.index(it.vendor) for it in kept], dtype=torch.long),
        "vendor_names": vendors,
        "category": torch.tensor([cat_ix[it.category] for it in kept], dtype=torch.long),
        "category_names": category_names,
        "subcategory": torch.tensor([sub_ix[it.subcategory] for it in kept], dtype=torch.long),
        "subcategory_names": subcategory_names,
        "identity": torch.tensor([id_ix[it.identity] for it in kept], dtype=torch.long),
        "identity_names": identity_names,
        "names": [it.name for it in kept],
        "codes": [it.code for it in kept],
        "content_share": torch.tensor(shares, dtype=torch.float32),
        "left_out": left_out,
        "licenses": [s.license for s in resolved],
        "attributions": [s.attribution for s in resolved],
    }
    if profile.split == "random":
        d["train_idx"], d["val_idx"] = random_split(len(kept), profile.seed, val_fraction)
    else:
        d["train_idx"], d["val_idx"] = split(d["identity"], profile.seed, val_fraction, identity_names,
                                             images=d["images32"])
    d.update(fingerprint=_fingerprint(d), sources=_pinned_specs(resolved), seed=profile.seed,
             max_emojis=profile.max_emojis, val_fraction=val_fraction, split=profile.split, profile=profile.name,
             build_seconds=round(time.perf_counter() - t0, 2))
    atomic_save(d, out)
    say(f"wrote {out}: {len(kept)} images of {len(identity_names)} emojis, {len(idx128)} at 128 px, "
        f"train {len(d['train_idx'])} / val {len(d['val_idx'])} ({SPLIT_RULES[profile.split]}; "
        f"{seen_share(d['identity'], d['train_idx'], d['val_idx']):.1%} of val images show an emoji drawn in train), "
        f"in {d['build_seconds']:.1f} s (fingerprint {d['fingerprint'][:12]})")
    return out

