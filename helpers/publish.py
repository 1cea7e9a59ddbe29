"""The executed notebooks of a run as HTML pages a reader can open without running anything.

:func:`export_notebooks` turns the executed copies that ``python -m helpers.pipeline`` leaves in
``artifacts/<profile>/runs/`` into one self-contained HTML page each under ``docs/notebooks/``:
every figure inside the page as a data URI, no stylesheet or script fetched from elsewhere (only
a notebook with ``$...$`` maths in its text asks a CDN for MathJax, and reads as plain text
without it). ``python -m helpers.report --profile full --readme``, the command that publishes a
run's results table, calls it, so the pages and the table always come from the same run.

Only notebooks that finished are exported (their resume stamp, ``runs/<NN_name>.done.json``,
exists): a failed one's copy holds a traceback, not results. The pages of an earlier export are
replaced as a whole, never mixed with the new ones; with nothing finished, the folder is left as
it is. The export must stay small enough to commit: over :data:`MAX_BYTES` in all it is refused
before anything is written.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from . import paths
from .checkpoints import atomic_write
from .pipeline import stamp_path

EXPORT_DIR = paths.PROJECT_ROOT / "docs" / "notebooks"
MAX_BYTES = 10 * 2 ** 20         # all pages together: a few MB in the repository, not tens
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MATHJAX = ('<script>window.MathJax = {tex: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]]}};</script>\n'
           '<script async src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>\n')
# The "basic" template gives the cells without the whole JupyterLab stylesheet that the "lab" one
# inlines into every page; these rules are enough to read them.
CSS = """
body { font-family: system-ui, sans-serif; line-height: 1.5; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
.cell { margin: 0.8em 0; }
.prompt, .anchor-link { display: none; }
.input_area { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 4px; padding: 0.3em 0.8em; }
pre { margin: 0; overflow-x: auto; font-size: 0.85em; }
.output_text pre { padding: 0.3em 0.8em; }
.output_stderr { background: #fff5f5; }
img { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #d0d7de; padding: 0.2em 0.6em; text-align: right; }
th { background: #f6f8fa; }
"""


def finished_notebooks(profile: str) -> tuple[list[Path], list[str]]:
    """The executed copies under ``runs/`` of the notebooks that finished, in chain order, and the
    names of those whose copy is there without a finished run's stamp."""
    runs = paths.runs_dir(profile)
    executed = sorted(runs.glob("[0-9][0-9]_*.ipynb")) if runs.is_dir() else []
    done = [p for p in executed if stamp_path(profile, p).exists()]
    return done, [p.stem for p in executed if p not in done]


def _last_state(text: str) -> str:
    """A stream as a terminal shows it: of a line redrawn with carriage returns (a progress bar),
    only its last drawing."""
    lines = []
    for line in text.split("\n"):
        drawn = [part for part in line.split("\r") if part]
        lines.append(drawn[-1] if drawn else "")
    return "\n".join(lines)


def _local(text: str) -> str:
    """``text`` with the publisher's own folders written as the repository's (``artifacts/...``)."""
    for root, name in ((paths.ARTIFACTS_ROOT, "artifacts"), (paths.PROJECT_ROOT, ".")):
        text = text.replace(f"{root}/", f"{name}/")
    return text


def _readable(nb):
    """The notebook without what a static page cannot show: widget views (their live state is
    not in the file; the explorers leave a static figure beside them) and the overwritten states
    of progress bars; paths on the publisher's disk read as the repository's."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if WIDGET_VIEW in out.get("data", {}):
                continue
            if out.output_type == "stream":
                out.text = _local(_last_state(out.text))
            outputs.append(out)
        cell.outputs = outputs
    return nb


def to_html(path: Path) -> str:
    """One executed notebook as a self-contained HTML page."""
    import nbformat
    from nbconvert import HTMLExporter
    from pygments.formatters import HtmlFormatter

    nb = _readable(nbformat.read(path, as_version=4))
    body, _ = HTMLExporter(template_name="basic", embed_images=True).from_notebook_node(nb)
    maths = any(c.cell_type == "markdown" and re.search(r"\$[^$\n]+\$", c.source) for c in nb.cells)
    style = CSS + HtmlFormatter().get_style_defs(".highlight")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(path.stem)}</title>\n<style>{style}</style>\n{MATHJAX if maths else ''}"
            f"</head>\n<body>\n{body}\n</body>\n</html>\n")


def _index(profile: str, pages: dict[str, str]) -> str:
    rows = "\n".join(f"* [`{name}`]({name}) ({len(text.encode()) / 2 ** 20:.1f} MB)" for name, text in pages.items())
    return (f"# The executed notebooks of the published run\n\n"
            f"The notebooks of the profile `{profile}` run whose results table the README shows, as they ran "
            f"(`python -m helpers.pipeline`), every output and figure inside the page. Written by "
            f"`python -m helpers.report --profile {profile} --readme` (`helpers/publish.py`) with that table. "
            f"GitHub shows an HTML file as its source: open the page from a clone, or download it, in a "
            f"browser.\n\n{rows}\n")


def export_notebooks(profile: str, out_dir: str | Path | None = None, max_bytes: int = MAX_BYTES) -> list[Path]:
    """Write every finished notebook of ``artifacts/<profile>/runs/`` as ``<NN_name>.html`` into
    ``out_dir`` (default ``docs/notebooks/``) with a ``README.md`` that lists them, replacing the
    pages of an earlier export. Returns the pages written: none, and the folder untouched, when no
    notebook of ``profile`` has finished. Raises ValueError, writing nothing, when the pages would
    take more than ``max_bytes`` together."""
    out_dir = Path(out_dir) if out_dir is not None else EXPORT_DIR
    done, unfinished = finished_notebooks(profile)
    for name in unfinished:
        print(f"note: {name} did not finish in the {profile} run (no stamp): not exported")
    if not done:
        print(f"note: no finished notebook in {paths.runs_dir(profile)}: {out_dir} left as it is")
        return []
    pages = {f"{p.stem}.html": to_html(p) for p in done}
    sizes = {name: len(text.encode()) for name, text in pages.items()}
    if sum(sizes.values()) > max_bytes:
        largest = ", ".join(f"{n} {s / 2 ** 20:.1f} MB" for n, s in sorted(sizes.items(), key=lambda x: -x[1])[:3])
        raise ValueError(f"the {profile} notebooks would take {sum(sizes.values()) / 2 ** 20:.1f} MB as HTML, over "
                         f"the {max_bytes / 2 ** 20:.1f} MB an export may take (largest: {largest}); nothing "
                         "written. Show fewer or smaller figures in those notebooks, or raise max_bytes.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("[0-9][0-9]_*.html"):
        if old.name not in pages:
            old.unlink()
    written = []
    for name, text in pages.items():
        written.append(atomic_write(out_dir / name, lambda f, text=text: f.write(text.encode())))
    atomic_write(out_dir / "README.md", lambda f: f.write(_index(profile, pages).encode()))
    print(f"wrote {len(written)} notebooks as HTML into {out_dir} ({sum(sizes.values()) / 2 ** 20:.1f} MB)")
    return written
