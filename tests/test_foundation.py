"""Paths, profiles, checkpoints, the chain runner, and the committed notebooks themselves."""

import dataclasses
import json
import os
import re

import nbformat
import pytest
import torch

from _notebooks import parameters_cells, read, source
from helpers import checkpoints, paths, pipeline, results, runtime, stages
from helpers.checkpoints import CheckpointError, atomic_save, load_checkpoint, safe_load
from helpers.cli import CLI_DEFAULTS
from helpers.profiles import PROFILES, Profile, get_profile, profile_names
from helpers.ranks import Ranks
from helpers.runtime import seed_everything


def test_require_names_the_notebook_to_run_first(tmp_path):
    with pytest.raises(paths.MissingArtifactError, match="run 01_vqvae first"):
        paths.require(tmp_path / "vqvae.pt", "vqvae")
    (tmp_path / "vqvae.pt").write_bytes(b"x")
    assert paths.require(tmp_path / "vqvae.pt", "vqvae") == tmp_path / "vqvae.pt"


def test_artifact_paths_live_under_the_profile(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path)
    assert paths.checkpoint_path("quick", "vqvae") == tmp_path / "quick" / "vqvae.pt"
    assert paths.metrics_path("full", "vqvae") == tmp_path / "full" / "metrics" / "vqvae.json"


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("EMOJIVQ_PROFILE", "quick")
    assert get_profile().name == "quick"
    monkeypatch.delenv("EMOJIVQ_PROFILE")
    assert get_profile().name == "full"
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")
    assert PROFILES["smoke"].n_samples < PROFILES["quick"].n_samples < PROFILES["full"].n_samples


def test_every_profile_has_a_random_split_variant_with_its_own_folders():
    full, report_split = get_profile("full"), get_profile("full-random")
    assert full.split == "identity" and report_split.split == "random"
    assert dataclasses.replace(report_split, name="full", split="identity") == full   # nothing else differs
    assert get_profile("full", split="random") == report_split
    assert get_profile("full-random", split="identity") == full
    assert paths.artifacts_dir("full-random") != paths.artifacts_dir("full")
    assert {"smoke-random", "quick-random", "full-random", "full"} <= set(profile_names())
    with pytest.raises(ValueError, match="unknown split 'vendor'"):
        get_profile("full", split="vendor")


def test_every_training_budget_in_the_profile_table_is_steps(monkeypatch, tmp_path):
    budgets = {f.name for f in dataclasses.fields(Profile) if f.name.endswith("_steps")}
    assert budgets == {"vqvae_steps", "latent16_steps", "prior_steps", "vqvae2_steps", "prior2_steps",
                       "superres_steps", "classifier_steps"}
    assert not any("minutes" in f.name or "epochs" in f.name for f in dataclasses.fields(Profile))
    every32, every64 = {"pixelcnn", "gated_pixelcnn", "transformer", "maskgit"}, {"pixelsnail", "pixelcnn"}
    for profile in PROFILES.values():
        # quick trains one prior per size, full leaves out the gated PixelCNN and the masked prior, only smoke
        # runs the masked prior; every profile trains those 05 loads (the 32 px PixelCNN, the PixelSNAIL)
        trains32 = stages.budgeted(sorted(every32), profile.prior_steps, profile.name)
        trains64 = stages.budgeted(sorted(every64), profile.prior2_steps, profile.name)
        expected32 = {"smoke": every32, "quick": {"pixelcnn"},
                      "full": every32 - {"gated_pixelcnn", "maskgit"}}.get(profile.name, every32 - {"maskgit"})
        assert set(trains32) == expected32
        assert set(trains64) == ({"pixelsnail"} if profile.name == "quick" else every64)
        assert set(profile.prior_steps) == set(trains32)
        assert set(profile.prior2_steps) == {f"{f}_{lv}" for f in trains64 for lv in ("top", "bottom")}
        for name in budgets:
            value = getattr(profile, name)
            assert all(isinstance(v, int) and v > 0 for v in (value.values() if isinstance(value, dict) else [value]))
    monkeypatch.setenv("EMOJIVQ_MINUTES_SCALE", "3")               # gone: it changes nothing
    assert get_profile("full") == PROFILES["full"]
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path)
    results.save_metrics("full", "vqvae", {"val_psnr": 24.0}, {"seed": 0})
    protocol = results.load_metrics("full", "vqvae")["protocol"]
    assert set(protocol.pop("machine")) == {"cpu", "cpu_model", "cpu_capability", "fast_bf16", "threads", "torch",
                                            "commit", "device", "device_name", "device_bf16"}
    assert protocol == {"seed": 0}


def test_notebooks_take_their_budgets_from_the_profile_and_a_cap_only_as_a_parameter():
    for name in ("01_vqvae", "02_pixelcnn", "03_vqvae2", "04_pixelsnail", "05_extensions"):
        nb = read(name)
        params = "\n".join(source(c) for c in parameters_cells(nb))
        assert "MAX_MINUTES = None" in params, name
        code = "\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "code")
        assert re.search(r"profile\.\w+_steps", code) and "_minutes" not in code.replace("max_minutes", ""), name


def test_metrics_name_the_machine_and_the_commit_they_came_from(monkeypatch, tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    repo = tmp_path / "repo"
    repo.mkdir()
    assert runtime.git_commit(repo) is None                       # not a checkout
    git("init", "-q")
    (repo / "a.txt").write_text("one")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=7", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert runtime.git_commit(repo) == head
    (repo / "a.txt").write_text("two")                            # a run of uncommitted code says so
    assert runtime.git_commit(repo) == head + "+dirty"

    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path / "artifacts")
    monkeypatch.setattr(runtime, "git_commit", lambda: "abc1234")
    monkeypatch.setattr(runtime, "native_bf16", lambda device="cpu": False)
    results.save_metrics("full", "vqvae", {"val_psnr": 24.0}, {"seed": 0})
    m = results.load_metrics("full", "vqvae")["protocol"]["machine"]
    assert (m["commit"], m["fast_bf16"], m["threads"]) == ("abc1234", False, torch.get_num_threads())
    assert m["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and m["torch"] == torch.__version__


def test_seed_everything_repeats_draws():
    seed_everything(3)
    a = torch.rand(4)
    seed_everything(3)
    assert torch.equal(a, torch.rand(4))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        safe_load(path)


def test_truncated_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "m.pt"
    atomic_save({"w": torch.randn(1000)}, path)
    whole = path.read_bytes()
    assert torch.equal(safe_load(path, mmap=True)["w"], safe_load(path)["w"])   # the dataset's way: mapped
    path.write_bytes(whole[:300])
    for mmap in (False, True):
        with pytest.raises(CheckpointError, match=r"m\.pt: unreadable"):
            safe_load(path, mmap=mmap)


def test_atomic_save_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    atomic_save({"v": torch.tensor(1)}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"v": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert safe_load(path)["v"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]   # no temp file left behind


def test_non_project_file_is_refused(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an emoji-vq checkpoint"):
        load_checkpoint(path)


def test_mismatched_extra_field_is_named(tmp_path):
    model = torch.nn.Linear(2, 2)
    checkpoints.save_checkpoint(tmp_path / "m.pt", model, extra={"image_size": 32})
    with pytest.raises(CheckpointError, match="image_size is 32 in the checkpoint, 64 expected"):
        load_checkpoint(tmp_path / "m.pt", expect={"image_size": 64})


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('PROFILE = ""')]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_pipeline_names_the_failing_notebook_and_cell(tmp_path, monkeypatch, capsys):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(nbdir / "00_ok.ipynb", "x = 1")
    _notebook(nbdir / "01_bad.ipynb", "y = 2", "raise ValueError('boom')")
    _notebook(nbdir / "02_never.ipynb", "z = 3")
    monkeypatch.setattr(paths, "NOTEBOOKS_DIR", nbdir)
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path / "artifacts")
    code = pipeline.main(["--profile", "smoke"])
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED: 01_bad.ipynb, cell 3 (`raise ValueError('boom')`)" in err and "ValueError: boom" in err
    runs = tmp_path / "artifacts" / "smoke" / "runs"
    assert (runs / "00_ok.ipynb").exists() and not (runs / "02_never.ipynb").exists()
    timing = json.loads((tmp_path / "artifacts" / "smoke" / "metrics" / "timing.json").read_text())
    assert set(timing) == {"00_ok", "total"}


def test_pipeline_selects_from_and_only(tmp_path):
    chain = [tmp_path / f"{i:02d}_n{i}.ipynb" for i in range(4)]
    assert [p.name[:2] for p in pipeline.select(chain, start="02")] == ["02", "03"]
    assert [p.name[:2] for p in pipeline.select(chain, only=["1", "03"])] == ["01", "03"]
    with pytest.raises(SystemExit, match="no notebook matches"):
        pipeline.select(chain, only=["09"])


def test_committed_notebooks_have_no_outputs_and_one_parameters_cell():
    found = pipeline.notebooks()
    assert found, "no notebooks found"
    for path in found:
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), path.name
        tagged = parameters_cells(nb)
        assert len(tagged) == 1, f"{path.name}: exactly one cell tagged 'parameters'"
        assert "from helpers" in "".join("".join(c["source"]) for c in code), path.name


def test_papermill_sees_every_parameter_a_parameters_cell_assigns(capsys):
    # papermill skips (with only a log line) a parameter whose comment it cannot parse, e.g. one
    # holding "=": `-p NAME value` would then be ignored.
    from papermill.translators import PythonTranslator

    for path in pipeline.notebooks():
        cell = parameters_cells(json.loads(path.read_text()))[0]
        assigned = re.findall(r"^([A-Z_][A-Z0-9_]*) =", source(cell), flags=re.M)
        seen = [p.name for p in PythonTranslator.inspect({"source": source(cell)})]
        assert assigned and seen == assigned, path.name


@pytest.mark.parametrize("model,notebook", [("vqvae", "01_vqvae"), ("vqvae2", "03_vqvae2")])
def test_train_cli_defaults_are_the_notebooks_parameters(model, notebook):
    """`python -m helpers.cli --model M` trains as its notebook does: same peak LR and batch."""
    (cell,) = parameters_cells(read(notebook))
    params = {}
    exec(source(cell), {}, params)
    assert (params["LR"], params["BATCH_SIZE"]) == (CLI_DEFAULTS[model]["lr"], CLI_DEFAULTS[model]["batch_size"])


def test_the_train_cli_validates_as_the_profile_asks_and_takes_a_weight_average(monkeypatch, capsys):
    import helpers.cli as cli
    import helpers.data as data

    class Toy:
        fingerprint = "toy"

        def images(self, size, split):
            return torch.zeros(4, 3, size, size, dtype=torch.uint8)

    class Recorder:
        """Stands in for the Trainer: keeps the config it was given."""
        ranks = Ranks(torch.device("cpu"))   # this process alone
        step, epoch, time_capped, seconds, best_val = 3, 1, False, 0.0, 0.5

        def __init__(self, model, train, val, config, path, **kw):
            seen.update(config=config, path=path)

        def run(self):
            return None

    seen = {}
    monkeypatch.setattr(data, "load_dataset", lambda name: Toy())
    monkeypatch.setattr(cli, "Trainer", Recorder)
    assert cli.main(["--profile", "curves", "--steps", "3", "--ema-decay", "0.999", "--name", "vqvae_ema"]) == 0
    config = seen["config"]
    assert (config.max_steps, config.curve_every, config.ema_decay) == (3, 100, 0.999)
    assert seen["path"].name == "vqvae_ema.pt" and seen["path"].parent.name == "curves"
    cli.main(["--profile", "smoke"])
    assert (seen["config"].max_steps, seen["config"].curve_every, seen["config"].ema_decay) == (12, None, None)


def test_the_cpu_model_comes_with_its_family_and_model_numbers(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\n"
                    "model name\t: Intel(R) Xeon(R) Processor @ 2.60GHz\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert runtime.cpu_model(info) == "Intel(R) Xeon(R) Processor @ 2.60GHz, family 6 model 106"
    info.write_text("processor\t: 0\nmodel name\t: Some Arm core\n")
    assert runtime.cpu_model(info) == "Some Arm core"
    info.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")            # no model name (some Arm kernels)
    assert runtime.cpu_model(info) is None
    assert runtime.cpu_model(tmp_path / "missing") is None
