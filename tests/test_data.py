"""The emoji dataset: decoding, compositing, the grouped split, pinned sources and bad input.

No test needs the network: tiny npm-like tarballs, a manifest and image folders are built in
tmp_path, and ``helpers.paths`` is pointed at them.
"""

import dataclasses
import hashlib
import io
import json
import os
import stat
import tarfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data, paths
from helpers.data import (BadImage, ChecksumError, DataError, DataWarning, FetchError, UnsafeArchiveError,
                          build_dataset, composite_on_white, extract, fetch, load_catalog, load_dataset,
                          normalize_code, open_image, resolve_source, split, to_rgba)
from helpers.tensors import mirrored_shifted_copies, random_flip_shift, shift_on_white, to_model_input, to_unit
from helpers.profiles import get_profile

from _smoke import skip_if_unfetchable

TEST_PROFILE = dataclasses.replace(get_profile("smoke"), name="test", max_emojis=None)

# A miniature emoji.json: a plain emoji, one with skin tones (FE0F in the base, not in Twemoji's
# file names), a keycap (leading zeros), and an emoji obsoleted by a gendered one.
CATALOG = [
    {"unified": "1F600", "short_name": "grinning", "name": "GRINNING FACE",
     "category": "Smileys & Emotion", "subcategory": "face-smiling", "sort_order": 1},
    {"unified": "270C-FE0F", "non_qualified": "270C", "short_name": "v", "name": "VICTORY HAND",
     "category": "People & Body", "subcategory": "hand-fingers-partial", "sort_order": 2,
     "skin_variations": {t: {"unified": f"270C-{t}"} for t in ("1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF")}},
    {"unified": "0023-FE0F-20E3", "non_qualified": "0023-20E3", "short_name": "hash", "name": "HASH KEY",
     "category": "Symbols", "sort_order": 3},
    {"unified": "1F3C3", "short_name": "runner", "name": "RUNNER", "category": "People & Body",
     "sort_order": 4, "obsoleted_by": "1F3C3-200D-2642-FE0F"},
    {"unified": "1F3C3-200D-2642-FE0F", "short_name": "man-running", "name": "MAN RUNNING",
     "category": "People & Body", "subcategory": "person-activity", "sort_order": 5, "obsoletes": "1F3C3"},
    {"unified": "1F680", "short_name": "rocket", "name": "ROCKET", "category": "Travel & Places",
     "sort_order": 6},
]
TWEMOJI_FILES = ["1f600", "270c", "270c-1f3fb", "270c-1f3fc", "270c-1f3fd", "270c-1f3fe", "270c-1f3ff",
                 "23-20e3", "1f3c3", "1f3c3-200d-2642-fe0f", "1f680", "1f1e6"]  # 1f1e6: not in the catalogue
GOOGLE_FILES = ["1f600", "270c-fe0f", "270c-1f3fb", "270c-1f3fc", "270c-1f3fd", "270c-1f3fe", "270c-1f3ff",
                "0023-fe0f-20e3", "1f3c3", "1f3c3-200d-2642-fe0f", "1f680"]


def _svg(i: int) -> bytes:
    # A half-transparent disc on a transparent canvas: compositing shows in every pixel.
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 36 36">'
            f'<circle cx="18" cy="18" r="{8 + i % 9}" fill="#{(40 * i) % 256:02x}2080" fill-opacity="0.5"/>'
            f'</svg>').encode()


def _png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A private data/ tree with two pinned, npm-like tarballs already 'downloaded'."""
    raw, processed = tmp_path / "raw", tmp_path / "processed"
    raw.mkdir()
    rng = np.random.default_rng(0)
    tw = {f"package/{c}.svg": _svg(i) for i, c in enumerate(TWEMOJI_FILES)}
    tw["package/license"] = b"MIT"
    go = {"package/emoji.json": json.dumps(CATALOG).encode()}
    for c in GOOGLE_FILES:
        go[f"package/img/google/64/{c}.png"] = _png(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8))
    go["package/img/google/sheets/64.png"] = _png(np.zeros((8, 8, 4), np.uint8))  # not needed: not extracted
    sources = {}
    for key, npm, files in (("twemoji", "@twemoji/svg", tw), ("google", "emoji-datasource-google", go)):
        tarball = _tar(raw / f"{key}-1.0.0.tgz", files)
        sources[key] = {"npm": npm, "version": "1.0.0", "tarball": tarball.name,
                        "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
                        "images": "package/" if key == "twemoji" else "package/img/google/64/",
                        "format": "svg" if key == "twemoji" else "png", "license": "test"}
    sources["google"]["catalog"] = "package/emoji.json"
    manifest = tmp_path / "sources.json"
    manifest.write_text(json.dumps({"format": 1, "default": ["twemoji", "google"], "catalog": "google",
                                    "sources": sources}))
    monkeypatch.setattr(paths, "SOURCES_JSON", manifest)
    monkeypatch.setattr(paths, "RAW_DIR", raw)
    monkeypatch.setattr(paths, "PROCESSED_ROOT", processed)
    return tmp_path


def _folder(tmp_path, name="imgs", n=3, size=40):
    folder = tmp_path / name
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (size, size), (30 * i, 100, 200)).save(folder / f"emoji{i}.png")
    return folder


# ----------------------------------------------------------------------------- decoding

def test_composite_on_white_blends_by_alpha():
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [255, 0, 0, 128], [0, 0, 0, 0]]], np.uint8)
    out = composite_on_white(rgba)
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    assert out[0, 0].tolist() == [255, 0, 0]          # opaque: unchanged
    assert out[0, 1].tolist() == [255, 255, 255]      # transparent red: white, not red
    assert out[0, 2].tolist() == [255, 127, 127]      # half: halfway to white
    assert out[0, 3].tolist() == [255, 255, 255]      # transparent black: white, not black


def test_grayscale_palette_and_16bit_images_become_8bit_rgba():
    gray = to_rgba(Image.fromarray(np.full((2, 2), 77, np.uint8)))
    assert gray.shape == (2, 2, 4) and gray[0, 0].tolist() == [77, 77, 77, 255]

    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0                      # palette entry 0 (red) is transparent
    assert composite_on_white(to_rgba(pal)).tolist() == [[[255, 255, 255], [0, 0, 255]]]

    sixteen = Image.fromarray(np.array([[0, 32896, 65535]], np.uint16))
    assert to_rgba(sixteen)[0, :, 0].tolist() == [0, 128, 255]  # rescaled, not clipped to 255

    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8))
    assert composite_on_white(to_rgba(la)).tolist() == [[[255, 255, 255], [0, 0, 0]]]


def test_open_image_reads_a_16bit_png_from_disk(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(path)
    rgb, animated = open_image(path)
    assert rgb.shape == (4, 4, 3) and rgb.min() == 255 and not animated


def test_vendor_png_downsample_is_antialiased(tmp_path):
    # A 1-px checkerboard: nearest-neighbour would keep pure black/white, area/Lanczos gives gray.
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    path = tmp_path / "board.png"
    Image.fromarray(board).save(path)
    item = data.Item("google", path, "png", "X", "x", "x", "c", (0,))
    framed, _ = data.decode_item(item)
    r32, r64 = framed.images[32], framed.images[64]
    assert r64.shape == (64, 64, 3) and r32.shape == (32, 32, 3) and 128 not in framed.images
    assert np.abs(r32[4:-4, 4:-4].astype(int) - 128).max() < 16


def test_codes_match_with_or_without_fe0f_and_leading_zeros():
    assert normalize_code("0023-FE0F-20E3") == normalize_code("23-20e3") == "23-20e3"
    assert normalize_code("1F3C3-200D-2642-FE0F") == normalize_code("1f3c3-200d-2642")
    assert normalize_code("not-hex") == ""


# ----------------------------------------------------------------------------- split

def test_split_is_grouped_seeded_and_about_80_20():
    rng = np.random.default_rng(1)
    identity = torch.as_tensor(np.repeat(np.arange(400), rng.integers(1, 8, 400)))
    names = [f"emoji{i}" for i in range(400)]
    train, val = split(identity, seed=0, identity_names=names)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(len(identity)))
    assert not set(identity[train].tolist()) & set(identity[val].tolist())
    assert abs(len(val) / len(identity) - 0.2) < 0.01
    again = split(identity, seed=0, identity_names=names)
    assert torch.equal(again[1], val)
    other = split(identity, seed=1, identity_names=names)
    assert not torch.equal(other[1], val)


def test_split_puts_pixel_identical_images_of_different_emojis_on_one_side():
    g = torch.Generator().manual_seed(0)
    identity = torch.arange(200).repeat_interleave(2)
    images = torch.randint(0, 256, (400, 3, 4, 4), dtype=torch.uint8, generator=g)
    # Thirty emojis drawn exactly like another one by some vendor (flags, family glyphs).
    for a in range(30):
        images[2 * (100 + a) + 1] = images[2 * a]
    names = [f"emoji{i}" for i in range(200)]
    plain_train, plain_val = split(identity, seed=0, identity_names=names)
    train, val = split(identity, seed=0, identity_names=names, images=images)
    key = lambda rows: {images[r].numpy().tobytes() for r in rows.tolist()}  # noqa: E731
    assert not key(train) & key(val)
    assert key(plain_train) & key(plain_val)          # without the merge some copies straddle the split
    assert sorted(torch.cat([train, val]).tolist()) == list(range(400))
    assert abs(len(val) / 400 - 0.2) < 0.03


def test_split_keeps_every_vendor_and_skin_tone_of_an_emoji_together(project):
    out = build_dataset(profile=TEST_PROFILE, verbose=False)
    d = torch.load(out, weights_only=True)
    side = {}
    for rows, name in ((d["train_idx"], "train"), (d["val_idx"], "val")):
        for r in rows.tolist():
            ident = d["identity_names"][d["identity"][r]]
            assert side.setdefault(ident, name) == name, f"{ident} is on both sides"
    v = [i for i, c in enumerate(d["codes"]) if c.startswith("270C")]
    assert len(v) == 12                                   # 6 images x 2 vendors
    assert {d["identity_names"][d["identity"][i]] for i in v} == {"v"}
    # RUNNER is drawn like MAN RUNNING by many vendors: one identity.
    runner = [i for i, c in enumerate(d["codes"]) if c.startswith("1F3C3")]
    assert {d["identity_names"][d["identity"][i]] for i in runner} == {"man-running"}


def test_random_split_is_the_reports_seeded_80_20_of_images_and_leaks_emojis():
    identity = torch.arange(300).repeat_interleave(4)            # four drawings of every emoji
    train, val = data.random_split(len(identity), seed=0)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(1200)) and len(val) == 240
    assert torch.equal(data.random_split(1200, seed=0)[1], val)
    assert not torch.equal(data.random_split(1200, seed=1)[1], val)
    assert data.seen_share(identity, train, val) > 0.9           # most val emojis were drawn in train
    grouped = split(identity, seed=0, identity_names=[f"e{i}" for i in range(300)])
    assert data.seen_share(identity, *grouped) == 0.0
    with pytest.raises(ValueError, match="at least 2 images"):
        data.random_split(1, seed=0)


def test_the_random_split_profile_builds_its_own_dataset_beside_the_identity_one(project):
    random_profile = TEST_PROFILE.with_split("random")
    assert (random_profile.name, random_profile.split) == ("test-random", "random")
    ours = torch.load(build_dataset(None, TEST_PROFILE, verbose=False), weights_only=True)
    theirs = torch.load(build_dataset(None, random_profile, verbose=False), weights_only=True)
    assert (ours["split"], theirs["split"]) == ("identity", "random")
    assert paths.dataset_path("test").exists() and paths.dataset_path("test-random").exists()
    assert torch.equal(ours["images32"], theirs["images32"]) and ours["fingerprint"] != theirs["fingerprint"]
    assert data.seen_share(theirs["identity"], theirs["train_idx"], theirs["val_idx"]) > 0
    assert data.dataset_is_current(paths.dataset_path("test-random"), ["twemoji", "google"], random_profile)
    assert not data.dataset_is_current(paths.dataset_path("test-random"), ["twemoji", "google"], TEST_PROFILE)


# ----------------------------------------------------------------------------- building

def test_build_from_pinned_tarballs_labels_and_sizes(project):
    out = build_dataset(["npm:@twemoji/svg", "google"], TEST_PROFILE, verbose=False)
    d = torch.load(out, weights_only=True)
    n = len(TWEMOJI_FILES) - 1 + len(GOOGLE_FILES)     # the regional indicator is not in the catalogue
    assert d["images32"].shape == (n, 3, 32, 32) and d["images32"].dtype == torch.uint8
    assert d["images64"].shape == (n, 3, 64, 64)
    assert d["vendor_names"] == ["twemoji", "google"]
    # 128 px only where it is genuine: every Twemoji row, no Noto row.
    assert d["images128"].shape == (len(TWEMOJI_FILES) - 1, 3, 128, 128)
    assert (d["vendor"][d["index128"]] == 0).all()
    # Transparent corners of the SVG are white after compositing.
    assert (d["images128"][:, :, 0, 0] == 255).all()
    assert "victory hand: dark skin tone" in d["names"]
    # Sub-categories from the catalogue (a skin tone keeps its base's; none given: "unknown"), each in one category.
    assert d["subcategory_names"] == ["face-smiling", "hand-fingers-partial", "person-activity", "unknown"]
    sub_of = {code: d["subcategory_names"][s] for code, s in zip(d["codes"], d["subcategory"].tolist())}
    assert sub_of["270C-1F3FF"] == "hand-fingers-partial" and sub_of["1F680"] == "unknown"
    parents = data.subcategory_parents(d["subcategory"], d["category"], len(d["subcategory_names"]))
    assert [d["category_names"][c] for c in parents[:3].tolist()] == ["Smileys & Emotion", "People & Body",
                                                                       "People & Body"]
    assert d["sources"] == ["npm:@twemoji/svg@1.0.0", "npm:emoji-datasource-google@1.0.0"]
    assert len(d["fingerprint"]) == 64 and d["seed"] == TEST_PROFILE.seed
    assert not (project / "raw" / "google-1.0.0" / "package" / "img" / "google" / "sheets").exists()


def test_rebuild_with_same_sources_does_nothing(project):
    out = build_dataset(None, TEST_PROFILE, verbose=False)
    before = out.stat().st_mtime_ns
    assert build_dataset(["twemoji", "google"], TEST_PROFILE, verbose=False) == out
    assert out.stat().st_mtime_ns == before
    build_dataset(["twemoji"], TEST_PROFILE, verbose=False)   # other sources: rebuilt
    d = torch.load(out, weights_only=True)
    assert d["vendor_names"] == ["twemoji"] and d["category_names"]  # names from the catalogue package


def test_max_emojis_keeps_whole_identities(project):
    small = dataclasses.replace(TEST_PROFILE, max_emojis=2)
    d = torch.load(build_dataset(None, small, verbose=False), weights_only=True)
    assert len(d["identity_names"]) == 2
    for ident in range(2):
        rows = (d["identity"] == ident).nonzero().flatten()
        assert set(d["vendor"][rows].tolist()) == {0, 1}


def test_load_dataset_and_value_ranges(project):
    with pytest.raises(paths.MissingArtifactError, match="run 00_data first"):
        load_dataset("smoke")
    smoke = get_profile("smoke")
    build_dataset(None, smoke, verbose=False)
    ds = load_dataset("smoke")
    assert len(ds) == len(ds.vendor) == len(ds.names)
    assert ds.images(32, "train").shape[0] + ds.images(32, "val").shape[0] == len(ds)
    lo, hi = ds.superres_pairs()
    assert lo.shape[1:] == (3, 64, 64) and hi.shape[1:] == (3, 128, 128) and len(lo) == len(hi)
    for split in ("train", "val"):   # the rows of each split's pairs, in their order
        rows = ds.superres_rows(split)
        assert torch.equal(ds.images64[rows], ds.superres_pairs(split)[0]) and set(rows.tolist()) <= set(ds.rows(split).tolist())
    assert len(ds.superres_rows("train")) + len(ds.superres_rows("val")) == len(lo)
    ladder = data.size_ladder(ds, n=4)
    assert [tuple(t.shape) for t in ladder.values()] == [(4, 3, s, s) for s in (32, 64, 128)]
    # The sizes show the same images: 128 px pooled to 64 px is close to the 64 px rendering.
    pooled = torch.nn.functional.avg_pool2d(ladder[128].float(), 2)
    assert (pooled - ladder[64].float()).abs().mean() < 8
    x = to_model_input(torch.tensor([0, 255], dtype=torch.uint8))
    assert x.tolist() == [-1.0, 1.0]
    already = torch.tensor([-0.5, 0.25], dtype=torch.float64)       # float images are in [-1, 1] already
    assert to_model_input(already).dtype == torch.float32 and to_model_input(already).tolist() == [-0.5, 0.25]
    assert to_unit(torch.tensor([-2.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]


def test_shift_on_white_moves_the_picture_and_fills_white():
    images = torch.randint(0, 200, (2, 3, 6, 5), dtype=torch.uint8)    # no white pixel inside
    down = shift_on_white(images, 2, 0)
    assert torch.equal(down[:, :, 2:], images[:, :, :4]) and (down[:, :, :2] == 255).all()
    left = shift_on_white(images, 0, -1)
    assert torch.equal(left[:, :, :, :4], images[:, :, :, 1:]) and (left[:, :, :, 4] == 255).all()
    both = shift_on_white(images, -1, 3)
    assert torch.equal(both[:, :, :5, 3:], images[:, :, 1:, :2]) and (both == 255).sum() == 2 * 3 * (6 * 5 - 5 * 2)
    assert torch.equal(shift_on_white(images, 0, 0), images)
    with pytest.raises(ValueError, match="leaves nothing"):
        shift_on_white(images, 6, 0)


def test_mirrored_shifted_copies_are_the_mirror_then_four_shifts_in_order():
    images = torch.randint(0, 200, (2, 3, 6, 5), dtype=torch.uint8)
    copies = mirrored_shifted_copies(images, flip=True, shift=1)
    assert len(copies) == 5 and torch.equal(copies[0], images.flip(-1))
    for copy, move in zip(copies[1:], [(1, 0), (-1, 0), (0, 1), (0, -1)]):
        assert torch.equal(copy, shift_on_white(images, *move))
    assert mirrored_shifted_copies(images, flip=False, shift=0) == []
    assert len(mirrored_shifted_copies(images, flip=False, shift=2)) == 4


def test_random_flip_shift_mirrors_some_images_and_moves_each_within_its_range_on_white():
    images = torch.randint(0, 200, (64, 3, 6, 5), dtype=torch.uint8)
    torch.manual_seed(0)
    out = random_flip_shift(images, flip=True, shift=1)
    torch.manual_seed(0)
    assert torch.equal(random_flip_shift(images, flip=True, shift=1), out)     # seeded: reproducible
    candidates = lambda img: [shift_on_white(v[None], dy, dx)[0] for v in (img, img.flip(-1))  # noqa: E731
                              for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    which = [next(k for k, c in enumerate(candidates(img)) if torch.equal(c, o)) for img, o in zip(images, out)]
    assert 10 < sum(k >= 9 for k in which) < 54                 # about half mirrored
    assert len(set(k % 9 for k in which)) == 9                  # every move of the 3x3 range happens
    assert random_flip_shift(images, flip=False, shift=0) is images
    moved = random_flip_shift(images, flip=False, shift=2)
    assert all(any(torch.equal(shift_on_white(img[None], dy, dx)[0], o) for dy in range(-2, 3) for dx in range(-2, 3))
               for img, o in zip(images, moved))


# ----------------------------------------------------------------------------- pinned sources

def test_tarball_with_wrong_sha256_is_refused_and_kept(project):
    src = resolve_source("google")
    tarball = project / "raw" / src.tarball
    tarball.write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="untouched"):
        fetch(src)
    assert tarball.read_bytes() == b"tampered"


def _fake_npm(tmp_path, monkeypatch, script: str):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir))


def test_downloaded_tarball_with_wrong_sha256_is_not_saved(project, monkeypatch):
    src = resolve_source("google")
    (project / "raw" / src.tarball).unlink()
    _fake_npm(project, monkeypatch,
              'while [ $# -gt 0 ]; do [ "$1" = --pack-destination ] && d="$2"; shift; done\n'
              'echo other > "$d/x-1.0.0.tgz"\n')
    with pytest.raises(ChecksumError, match="Nothing was saved"):
        fetch(src)
    assert not (project / "raw" / src.tarball).exists()
    assert not [p for p in (project / "raw").iterdir() if p.name.startswith(".npm-pack")]


def test_failed_npm_pack_says_what_to_do(project, monkeypatch):
    src = resolve_source("google")
    (project / "raw" / src.tarball).unlink()
    _fake_npm(project, monkeypatch, 'echo "npm error code ENOTFOUND" >&2\nexit 1\n')
    with pytest.raises(FetchError, match="ENOTFOUND(.|\n)*Check the network"):
        fetch(src)


def test_missing_npm_says_install_nodejs(project, monkeypatch):
    src = resolve_source("google")
    (project / "raw" / src.tarball).unlink()
    monkeypatch.setenv("PATH", str(project / "nowhere"))
    with pytest.raises(FetchError, match="Node.js"):
        fetch(src)


def test_unpinned_package_and_unknown_source_are_explained(project):
    with pytest.raises(DataError, match="not pinned"):
        resolve_source("npm:left-pad")
    with pytest.raises(DataError, match="not the pinned one"):
        resolve_source("npm:@twemoji/svg@9.9.9")
    with pytest.raises(DataError, match="unknown source"):
        resolve_source("noto")
    assert resolve_source("npm:@twemoji/svg@1.0.0").vendor == "twemoji"


@pytest.mark.parametrize("evil", ["package/../../evil.txt", "/tmp/emojivq-evil.txt", "link"])
def test_tar_member_escaping_the_folder_is_refused(tmp_path, evil):
    tarball = tmp_path / "evil.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        good = tarfile.TarInfo("package/ok.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        if evil == "link":
            link = tarfile.TarInfo("package/link")
            link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
            tar.addfile(link)
        else:
            info = tarfile.TarInfo(evil)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    dest = tmp_path / "out" / "pkg"
    with pytest.raises(UnsafeArchiveError, match="refused"):
        extract(tarball, dest)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "out").iterdir())          # no half-extracted temp folder left


def test_extraction_is_done_once(project):
    src = resolve_source("twemoji")
    root = data.unpack(src)
    stamp = (root / ".extracted").stat().st_mtime_ns
    (root / "package" / "1f600.svg").unlink()              # would reappear if re-extracted
    assert data.unpack(src) == root and (root / ".extracted").stat().st_mtime_ns == stamp
    assert not (root / "package" / "1f600.svg").exists()


# ----------------------------------------------------------------------------- folder sources

def test_folder_source_skips_bad_files_in_one_warning(project):
    folder = _folder(project, n=2, size=200)
    good = (folder / "emoji0.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "corrupt.png").write_bytes(good[:40] + os.urandom(200))
    Image.new("L", (10_001, 1)).save(folder / "huge.png")  # tiny file, too many pixels a side
    frames = [Image.new("RGB", (50, 50), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(np.full((3, 3), 40000, np.uint16)).save(folder / "gray16.png")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = build_dataset([f"folder:{folder}"], TEST_PROFILE, verbose=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    skipped = [m for m in messages if "skipped" in m]
    assert len(skipped) == 1 and "skipped 5 unusable" in skipped[0]
    for name in ("truncated.png", "empty.png", "notes.txt", "corrupt.png", "huge.png"):
        assert name in skipped[0]
    assert any("animated" in m and "first frame" in m and "anim.gif" in m for m in messages)

    d = torch.load(out, weights_only=True)
    assert sorted(d["identity_names"]) == ["anim", "emoji0", "emoji1", "gray16"]
    assert d["category_names"] == ["unknown"] and d["subcategory_names"] == ["unknown"]
    anim = d["codes"].index("anim")
    assert d["images32"][anim, :, 16, 16].tolist() == [255, 0, 0]     # the first frame
    # 128 px only for images that have that many pixels (the 200 px ones).
    assert sorted(d["codes"][i] for i in d["index128"].tolist()) == ["emoji0", "emoji1"]


def test_huge_image_is_refused_before_decoding(tmp_path):
    Image.new("L", (12_000, 2)).save(tmp_path / "wide.png")
    with pytest.raises(BadImage, match="too large"):
        open_image(tmp_path / "wide.png")


def test_empty_folder_is_a_clear_error(project):
    (project / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        build_dataset([f"folder:{project / 'empty'}"], TEST_PROFILE, verbose=False)
    with pytest.raises(DataError, match="no such folder"):
        build_dataset([f"folder:{project / 'missing'}"], TEST_PROFILE, verbose=False)
    junk = project / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"")
    with pytest.warns(DataWarning, match="skipped 1"), pytest.raises(DataError, match="no usable image"):
        build_dataset([f"folder:{junk}"], TEST_PROFILE, verbose=False)


def test_failing_build_leaves_the_previous_dataset_untouched(project):
    out = build_dataset([f"folder:{_folder(project)}"], TEST_PROFILE, verbose=False)
    before = out.read_bytes()
    (project / "empty").mkdir()
    with pytest.raises(DataError):
        build_dataset([f"folder:{project / 'empty'}"], TEST_PROFILE, verbose=False)
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["dataset.pt"]   # no temp file left


def test_changed_folder_is_rebuilt(project):
    folder = _folder(project)
    out = build_dataset([f"folder:{folder}"], TEST_PROFILE, verbose=False)
    Image.new("RGB", (40, 40)).save(folder / "new.png")
    build_dataset([f"folder:{folder}"], TEST_PROFILE, verbose=False)
    assert "new" in torch.load(out, weights_only=True)["codes"]


# ----------------------------------------------------------------------------- the real packages

@pytest.mark.parametrize("vendor, min_items, max_unknown", [
    ("twemoji", 3600, 80),     # drops FE0F and leading zeros
    ("openmoji", 3780, 720),   # upper case; its private-use extras are not emojis
    ("fluent3d", 3370, 5),     # lower case, "_" in subdivision flags without their CANCEL TAG
])
def test_real_vendor_file_names_match_the_catalogue(vendor, min_items, max_unknown):
    """With the pinned packages in data/raw (fetched once if missing, as 00_data does), almost every
    file of a vendor must find its emoji.json entry despite each vendor's spelling of codes."""
    src, go = resolve_source(vendor), resolve_source("google")
    with skip_if_unfetchable():
        src_root, go_root = data.unpack(src), data.unpack(go)
    catalog = load_catalog(go_root / go.catalog)
    items, unknown = data.npm_items(src, src_root, catalog)
    assert len(items) >= min_items and len(unknown) <= max_unknown


@pytest.mark.parametrize("ci, outcome", [(None, pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_unfetchable_packages_skip_a_test_but_fail_it_under_ci(tmp_path, monkeypatch, ci, outcome):
    monkeypatch.setattr(data.sources.shutil, "which", lambda name: None)   # no npm here
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="cannot be fetched here: npm was not found"):
        with skip_if_unfetchable():
            fetch(resolve_source("twemoji"), tmp_path)


# ----------------------------------------------------------------------------- framing and the new vendors

def _rgba_rect(side: int, top: int, left: int, h: int, w: int, opaque_background: bool = False) -> np.ndarray:
    rgba = np.zeros((side, side, 4), np.uint8)
    if opaque_background:
        rgba[...] = 255
    rgba[top:top + h, left:left + w] = (200, 30, 30, 255)
    return rgba


def _drawn_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    return data.content_box(opaque)


@pytest.mark.parametrize("opaque_background", [False, True])
def test_frame_centres_the_content_box_at_the_frame_share(opaque_background):
    # An off-centre 30 x 20 px drawing on a 100 px canvas; without transparency the box is the non-white pixels.
    framed = data.frame(_rgba_rect(100, 10, 60, 30, 20, opaque_background), sizes=(32,), always=(32,))
    top, left, bottom, right = _drawn_box(framed.images[32])
    assert bottom - top == 30 and abs((top + bottom) / 2 - 16) <= 0.5      # 15/16 of 32 px, centred
    assert abs((right - left) - 20) <= 1 and abs((left + right) / 2 - 16) <= 1
    assert framed.share == pytest.approx(0.3)


def test_the_same_drawing_at_different_margins_is_framed_alike():
    yy, xx = np.mgrid[:256, :256]
    def disc(radius):
        rgba = np.zeros((256, 256, 4), np.uint8)
        rgba[(yy - 128) ** 2 + (xx - 128) ** 2 < radius ** 2] = (250, 200, 20, 255)
        return rgba
    edge_to_edge, small = data.frame(disc(128), sizes=(32,)), data.frame(disc(80), sizes=(32,))
    assert small.share < 0.65 < 0.99 < edge_to_edge.share
    diff = np.abs(edge_to_edge.images[32].astype(int) - small.images[32].astype(int))
    assert diff.mean() < 3


def test_frame_makes_128_px_only_where_the_crop_has_the_pixels():
    assert sorted(data.frame(_rgba_rect(64, 2, 2, 60, 60)).images) == [32, 64]          # a 64 px PNG
    assert sorted(data.frame(_rgba_rect(256, 20, 20, 200, 200)).images) == [32, 64, 128]
    small = data.frame(_rgba_rect(256, 100, 100, 40, 40))                              # a 43 px crop
    assert sorted(small.images) == [32, 64] and small.images[64].shape == (64, 64, 3)


def test_empty_drawing_keeps_the_whole_canvas():
    assert data.content_box(np.zeros((10, 12, 4), np.uint8)) == (0, 0, 10, 12)


def test_subdivision_flag_without_its_cancel_tag_matches_the_catalogue():
    # Fluent 3D: "1f3f4-e0067_e0062_e0065_e006e_e0067"; emoji.json: "1F3F4-E0067-...-E0067-E007F".
    assert normalize_code("1f3f4-e0067_e0062_e0065_e006e_e0067") == \
        normalize_code("1F3F4-E0067-E0062-E0065-E006E-E0067-E007F")
    assert normalize_code("1F3F4") == "1f3f4"


def _add_source(project, key, npm, files: dict[str, bytes], fmt: str, images: str = "package/"):
    """Pin one more npm-like tarball in the project's manifest (not in its default set)."""
    manifest = json.loads((project / "sources.json").read_text())
    tarball = _tar(project / "raw" / f"{key}-1.0.0.tgz", files)
    manifest["sources"][key] = {"npm": npm, "version": "1.0.0", "tarball": tarball.name, "format": fmt,
                                "sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
                                "images": images, "license": "test"}
    (project / "sources.json").write_text(json.dumps(manifest))


def _webp(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="WEBP", lossless=True)
    return buf.getvalue()


def test_decoding_in_two_processes_gives_what_one_gives_in_order(tmp_path):
    from helpers.data.build import Item, decode_items

    folder = _folder(tmp_path, n=5, size=150)
    (folder / "broken.png").write_bytes((folder / "emoji0.png").read_bytes()[:60])
    (folder / "drawing.svg").write_bytes(_svg(2))
    items = [Item("v", p, "svg" if p.suffix == ".svg" else "image", p.stem, p.stem, p.stem, "unknown", (i,))
             for i, p in enumerate(sorted(folder.iterdir()))]
    alone, spread = list(decode_items(items, 1)), list(decode_items(items, 2))
    assert [why is None for _, why in alone] == [p.name != "broken.png" for p in sorted(folder.iterdir())]
    assert [why for _, why in spread] == [why for _, why in alone]
    for (one, _), (two, _) in zip(alone, spread):
        if one is not None:
            assert one[0].share == two[0].share and one[0].images.keys() == two[0].images.keys()
            assert all(np.array_equal(one[0].images[k], two[0].images[k]) for k in one[0].images)


def test_webp_and_svg_vendors_skip_undecodable_files_and_name_them(project):
    good = _webp(_rgba_rect(256, 30, 30, 190, 190))
    _add_source(project, "fluent", "@test/fluent", {
        "package/assets/1f600.webp": good, "package/assets/1f680.webp": good[: len(good) // 2],
        "package/assets/270c.webp": good, "package/assets/e000.webp": good}, "webp", "package/assets/")
    _add_source(project, "openmoji", "openmoji-test", {
        "package/1F600.svg": _svg(3), "package/1F680.svg": b"<svg this is not"}, "svg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = build_dataset(["google", "fluent", "openmoji"], TEST_PROFILE, verbose=False)
    skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert any(m.startswith("fluent: skipped 1") and "1f680.webp" in m for m in skipped)
    assert any(m.startswith("openmoji: skipped 1") and "1F680.svg" in m for m in skipped)
    d = torch.load(out, weights_only=True)
    fluent = d["vendor_names"].index("fluent")
    assert sorted(c for c, v in zip(d["codes"], d["vendor"].tolist()) if v == fluent) == ["1F600", "270C-FE0F"]
    assert d["left_out"] == {"google": 0, "fluent": 1, "openmoji": 0}      # e000: private use
    fluent_rows = torch.nonzero(d["vendor"] == fluent).flatten()
    assert torch.isin(fluent_rows, d["index128"]).all()                   # 256 px sources: genuine 128 px
    assert d["content_share"].shape == (len(d["codes"]),)


def test_unknown_image_format_in_the_manifest_is_refused(project):
    _add_source(project, "odd", "@test/odd", {"package/1f600.bmp": b"x"}, "bmp")
    with pytest.raises(DataError, match="format 'bmp'"):
        build_dataset(["odd"], TEST_PROFILE, verbose=False)
