"""Every document a docstring, comment, notebook, the README or another document points to is in
the repo, and so is the section it names: a pointer that leads nowhere is prose gone stale. The
tables that stand for the code (the profiles' budgets, the decisions behind the defaults) agree
with it."""

import json
import re

from helpers import paths

ROOT = paths.PROJECT_ROOT
# docs/NAME.md, then optionally a section in quotes: `docs/X.md, "Section"` or `docs/X.md ("Section")`
POINTER = re.compile(r"(docs/[A-Za-z_/]+\.md)(?:\)?,? ?\(?\"([^\"]+)\")?")


def _texts():
    for path in sorted([*ROOT.glob("helpers/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("tests/*.py"),
                        *ROOT.glob("docs/**/*.md"), ROOT / "README.md", ROOT / "pyproject.toml",
                        ROOT / "Makefile"]):
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


def test_every_relative_link_of_the_readme_and_the_docs_leads_somewhere():
    broken = []
    for path in [ROOT / "README.md", *sorted(ROOT.glob("docs/**/*.md"))]:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", path.read_text()):
            if not (path.parent / target).exists():
                broken.append((str(path.relative_to(ROOT)), target))
    assert not broken, f"links to files or folders the repo does not have: {broken}"


def test_the_pointer_pattern_reads_both_forms():
    text = 'see docs/EXPERIMENTS.md, "The priors" and (docs/PERFORMANCE.md, "A busy machine") or docs/X.md.'
    assert [(m.group(1), m.group(2)) for m in POINTER.finditer(text)] == [
        ("docs/EXPERIMENTS.md", "The priors"), ("docs/PERFORMANCE.md", "A busy machine"), ("docs/X.md", None)]


def _budget_rows() -> dict[str, list[str]]:
    """The rows the profile table of docs/ARCHITECTURE.md ("Profiles") must have, from the code."""
    from helpers.profiles import PROFILES

    order = [PROFILES[name] for name in ("smoke", "quick", "full", "curves", "large")]

    def steps(table: dict, keys: list[str]) -> str:
        return " / ".join(str(table.get(k, "—")) for k in keys)

    cells = {
        "VQ-VAE 32x32 / its 16x16-latent side model (01)": lambda p: f"{p.vqvae_steps} / {p.latent16_steps}",
        "PixelCNN / gated PixelCNN / transformer / masked transformer (02)":
            lambda p: steps(p.prior_steps, ["pixelcnn", "gated_pixelcnn", "transformer", "maskgit"]),
        "VQ-VAE-2 64x64 (03)": lambda p: str(p.vqvae2_steps),
        "PixelSNAIL top / bottom (04)": lambda p: steps(p.prior2_steps, ["pixelsnail_top", "pixelsnail_bottom"]),
        "PixelCNN top / bottom (04)": lambda p: steps(p.prior2_steps, ["pixelcnn_top", "pixelcnn_bottom"]),
        "super-resolution decoder (05) / GAN-test classifier, per size (02, 04)":
            lambda p: f"{p.superres_steps} / {p.classifier_steps}",
        "code grids per prior step (02, 04)": lambda p: str(p.prior_batch_size),
        "samples per prior for FID / images per split evaluated, seeded (—: all)":
            lambda p: f"{p.n_samples} / {p.eval_limit or '—'}",
    }
    return {label: [f(p) for p in order] for label, f in cells.items()}


def test_the_documented_budgets_are_the_profiles():
    text = (ROOT / "docs/ARCHITECTURE.md").read_text()
    assert "| model | smoke | quick | full | curves | large |" in text
    documented = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in _budget_rows():
            documented[cells[0]] = cells[1:]
    assert documented == _budget_rows(), "docs/ARCHITECTURE.md's profile table differs from helpers/profiles.py"


def _decisions() -> list[list[str]]:
    """The rows of docs/EXPERIMENTS.md's table of decisions: setting, value, why, evidence."""
    text = (ROOT / "docs/EXPERIMENTS.md").read_text()
    table = text.split("## Decisions", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith(("| setting |", "| --- |"))]


def test_every_decision_names_sections_that_are_there():
    rows = _decisions()
    assert len(rows) > 20 and all(len(r) == 4 for r in rows), [r for r in rows if len(r) != 4]
    named = [(r[0], s) for r in rows for s in re.findall(r'"([^"]+)"', r[3])]
    assert len(named) >= len(rows)                           # every row names its evidence
    missing = [(setting, s) for setting, s in named if s not in _headings("docs/EXPERIMENTS.md")]
    assert not missing, f"decisions whose evidence section is not in docs/EXPERIMENTS.md: {missing}"


def test_every_section_the_code_cites_is_in_the_table_of_decisions():
    evidence = " ".join(r[3] for r in _decisions())
    cited = {s for where, doc, s in pointers() if doc == "docs/EXPERIMENTS.md" and s not in (None, "Decisions")
             and where.startswith(("helpers/", "notebooks/", "benchmarks/"))}
    assert cited                                              # the code does point into the lab book
    absent = sorted(s for s in cited if f'"{s}"' not in evidence)
    assert not absent, f"sections the code cites that the table of decisions does not name: {absent}"


def test_the_readme_is_short_and_opens_with_how_it_works():
    """A reader meets what the project is, one picture and how the method works before anything
    else; the provenance of the figures lives in docs/results/, so the README stays at 150 lines."""
    text = (ROOT / "README.md").read_text()
    sections = re.findall(r"^## (.+)$", text, flags=re.M)
    assert len(text.splitlines()) <= 150, f"README.md has {len(text.splitlines())} lines (at most 150)"
    assert sections[:2] == ["How it works", "Commands"], sections
    assert text.split("## How it works")[0].count("![") == 1, "one picture before How it works"
