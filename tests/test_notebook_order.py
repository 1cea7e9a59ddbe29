"""Notebooks run out of order stop in their set-up cell, naming the notebook to run first."""

import pytest

from helpers import paths

EXPECTED = {"01_vqvae": "run 00_data first", "02_pixelcnn": "run 01_vqvae first",
            "03_vqvae2": "run 00_data first", "04_pixelsnail": "run 03_vqvae2 first",
            "05_extensions": "run 01_vqvae first", "06_analysis": "run 01_vqvae first"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_on_empty_artifacts_names_its_producer(name, tmp_path, monkeypatch):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    monkeypatch.setenv("EMOJIVQ_PROCESSED_DIR", str(tmp_path / "processed"))
    monkeypatch.setenv("EMOJIVQ_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    with pytest.raises(PapermillExecutionError) as failure:
        papermill.execute_notebook(str(paths.NOTEBOOKS_DIR / f"{name}.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"PROFILE": "smoke"}, cwd=str(paths.NOTEBOOKS_DIR),
                                   progress_bar=False)
    assert failure.value.ename == "MissingArtifactError"
    assert EXPECTED[name] in failure.value.evalue
    assert failure.value.exec_count <= 3   # the parameters cell, papermill's injected one, then set-up
