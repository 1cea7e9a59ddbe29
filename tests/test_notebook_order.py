"""Notebooks run out of order stop in their set-up cell, naming the notebook to run first.

Every notebook's parameters and set-up cells run in this process, against empty data and artifact
folders (a kernel per notebook cost ~10 s each); one notebook also runs in a real kernel through
papermill, to show the error reaches the user the same way there.
"""

import pytest

from _notebooks import parameters_cells, read, source
from helpers import paths

EXPECTED = {"01_vqvae": "run 00_data first", "02_pixelcnn": "run 01_vqvae first",
            "03_vqvae2": "run 00_data first", "04_pixelsnail": "run 03_vqvae2 first",
            "05_extensions": "run 01_vqvae first", "06_analysis": "run 01_vqvae first"}


@pytest.fixture
def empty_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PROCESSED_ROOT", tmp_path / "processed")
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path / "artifacts")
    return tmp_path


class _Dataset:
    """Stands in for a built dataset: the notebooks after 00 then stop at their first upstream artifact."""
    fingerprint = "built"
    train_idx = val_idx = ()
    category_names = ()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_set_up_cell_on_empty_folders_names_the_producer(name, empty_folders, monkeypatch):
    import helpers.data

    if EXPECTED[name] != "run 00_data first":
        monkeypatch.setattr(helpers.data, "load_dataset", lambda profile: _Dataset())
    nb = read(name)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    (parameters,) = parameters_cells(nb)
    set_up = code[code.index(parameters) + 1]            # the cell after papermill's injected one
    namespace = {}
    exec(compile(source(parameters), f"{name}[parameters]", "exec"), namespace)
    namespace["PROFILE"] = "smoke"                       # as papermill's injected cell would set it
    with pytest.raises(paths.MissingArtifactError, match=EXPECTED[name]):
        exec(compile(source(set_up), f"{name}[set-up]", "exec"), namespace)


@pytest.mark.slow
def test_in_a_kernel_the_set_up_cell_stops_with_the_same_error(tmp_path, monkeypatch):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    name = "03_vqvae2"
    monkeypatch.setenv("EMOJIVQ_PROCESSED_DIR", str(tmp_path / "processed"))
    monkeypatch.setenv("EMOJIVQ_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    with pytest.raises(PapermillExecutionError) as failure:
        papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / f"{name}.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"PROFILE": "smoke"}, cwd=str(paths.NOTEBOOKS_DIR),
                                   progress_bar=False)
    assert failure.value.ename == "MissingArtifactError"
    assert EXPECTED[name] in failure.value.evalue
    assert failure.value.exec_count <= 3   # the parameters cell, papermill's injected one, then set-up
