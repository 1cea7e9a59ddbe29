"""The benchmark harness reports what docs/PERFORMANCE.md's table reads."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench", Path(__file__).resolve().parents[1] / "benchmarks" / "run.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_training_benchmark_reports_both_paths_every_run_and_their_ratio():
    out = bench.bench_training(steps=2, repeats=2, only={"pixelsnail_bottom"})
    assert list(out) == ["pixelsnail_bottom"]
    row = out["pixelsnail_bottom"]
    assert len(row["runs_images_per_s"]["fast"]) == len(row["runs_images_per_s"]["plain"]) == 2
    assert row["images_per_s"] == max(row["runs_images_per_s"]["fast"])
    assert row["plain_images_per_s"] == max(row["runs_images_per_s"]["plain"])
    assert abs(row["train_speedup"] - row["images_per_s"] / row["plain_images_per_s"]) < 0.01
    assert row["gflop_per_step"] > 0 and row["gflops_per_s"] > 0
    assert abs(row["steps_per_s"] - row["images_per_s"] / row["batch"]) < 0.01


def test_without_fast_bf16_the_one_path_is_timed_once(monkeypatch):
    monkeypatch.setattr(bench, "resolve_precision", lambda precision, device="cpu": "fp32")
    row = bench.bench_training(steps=2, repeats=2, only={"pixelcnn"})["pixelcnn"]
    assert row["runs_images_per_s"]["fast"] == row["runs_images_per_s"]["plain"]
    assert len(row["runs_images_per_s"]["plain"]) == 2 and row["train_speedup"] == 1.0


def test_the_long_runs_benchmark_knows_full_s_budget_of_every_workload():
    spec = importlib.util.spec_from_file_location(
        "long_runs", Path(__file__).resolve().parents[1] / "benchmarks" / "long_runs.py")
    long_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(long_runs)
    from helpers.profiles import get_profile, trains

    budgets = long_runs.full_budgets()
    full = get_profile("full")
    assert set(budgets) == {w for w in bench.workloads(None) if trains(full, w)} and all(v > 0 for v in budgets.values())
    assert "gated_pixelcnn" in bench.workloads(None) and "gated_pixelcnn" not in budgets   # benchmarked, not in full
