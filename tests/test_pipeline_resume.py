"""The chain resumes: finished notebooks whose stamp still matches are skipped, the rest re-run;
one chain per profile at a time.

The skip rule is tested on a fake chain of three tiny notebooks run in this process (a kernel per
notebook would cost seconds each); the slow test kills the real smoke chain inside 02.
"""

import dataclasses
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from helpers import paths, pipeline

# Each fake notebook writes one file under artifacts/<profile>/, named after the notebook.
WRITE = ("import os\nfrom helpers import paths\n"
         "out = paths.artifacts_dir(PROFILE) / 'out' / NAME\n"
         "out.parent.mkdir(parents=True, exist_ok=True)\n"
         "if not out.exists() or not KEEP:\n"
         "    out.write_text(NAME * 3)\n")


def _notebook(path: Path, extra: str = "", keep: bool = False) -> None:
    """A notebook writing ``out/<its name>``; ``keep``: only if it is missing."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f'PROFILE = ""\nNAME = "{path.stem}"\nKEEP = {keep}')]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells.append(nbformat.v4.new_code_cell(WRITE + extra))
    nbformat.write(nb, path)


@pytest.fixture
def chain(tmp_path, monkeypatch):
    """Three notebooks in a fake chain; ``chain.ran`` lists the ones each run executed."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for name in ("00_a", "01_b", "02_c"):
        _notebook(nbdir / f"{name}.ipynb")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", nbdir)
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path / "artifacts")
    monkeypatch.setattr(paths, "PROCESSED_ROOT", tmp_path / "processed")
    monkeypatch.setenv("EMOJIVQ_PROFILE", "smoke")   # run_chain sets both; restored after the test
    monkeypatch.setenv("EMOJIVQ_STATIC", "1")
    ran = []

    def execute(notebook, output, profile, kernel):
        """papermill's part in this process: the parameters cell, PROFILE injected, the rest."""
        ran.append(notebook.stem)
        namespace = {}
        for cell in nbformat.read(notebook, as_version=4).cells:
            exec(cell.source, namespace)
            namespace["PROFILE"] = profile
        shutil.copy(notebook, output)

    monkeypatch.setattr(pipeline, "execute", execute)

    class Chain:
        dir = nbdir
        out = tmp_path / "artifacts" / "smoke" / "out"

        def run(self, *args):
            ran.clear()
            assert pipeline.main(["--profile", "smoke", *args]) == 0
            return list(ran)

    return Chain()


def test_second_run_skips_every_finished_notebook(chain, capsys):
    assert chain.run() == ["00_a", "01_b", "02_c"]
    capsys.readouterr()
    assert chain.run() == []
    out = capsys.readouterr().out
    for i, name in enumerate(("00_a", "01_b", "02_c"), 1):
        assert f"[{i}/3] {name} skipped: complete and current" in out
    stamp = json.loads((chain.out.parent / "runs" / "01_b.done.json").read_text())
    assert list(stamp["outputs"]) == ["out/01_b"]   # its own file only: not 00's, not the runner's


def test_editing_a_notebook_reruns_it_and_every_later_one(chain):
    chain.run()
    _notebook(chain.dir / "01_b.ipynb", extra="x = 1\n")
    assert chain.run() == ["01_b", "02_c"]
    assert chain.run() == []


def test_an_edited_profile_setting_reruns_the_chain(chain, monkeypatch):
    from helpers import profiles

    chain.run()
    smoke = profiles.PROFILES["smoke"]
    monkeypatch.setitem(profiles.PROFILES, "smoke", dataclasses.replace(smoke, vqvae_steps=smoke.vqvae_steps + 1))
    assert chain.run() == ["00_a", "01_b", "02_c"]
    assert chain.run() == []


def test_a_changed_or_missing_output_reruns_its_notebook_and_the_later_ones(chain):
    chain.run()
    (chain.out / "01_b").write_text("edited by hand")
    assert chain.run() == ["01_b", "02_c"]
    assert (chain.out / "01_b").read_text() == "01_b" * 3
    (chain.out / "02_c").unlink()
    assert chain.run() == ["02_c"]


def test_force_reruns_a_current_notebook_and_the_later_ones(chain, capsys):
    chain.run()
    assert chain.run("--force", "1") == ["01_b", "02_c"]
    assert chain.run("--only", "00", "--only", "01", "--force", "01") == ["01_b"]
    assert chain.run("--from", "01") == ["02_c"]   # stale since 01 ran again
    with pytest.raises(SystemExit, match="--force 02: not among the notebooks this run executes"):
        pipeline.main(["--profile", "smoke", "--only", "01", "--force", "02"])


def _interrupt_01(chain):
    """A chain in which 01 writes its file (only when it is missing), then the user presses Ctrl-C;
    run once, up to the interruption. Run again, 01 finishes."""
    flag = chain.out.parents[2] / "interrupt"
    _notebook(chain.dir / "01_b.ipynb", keep=True, extra=(
        f"if os.path.exists({str(flag)!r}):\n    os.remove({str(flag)!r})\n    raise KeyboardInterrupt\n"))
    flag.touch()
    with pytest.raises(KeyboardInterrupt):
        chain.run()


def test_an_interrupted_notebook_reruns_and_what_its_first_attempt_wrote_counts_as_output(chain):
    # 01 writes its file, then the user presses Ctrl-C. The re-run keeps the file (as a finished
    # checkpoint is loaded, not rewritten), yet the file is 01's output: deleting it re-runs 01.
    _interrupt_01(chain)
    assert (chain.out / "01_b").exists() and not (chain.out.parent / "runs" / "01_b.done.json").exists()
    assert chain.run() == ["01_b", "02_c"]
    assert chain.run() == []
    (chain.out / "01_b").unlink()
    assert chain.run() == ["01_b", "02_c"]


def test_a_later_notebook_run_while_one_was_interrupted_keeps_its_files(chain, capsys):
    # 01 is cut short, 02 runs alone (--only 02), then the chain resumes 01: what 02 wrote in
    # between is 02's, so 01's stamp must not list it (it would look changed on every resume).
    _interrupt_01(chain)
    assert chain.run("--only", "02") == ["02_c"]
    capsys.readouterr()
    assert chain.run() == ["01_b", "02_c"]
    assert "warning" not in capsys.readouterr().err
    stamp = json.loads((chain.out.parent / "runs" / "01_b.done.json").read_text())
    assert list(stamp["outputs"]) == ["out/01_b"]
    assert chain.run() == []


def test_a_notebook_rewriting_an_earlier_ones_file_is_named(chain, capsys):
    # 02 and 04 once saved a figure under one name: the later overwrote the earlier's, whose stamp
    # then never matched again, so every resume re-trained 02's priors.
    _notebook(chain.dir / "02_c.ipynb", extra="(out.parent / '00_a').write_text('rewritten by 02_c')\n")
    assert chain.run() == ["00_a", "01_b", "02_c"]
    err = capsys.readouterr().err
    assert "warning: 02_c rewrote out/00_a, which 00_a wrote: 00_a now looks changed" in err
    assert "01_b" not in err
    assert chain.run() == ["00_a", "01_b", "02_c"]
    capsys.readouterr()
    _notebook(chain.dir / "02_c.ipynb")
    assert chain.run() == ["00_a", "01_b", "02_c"]
    assert "warning" not in capsys.readouterr().err
    assert chain.run() == []


# ---------------------------------------------------------------------------------------------- the lock

HOLD = ("import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n")


def _hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding ``path``'s lock, as a running chain does, until it is killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def _files(root: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_second_chain_on_the_same_profile_is_refused_and_touches_nothing(chain):
    chain.run()
    (chain.out / "01_b").write_text("stale")           # so that a chain allowed to run would re-run 01
    lock = chain.out.parent / ".chain.lock"
    holder = _hold_lock(lock)
    try:
        before = _files(chain.out.parents[1])
        with pytest.raises(SystemExit) as refused:
            chain.run()
        assert isinstance(refused.value.code, str)    # a message: the process exits with status 1
        assert f"{lock} is held by PID {holder.pid}" in refused.value.code
        assert "another chain is running on profile smoke" in refused.value.code
        assert _files(chain.out.parents[1]) == before
        assert chain.run("--profile", "quick") == ["00_a", "01_b", "02_c"]   # another profile is not blocked
    finally:
        holder.kill()
        holder.wait()
    # A killed holder leaves no stale lock.
    assert chain.run() == ["01_b", "02_c"]


def test_a_finished_chain_releases_its_lock(chain):
    chain.run()
    fd = os.open(chain.out.parent / ".chain.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # raises if the chain still held it
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- a real kill

SMOKE_00_02 = ["--profile", "smoke", "--only", "00", "--only", "01", "--only", "02"]


def _env(root: Path, processed: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(paths.PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            "EMOJIVQ_ARTIFACTS_DIR": str(root), "EMOJIVQ_PROCESSED_DIR": str(processed),
            "EMOJIVQ_RAW_DIR": str(paths.RAW_DIR)}


def _chain(env: dict, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "helpers.pipeline", *args], cwd=paths.PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _kill_when_training_saved(env: dict, folder: Path, timeout: float = 600) -> None:
    """Start the chain and SIGKILL it, kernel and all (the kernel runs in a session of its own),
    as soon as a ``.last.pt`` appears under ``folder``."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "helpers.pipeline", *SMOKE_00_02], cwd=paths.PROJECT_ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not list(folder.glob("*.last.pt")):
            assert proc.poll() is None, f"the chain ended before any training saved:\n{proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no .last.pt appeared"
            time.sleep(0.005)
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL


def _numbers(metrics):
    """The metrics without wall-clock values, which differ between any two runs."""
    if isinstance(metrics, dict):
        return {k: _numbers(v) for k, v in metrics.items()
                if not k.endswith("_seconds") and k not in {"machine", "timing"}}
    return metrics


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("EMOJIVQ_CHAIN_TEST") != "1",
                    reason="runs 00-02 twice over (minutes): set EMOJIVQ_CHAIN_TEST=1")
def test_smoke_chain_killed_inside_02_skips_00_and_01_and_ends_with_an_uninterrupted_runs_metrics(tmp_path):
    from _smoke import skip_if_unfetchable
    from helpers import data

    with skip_if_unfetchable():   # the chain's 00 would fetch them too, but fail rather than skip
        for spec in data.load_manifest()["default"]:
            data.fetch(spec)
    processed = tmp_path / "processed"
    killed, uninterrupted = tmp_path / "killed", tmp_path / "uninterrupted"
    env = _env(killed, processed)
    _chain(env, *SMOKE_00_02[:-2])
    # 00 and 01 ran once, uninterrupted: the reference run of 02 starts from a copy of their outputs
    # and runs beside the killed chain (one thread each: the same numbers, in less wall time).
    shutil.copytree(killed, uninterrupted)
    reference_run = subprocess.Popen([sys.executable, "-m", "helpers.pipeline", "--profile", "smoke", "--only", "02"],
                                     cwd=paths.PROJECT_ROOT, env=_env(uninterrupted, processed),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    _kill_when_training_saved(env, killed / "smoke")
    left = sorted(p.name for p in (killed / "smoke").glob("*.last.pt"))
    assert left, "02 finished its training before the kill landed: nothing to resume"
    assert not (killed / "smoke" / "runs" / "02_pixelcnn.done.json").exists()

    out = _chain(env, *SMOKE_00_02)
    assert "[1/3] 00_data skipped: complete and current" in out
    assert "[2/3] 01_vqvae skipped: complete and current" in out
    assert "[3/3] 02_pixelcnn (profile smoke) ..." in out and "[3/3] 02_pixelcnn done" in out
    executed = (killed / "smoke" / "runs" / "02_pixelcnn.ipynb").read_text()
    assert f"resuming from {killed / 'smoke' / left[0]}" in executed
    assert not list((killed / "smoke").glob("*.last.pt"))

    stdout, stderr = reference_run.communicate(timeout=1200)
    assert reference_run.returncode == 0, f"{stdout[-2000:]}\n{stderr[-3000:]}"
    resumed, reference = (json.loads((root / "smoke" / "metrics" / "prior_vqvae.json").read_text())
                          for root in (killed, uninterrupted))
    assert _numbers(resumed) == _numbers(reference)
