"""The executed notebooks of a run become HTML pages a reader can open without running anything
(helpers/publish.py): every figure inside the page, nothing fetched from elsewhere, only finished
notebooks, an earlier export replaced as a whole, and never more than the size an export may take."""

import base64
import io
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers import paths, publish

PROFILE = "smoke"


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """An empty artifacts tree under tmp_path; returns the profile's runs/ folder."""
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path / "artifacts")
    folder = paths.runs_dir(PROFILE)
    folder.mkdir(parents=True)
    return folder


def _png() -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _executed(folder, name, png=b"", finished=True, text="# A notebook\n\nWhat it shows."):
    """An executed notebook as the pipeline leaves it: a figure, a redrawn progress bar, a widget view."""
    figure = new_output("display_data", data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"})
    progress = new_output("stream", name="stderr", text="\r  0%|     | 0/9\r 50%|##   | 4/9\r100%|#####| 9/9\n"
                          f"saved -> {paths.ARTIFACTS_ROOT}/smoke/vqvae.pt\n")
    widget = new_output("display_data", data={publish.WIDGET_VIEW: {"model_id": "abc", "version_major": 2},
                                              "text/plain": "HBox(children=(...))"})
    nb = new_notebook(cells=[new_markdown_cell(text), new_code_cell("show()", outputs=[figure, progress, widget],
                                                                    execution_count=1)])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, folder / f"{name}.ipynb")
    if finished:
        (folder / f"{name}.done.json").write_text("{}")


def test_a_finished_notebook_becomes_one_self_contained_page(runs, tmp_path):
    png = _png()
    _executed(runs, "01_vqvae", png)
    out = tmp_path / "docs" / "notebooks"
    written = publish.export_notebooks(PROFILE, out)
    assert [p.name for p in written] == ["01_vqvae.html"]
    page = written[0].read_text()
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" in page     # the figure, inside
    assert not re.search(r"(?:src|href)=\"(?!data:|#)", page)                     # nothing fetched from elsewhere
    assert "What it shows." in page and "<title>01_vqvae</title>" in page
    assert "9/9" in page and "4/9" not in page                                   # a progress bar's last state
    assert "model_id" not in page and "HBox" not in page                         # no dead widget views
    assert "saved -&gt; artifacts/smoke/vqvae.pt" in page and str(tmp_path) not in page   # no publisher's paths
    assert "MathJax" not in page                                                 # no maths, no script
    index = (out / "README.md").read_text()
    assert "[`01_vqvae.html`](01_vqvae.html)" in index and "--profile smoke --readme" in index


def test_a_notebook_with_maths_asks_for_mathjax(runs, tmp_path):
    _executed(runs, "01_vqvae", text="The loss $\\|z - e\\|^2$ pulls the encoder to its code.")
    page = publish.export_notebooks(PROFILE, tmp_path / "out")[0].read_text()
    assert "mathjax" in page and "\\|z - e\\|^2" in page


def test_only_finished_notebooks_are_exported_and_the_rest_named(runs, tmp_path, capsys):
    _executed(runs, "01_vqvae")
    _executed(runs, "02_pixelcnn", finished=False)          # failed: its copy holds a traceback
    written = publish.export_notebooks(PROFILE, tmp_path / "out")
    assert [p.name for p in written] == ["01_vqvae.html"]
    assert "02_pixelcnn did not finish" in capsys.readouterr().out


def test_a_new_export_replaces_the_old_one_as_a_whole(runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "07_gone.html").write_text("an earlier run's page")
    (out / "notes.txt").write_text("not a page")
    _executed(runs, "01_vqvae")
    publish.export_notebooks(PROFILE, out)
    assert sorted(p.name for p in out.iterdir()) == ["01_vqvae.html", "README.md", "notes.txt"]


def test_with_nothing_finished_the_published_pages_stay(runs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "01_vqvae.html").write_text("the published page")
    _executed(runs, "01_vqvae", finished=False)
    assert publish.export_notebooks(PROFILE, out) == []
    assert (out / "01_vqvae.html").read_text() == "the published page"
    assert "left as it is" in capsys.readouterr().out


def test_an_export_over_its_size_is_refused_before_anything_is_written(runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "01_vqvae.html").write_text("the published page")
    _executed(runs, "01_vqvae", _png())
    with pytest.raises(ValueError, match=r"01_vqvae.html .* MB.*nothing written"):
        publish.export_notebooks(PROFILE, out, max_bytes=1000)
    assert sorted(p.name for p in out.iterdir()) == ["01_vqvae.html"]
    assert (out / "01_vqvae.html").read_text() == "the published page"


@pytest.mark.slow
def test_a_notebook_executed_by_a_kernel_exports_with_its_figure(runs, tmp_path):
    """The real thing: a kernel runs a notebook that draws with matplotlib, as the chain's do."""
    from nbclient import NotebookClient

    nb = new_notebook(cells=[new_markdown_cell("# Tiny"), new_code_cell(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);")])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    assert any("image/png" in o.get("data", {}) for o in nb.cells[1].outputs)
    nbformat.write(nb, runs / "00_data.ipynb")
    (runs / "00_data.done.json").write_text("{}")
    page = publish.export_notebooks(PROFILE, tmp_path / "out")[0].read_text()
    assert page.count("data:image/png;base64,") == 1 and len(page) < 200_000


def test_the_report_command_with_readme_exports_the_finished_notebooks(runs, tmp_path, monkeypatch):
    from helpers import report

    out = tmp_path / "pages"
    monkeypatch.setattr(publish, "EXPORT_DIR", out)
    tables = []
    monkeypatch.setattr(report, "write_readme_table", lambda profile: tables.append(profile))   # not our README
    _executed(runs, "01_vqvae")
    _executed(runs, "02_prior", finished=False)
    assert report.main(["--profile", PROFILE, "--out", str(tmp_path / "results"), "--readme"]) == 0
    assert tables == [PROFILE]
    assert sorted(p.name for p in out.iterdir()) == ["01_vqvae.html", "README.md"]
    (out / "01_vqvae.html").unlink()
    report.main(["--profile", PROFILE, "--out", str(tmp_path / "results")])      # without --readme: no export
    assert not (out / "01_vqvae.html").exists()
