"""The notebooks tell the story in short cells, and nothing in them goes stale: no code cell over
15 lines (helpers/ does the work), and no commit, date or machine in any cell (run history lives
in docs/EXPERIMENTS.md and the metrics files)."""

import re

import pytest

from _notebooks import read, source
from helpers import paths

NOTEBOOKS = sorted(p.stem for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
MAX_LINES = 15
# a hex run with letters and digits (a commit), an ISO date, a CPU family or vendor
STALE = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b|\b20\d\d-\d\d-\d\d\b|"
                   r"\bZen ?\d\b|\bEPYC\b|\bXeon\b|\bRyzen\b|\bAVX2 machine\b|\breference machine\b")
# named things that look like the above and are not run history
KNOWN = {"2015-12-05"}   # the TF-Inception release every FID uses


def test_the_notebooks_are_all_here():
    assert NOTEBOOKS == ["00_data", "01_vqvae", "02_pixelcnn", "03_vqvae2", "04_pixelsnail", "05_extensions",
                         "06_analysis"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_code_cell_is_longer_than_15_lines(name):
    long = [(i, len(source(c).splitlines())) for i, c in enumerate(read(name)["cells"])
            if c["cell_type"] == "code" and len(source(c).splitlines()) > MAX_LINES]
    assert not long, f"{name}: cells (index, lines) over {MAX_LINES} lines: {long}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_cell_names_a_commit_date_or_machine(name):
    found = [(i, m.group(0)) for i, c in enumerate(read(name)["cells"])
             for m in STALE.finditer(source(c)) if m.group(0) not in KNOWN]
    assert not found, f"{name}: run history in cells (index, text): {found}"


def test_the_check_finds_what_it_looks_for():
    assert STALE.search("in the 325de69 run") and STALE.search("on 2026-11-25") and STALE.search("a Zen 4 CPU")
    assert not STALE.search("val NLL of the prior, 8x8 codes, seed 4")
