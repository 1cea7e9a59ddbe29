"""Run the numbered notebooks in order with papermill: ``python -m helpers.pipeline --profile P``.

Executed copies go to ``artifacts/<profile>/runs/``, the seconds each notebook
took to ``artifacts/<profile>/metrics/timing.json``. On a failure the runner
names the notebook and the failing cell and exits non-zero; everything the
earlier notebooks wrote stays.

Resuming: after an interruption the same command goes on where it stopped. A notebook
that finishes leaves a stamp, ``runs/<NN_name>.done.json``, holding a digest of its inputs
(the notebook file's bytes, the profile, the dataset's fingerprint, the previous notebook's
stamp digest) and the files it wrote under ``artifacts/<profile>/`` (size and mtime). It is
skipped only if that digest matches the inputs as they are now and those files are all still
there unchanged; otherwise it runs again (an interrupted training resumes from its
``<name>.last.pt``). A stamp's digest is new on every run and feeds the next notebook's, so a
notebook that ran again makes every later one stale. ``--force NN`` re-runs NN anyway. One
chain per profile at a time: a second one stops at ``artifacts/<profile>/.chain.lock``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from . import paths
from .checkpoints import atomic_write_json
from .profiles import get_profile, profile_names

STAMP_FORMAT = 1


def notebooks() -> list[Path]:
    """The chain: ``notebooks/NN_name.ipynb`` in numeric order."""
    return sorted(p for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def _numbers(given: list[str] | None) -> set[str]:
    return {o.zfill(2)[:2] for o in given or []}


def select(all_notebooks: list[Path], start: str | None = None, only: list[str] | None = None) -> list[Path]:
    if only:
        chosen = [p for p in all_notebooks if p.name[:2] in _numbers(only)]
    elif start:
        chosen = [p for p in all_notebooks if p.name[:2] >= start.zfill(2)[:2]]
    else:
        chosen = list(all_notebooks)
    if not chosen:
        names = ", ".join(p.stem for p in all_notebooks)
        raise SystemExit(f"no notebook matches --from {start} / --only {only}; the chain is: {names}")
    return chosen


# ---------------------------------------------------------------------------- stamps
def stamp_path(profile: str, notebook: Path) -> Path:
    return paths.runs_dir(profile) / f"{notebook.stem}.done.json"


def dataset_fingerprint(profile: str) -> str | None:
    """The processed dataset's fingerprint (mmap: the images are not read), or its size and mtime
    if it cannot be loaded; None while there is none."""
    path = paths.dataset_path(profile)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    try:
        import torch

        return str(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["fingerprint"])
    except Exception:   # an unreadable file still has an identity; the notebook reading it will say what is wrong
        return f"size {stat.st_size}, mtime {stat.st_mtime_ns}"


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def input_digest(notebook_bytes: bytes, profile: str, previous: str | None) -> str:
    """What a notebook's outputs depend on: its code, the profile's settings (not only its name: a
    budget edited in the profile table makes the chain run again), the dataset and the previous
    notebook's stamp."""
    return _digest(hashlib.sha256(notebook_bytes).hexdigest(), get_profile(profile).as_dict(),
                   dataset_fingerprint(profile), previous)


def snapshot(profile: str) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` of the files under ``artifacts/<profile>/`` that notebooks
    write: not the runner's own (runs/, the lock, timing.json), the caches, or half-written temporaries."""
    root = paths.artifacts_dir(profile)
    own = {"runs", "cache", ".chain.lock", str(paths.metrics_path(profile, "timing").relative_to(root))}
    files = {}
    for path in root.rglob("*") if root.exists() else []:
        rel = path.relative_to(root)
        if rel.parts[0] in own or str(rel) in own or path.name.endswith(".tmp") or not path.is_file():
            continue
        st = path.stat()
        files[rel.as_posix()] = [st.st_size, st.st_mtime_ns]
    return files


def read_stamp(profile: str, notebook: Path) -> dict | None:
    try:
        stamp = json.loads(stamp_path(profile, notebook).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return stamp if isinstance(stamp, dict) and stamp.get("format") == STAMP_FORMAT else None


def is_current(stamp: dict | None, inputs: str, profile: str) -> bool:
    """The stamp is for these inputs, and every file it lists is still there, unchanged."""
    if stamp is None or stamp.get("inputs") != inputs:
        return False
    now = snapshot(profile)
    return all(now.get(rel) == list(meta) for rel, meta in stamp["outputs"].items())


def write_stamp(profile: str, notebook: Path, inputs: str, before: dict) -> dict:
    after = snapshot(profile)
    outputs = {rel: meta for rel, meta in after.items() if before.get(rel) != meta}
    finished = time.time_ns()
    # The digest the next notebook chains on is new for every run, so a notebook that ran again
    # makes every later one stale even when its inputs and outputs look the same.
    stamp = {"format": STAMP_FORMAT, "notebook": notebook.name, "inputs": inputs, "finished_ns": finished,
             "digest": _digest(inputs, finished), "outputs": outputs}
    atomic_write_json(stamp, stamp_path(profile, notebook))
    return stamp


def shared_outputs(profile: str, stamp: dict, earlier: list[Path]) -> list[tuple[str, str]]:
    """``(file, notebook)`` for each file of ``stamp``'s outputs that an earlier notebook's stamp
    also lists: a rewrite that makes that notebook look changed, so every resume would run it again."""
    shared = []
    for notebook in earlier:
        theirs = (read_stamp(profile, notebook) or {}).get("outputs", {})
        shared += [(rel, notebook.stem) for rel in stamp["outputs"] if rel in theirs]
    return shared


def _started_path(profile: str, notebook: Path) -> Path:
    return paths.runs_dir(profile) / f"{notebook.stem}.started.json"


def _before(profile: str, notebook: Path, inputs: str) -> dict:
    """The artifacts as they were when this notebook's run began. An earlier, interrupted attempt at
    the same inputs left its own: what that attempt wrote (a finished checkpoint the re-run only
    loads) is the notebook's output all the same."""
    started = _started_path(profile, notebook)
    try:
        record = json.loads(started.read_text())
        if record.get("inputs") == inputs:
            return _others_as_they_are(profile, notebook, record["before"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, AttributeError):
        pass
    before = snapshot(profile)
    atomic_write_json({"inputs": inputs, "before": before}, started)
    return before


def _others_as_they_are(profile: str, notebook: Path, before: dict) -> dict:
    """``before`` with the files other notebooks' stamps list taken as they are now: a notebook that
    finished after the interrupted attempt (``--only`` or ``--from`` a later one) wrote them, not
    this one, which would otherwise claim them and look changed on every later resume."""
    now = snapshot(profile)
    for other in notebooks():
        if other.name != notebook.name:
            before.update({rel: now[rel] for rel in (read_stamp(profile, other) or {}).get("outputs", {})
                           if rel in now})
    return before


# ---------------------------------------------------------------------------- the lock
def lock_chain(profile: str) -> int:
    """Take ``artifacts/<profile>/.chain.lock`` for this process's lifetime (the kernel frees a dead
    process's flock, so a kill leaves no stale lock), or stop naming the process that holds it."""
    path = paths.artifacts_dir(profile) / ".chain.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)   # no O_TRUNC: the holder's PID stays readable
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SystemExit(f"another chain is running on profile {profile}: {path} is held by PID {holder}. "
                         "Wait for it to finish (or stop that process), then run this again.") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


# ---------------------------------------------------------------------------- running
def _record_time(profile: str, name: str, seconds: float) -> None:
    path = paths.metrics_path(profile, "timing")
    timing = json.loads(path.read_text()) if path.exists() else {}
    timing[name] = round(seconds, 1)
    timing["total"] = round(sum(v for k, v in timing.items() if k != "total"), 1)
    atomic_write_json(timing, path)


def _failing_cell(executed: Path, index: int) -> tuple[int, str]:
    """The failing cell's 1-based number in the notebook as written (papermill's injected
    parameters cell not counted) and its first line."""
    import nbformat

    cells = [c for c in nbformat.read(executed, as_version=4).cells   # minus papermill's error banner
             if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in cells[:index])
    lines = cells[index].source.strip().splitlines() or [""]
    return index + 1 - injected, lines[0][:80]


def execute(notebook: Path, output: Path, profile: str, kernel: str | None) -> None:
    import papermill

    papermill.execute_notebook(
        str(notebook), str(output), parameters={"PROFILE": profile}, kernel_name=kernel,
        cwd=str(paths.NOTEBOOKS_DIR), progress_bar=sys.stderr.isatty(), log_output=False)


def run_chain(profile: str, chosen: list[Path], kernel: str | None = None, force: list[str] | None = None) -> int:
    forced = _numbers(force)
    unknown = forced - {p.name[:2] for p in chosen}
    if unknown:
        raise SystemExit(f"--force {', '.join(sorted(unknown))}: not among the notebooks this run executes "
                         f"({', '.join(p.stem for p in chosen)})")
    lock = lock_chain(profile)
    try:
        return _run(profile, chosen, kernel, forced)
    finally:
        os.close(lock)


def _run(profile: str, chosen: list[Path], kernel: str | None, forced: set[str]) -> int:
    from papermill.exceptions import PapermillExecutionError

    out_dir = paths.runs_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["EMOJIVQ_PROFILE"] = profile   # so helpers imported by the kernel agree with the parameter
    os.environ["EMOJIVQ_STATIC"] = "1"        # the explorers store a static figure (helpers/widgets.py)
    chain = notebooks()
    chain_start = time.perf_counter()
    for i, notebook in enumerate(chosen, 1):
        step = f"[{i}/{len(chosen)}] {notebook.stem}"
        earlier = [p for p in chain if p.name < notebook.name]
        previous = read_stamp(profile, earlier[-1]) if earlier else None
        code = notebook.read_bytes()
        inputs = input_digest(code, profile, previous and previous["digest"])
        if notebook.name[:2] not in forced and is_current(read_stamp(profile, notebook), inputs, profile):
            print(f"{step} skipped: complete and current (--force {notebook.name[:2]} re-runs it)", flush=True)
            continue
        stamp_path(profile, notebook).unlink(missing_ok=True)   # a run cut short must not look finished
        before = _before(profile, notebook, inputs)
        output = out_dir / notebook.name
        print(f"{step} (profile {profile}) ...", flush=True)
        start = time.perf_counter()
        try:
            execute(notebook, output, profile, kernel)
        except PapermillExecutionError as e:
            cell, first_line = _failing_cell(output, e.cell_index)
            print(f"FAILED: {notebook.name}, cell {cell} (`{first_line}`): {e.ename}: {e.evalue}\n"
                  f"  executed copy with the traceback: {output}", file=sys.stderr)
            return 1
        seconds = time.perf_counter() - start
        _record_time(profile, notebook.stem, seconds)
        stamp = write_stamp(profile, notebook, input_digest(code, profile, previous and previous["digest"]), before)
        for rel, other in shared_outputs(profile, stamp, earlier):
            print(f"warning: {notebook.stem} rewrote {rel}, which {other} wrote: {other} now looks changed and "
                  "every resume will run it again; two notebooks must not write one file", file=sys.stderr)
        _started_path(profile, notebook).unlink(missing_ok=True)
        total = time.perf_counter() - chain_start
        print(f"{step} done in {seconds / 60:.1f} min (elapsed {total / 60:.1f} min)", flush=True)
    print(f"chain finished in {(time.perf_counter() - chain_start) / 60:.1f} min; executed notebooks in {out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("EMOJIVQ_PROFILE", "full"), choices=profile_names())
    parser.add_argument("--from", dest="start", metavar="NN", help="start at notebook NN (e.g. 02)")
    parser.add_argument("--only", action="append", metavar="NN", help="run only notebook NN (repeatable)")
    parser.add_argument("--force", action="append", metavar="NN",
                        help="re-run notebook NN even if it is complete and current (repeatable)")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's own)")
    args = parser.parse_args(argv)
    return run_chain(args.profile, select(notebooks(), args.start, args.only), args.kernel, args.force)


if __name__ == "__main__":
    sys.exit(main())
