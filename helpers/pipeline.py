"""Run the numbered notebooks in order with papermill: ``python -m helpers.pipeline --profile P``.

Executed copies go to ``artifacts/<profile>/runs/``, the seconds each notebook
took to ``artifacts/<profile>/metrics/timing.json``. On a failure the runner
names the notebook and the failing cell and exits non-zero; everything the
earlier notebooks wrote stays, so ``--from NN`` picks up where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import paths
from .profiles import PROFILES


def notebooks() -> list[Path]:
    """The chain: ``notebooks/NN_name.ipynb`` in numeric order."""
    return sorted(p for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def select(all_notebooks: list[Path], start: str | None = None, only: list[str] | None = None) -> list[Path]:
    if only:
        chosen = [p for p in all_notebooks if p.name[:2] in {o.zfill(2)[:2] for o in only}]
    elif start:
        chosen = [p for p in all_notebooks if p.name[:2] >= start.zfill(2)[:2]]
    else:
        chosen = list(all_notebooks)
    if not chosen:
        names = ", ".join(p.stem for p in all_notebooks)
        raise SystemExit(f"no notebook matches --from {start} / --only {only}; the chain is: {names}")
    return chosen


def _record_time(profile: str, name: str, seconds: float) -> None:
    from .checkpoints import atomic_write_json

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


def run_chain(profile: str, chosen: list[Path], kernel: str | None = None) -> int:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_dir = paths.runs_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["EMOJIVQ_PROFILE"] = profile   # so helpers imported by the kernel agree with the parameter
    os.environ["EMOJIVQ_STATIC"] = "1"        # the explorers store a static figure (helpers/widgets.py)
    chain_start = time.perf_counter()
    for i, notebook in enumerate(chosen, 1):
        output = out_dir / notebook.name
        print(f"[{i}/{len(chosen)}] {notebook.stem} (profile {profile}) ...", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook), str(output), parameters={"PROFILE": profile}, kernel_name=kernel,
                cwd=str(paths.NOTEBOOKS_DIR), progress_bar=sys.stderr.isatty(), log_output=False)
        except PapermillExecutionError as e:
            cell, first_line = _failing_cell(output, e.cell_index)
            print(f"FAILED: {notebook.name}, cell {cell} (`{first_line}`): {e.ename}: {e.evalue}\n"
                  f"  executed copy with the traceback: {output}", file=sys.stderr)
            return 1
        seconds = time.perf_counter() - start
        _record_time(profile, notebook.stem, seconds)
        total = time.perf_counter() - chain_start
        print(f"[{i}/{len(chosen)}] {notebook.stem} done in {seconds / 60:.1f} min "
              f"(elapsed {total / 60:.1f} min)", flush=True)
    print(f"chain finished in {(time.perf_counter() - chain_start) / 60:.1f} min; executed notebooks in {out_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("EMOJIVQ_PROFILE", "full"), choices=sorted(PROFILES))
    parser.add_argument("--from", dest="start", metavar="NN", help="start at notebook NN (e.g. 02)")
    parser.add_argument("--only", action="append", metavar="NN", help="run only notebook NN (repeatable)")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's own)")
    args = parser.parse_args(argv)
    return run_chain(args.profile, select(notebooks(), args.start, args.only), args.kernel)


if __name__ == "__main__":
    sys.exit(main())
