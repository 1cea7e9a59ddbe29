"""Every document a docstring, comment, notebook or the README points to is in the repo, and so is
the section it names: a pointer that leads nowhere is prose gone stale."""

import json
import re

from helpers import paths

ROOT = paths.PROJECT_ROOT
# docs/NAME.md, then optionally a section in quotes: `docs/X.md, "Section"` or `docs/X.md ("Section")`
POINTER = re.compile(r"(docs/[A-Za-z_]+\.md)(?:\)?,? ?\(?\"([^\"]+)\")?")


def _texts():
    for path in sorted([*ROOT.glob("helpers/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("tests/*.py"),
                        ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "Makefile"]):
        if path.name != "test_doc_links.py":
            yield path.relative_to(ROOT), path.read_text()
    for path in sorted(ROOT.glob("notebooks/*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        yield path.relative_to(ROOT), "\n".join("".join(c["source"]) for c in cells)


def _headings(doc: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", (ROOT / doc).read_text(), re.M)}


def pointers():
    for where, text in _texts():
        for m in POINTER.finditer(re.sub(r"\n\s*#?", " ", text)):
            yield str(where), m.group(1), m.group(2) and re.sub(r"\s+", " ", m.group(2))


def test_every_pointed_to_document_and_section_exists():
    found = list(pointers())
    assert len(found) > 10                     # the search finds the pointers it is here to check
    missing = [(w, d) for w, d, _ in found if not (ROOT / d).exists()]
    assert not missing, f"pointers to documents the repo does not have: {missing}"
    stale = [(w, d, s) for w, d, s in found if s and s not in _headings(d)]
    assert not stale, f"pointers to sections that are not there: {stale}"


def test_the_pointer_pattern_reads_both_forms():
    text = 'see docs/EXPERIMENTS.md, "The priors" and (docs/PERFORMANCE.md, "A busy machine") or docs/X.md.'
    assert [(m.group(1), m.group(2)) for m in POINTER.finditer(text)] == [
        ("docs/EXPERIMENTS.md", "The priors"), ("docs/PERFORMANCE.md", "A busy machine"), ("docs/X.md", None)]
