"""The prose of the notebooks and of helpers/ does not go stale. Notebooks tell the story in short
cells (no code cell over 15 lines: helpers/ does the work; no line wider than 100 characters: a
cell reads without scrolling sideways). Neither a cell nor a comment or docstring of helpers/
carries run history: no commit, date or machine, and no measured figure (a quantity in dB, nats,
minutes, seconds ..., a metric's value, a "before -> after"). Those belong in docs/EXPERIMENTS.md
and docs/PERFORMANCE.md, and in the metrics files of a run; code says why and points there
(docs/EXPERIMENTS.md, "Decisions")."""

import ast
import io
import re
import tokenize

import pytest

from _notebooks import read, source
from helpers import paths
from helpers.report import ROWS

ROOT = paths.PROJECT_ROOT
NOTEBOOKS = sorted(p.stem for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
HELPERS = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("helpers/**/*.py"))
MAX_LINES = 15
MAX_WIDTH = 100
# a hex run with letters and digits (a commit), an ISO date, a CPU family or vendor
STALE = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b|\b20\d\d-\d\d-\d\d\b|"
                   r"\bZen ?\d\b|\bEPYC\b|\bXeon\b|\bRyzen\b|\bAVX2 machine\b|\breference machine\b")
NUM = r"\d+(?:\.\d+)?"
UNITS = r"dB|nats?|min|minutes|hours|seconds|sec|ms|img/s|images/s|steps/s|grids/s|it/s|GFLOPs?(?:/s)?|[KMG]i?B"
METRICS = r"FID|KID|PSNR|SSIM|NLL|perplexity|accuracy|precision|recall"
# A measured figure: a quantity with its unit (a target, "within 15 minutes", "at most 15 minutes",
# is not one), a metric's value, a "before -> after", a speed ratio, or the word that opens a result.
MEASURED = re.compile(
    rf"(?<!within )(?<!at most )\b{NUM} ?(?:{UNITS})\b|\b{NUM} s\b"
    rf"|\b(?:{METRICS}) (?:of |= ?|: ?)?{NUM}\b"
    rf"|\b\d+\.\d+x? ?-> ?\d+\.\d+"
    rf"|\b{NUM} ?x (?:faster|slower|as fast|as long|the speed)\b"
    rf"|\bMeasured\b")
# Things that look like the above and are not run history: each a definition, not a measurement.
KNOWN = {
    "2015-12-05",     # the TF-Inception release every FID uses
    "100 dB",         # PSNR_CAP_DB: the cap of one image's PSNR
    "5.7 GFLOP",      # the Inception network's cost per image at 299x299, a property of the network
}
# The original report's figures ("its FID 341"): quoted beside ours, never measured here.
REPORT = {f"{r.report:g}" for r in ROWS if isinstance(r.report, (int, float))}


def _without_quoted_headings(text: str) -> str:
    """``text`` without the quoted section titles it points to ("Full within 150 minutes ..."):
    a title names evidence, it does not state it."""
    headings = {m.group(1).strip() for doc in ROOT.glob("docs/**/*.md")
                for m in re.finditer(r"^#+ (.+)$", doc.read_text(), re.M)}
    return re.sub(r'"([^"]+)"', lambda m: '""' if m.group(1) in headings else m.group(0), text)


def history(text: str) -> list[str]:
    """Every piece of run history in ``text`` (prose whose line breaks may fall anywhere)."""
    text = _without_quoted_headings(re.sub(r"\s+", " ", text))
    found = [m.group(0) for pattern in (STALE, MEASURED) for m in pattern.finditer(text)]
    return [f for f in found if f not in KNOWN and not re.fullmatch(rf"(?:{METRICS}) ({'|'.join(REPORT)})", f)]


def prose(file) -> list[tuple[int, str]]:
    """(first line, text) of every comment block and docstring of a Python file; the lines of a
    comment block (consecutive lines that are comments, or end in one) are joined."""
    text = file.read_text()
    blocks: list[tuple[int, str]] = []
    last = -1
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type != tokenize.COMMENT:
            continue
        line, comment = tok.start[0], tok.string.lstrip("#").strip()
        if blocks and line == last + 1:
            blocks[-1] = (blocks[-1][0], f"{blocks[-1][1]} {comment}")
        else:
            blocks.append((line, comment))
        last = line
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                blocks.append((node.body[0].lineno, doc))
    return blocks


def test_the_notebooks_are_all_here():
    assert NOTEBOOKS == ["00_data", "01_vqvae", "02_pixelcnn", "03_vqvae2", "04_pixelsnail", "05_extensions",
                         "06_analysis"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_code_cell_is_longer_than_15_lines(name):
    long = [(i, len(source(c).splitlines())) for i, c in enumerate(read(name)["cells"])
            if c["cell_type"] == "code" and len(source(c).splitlines()) > MAX_LINES]
    assert not long, f"{name}: cells (index, lines) over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_code_line_is_wider_than_100_characters(name):
    wide = [(i, len(line)) for i, c in enumerate(read(name)["cells"]) if c["cell_type"] == "code"
            for line in source(c).splitlines() if len(line) > MAX_WIDTH]
    assert not wide, f"{name}: code lines (cell index, width) over {MAX_WIDTH} characters: {wide}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_cell_carries_run_history(name):
    found = [(i, h) for i, c in enumerate(read(name)["cells"]) for h in history(source(c))]
    assert not found, f"{name}: run history in cells (index, text): {found}"


@pytest.mark.parametrize("path", HELPERS)
def test_no_comment_or_docstring_of_helpers_carries_run_history(path):
    found = [(line, h) for line, text in prose(ROOT / path) for h in history(text)]
    assert not found, (f"{path}: run history in comments or docstrings (line, text): {found}; say why and point "
                       'to the evidence (docs/EXPERIMENTS.md, "Decisions") instead')


def test_the_check_finds_what_it_looks_for():
    assert STALE.search("in the 325de69 run") and STALE.search("on 2026-11-25") and STALE.search("a Zen 4 CPU")
    assert not STALE.search("val NLL of the prior, 8x8 codes, seed 4")
    for measured in ["+0.09 dB over the last quarter", "0.07 nats of the val NLL", "took 14 min more",
                     "FID 103.8 -> 89.1", "Measured (2 min, 1 core)", "perplexity 141", "about 20 minutes",
                     "~3x faster on CPU", "import costs ~1 s", "trains at 74 img/s", "2.79x -> 2.55x"]:
        assert history(measured), measured
    for definition in ["32x32 -> 8x8 codes", "super-resolution 64 -> 128", "0..65535 -> 0..255", "the seed 4",
                       "a first look within 15 minutes", "at most 15 minutes for the chain", "PSNR capped at 100 dB",
                       "restart_window: 20 steps", "10 % of the labels", "1000s of images", "01/03 -> 02/04",
                       'docs/EXPERIMENTS.md, "Full within 150 minutes on either reference CPU"',
                       "the report's FID 341", "PSNR 29.24 dB, SSIM 0.954 (the report's)"]:
        assert not history(definition), definition


def test_comment_blocks_and_docstrings_are_read_whole(tmp_path):
    file = tmp_path / "m.py"
    file.write_text('"""Module: 3 dB."""\n\nx = 1  # a comment\n# that goes on\n\n# another\n'
                    'def f():\n    """Doc."""\n')
    assert sorted(prose(file)) == [(1, "Module: 3 dB."), (3, "a comment that goes on"), (6, "another"), (8, "Doc.")]
