"""Learning curves from the checkpoints' histories."""

import torch

from helpers import curves, paths
from helpers.checkpoints import save_checkpoint


def test_curve_summary_says_how_much_the_last_quarter_of_the_steps_moved():
    history = {"step": [10, 20, 30, 40], "val_psnr": [20.0, 22.0, 23.0, 23.5]}
    assert curves.curve_summary(history, "psnr", higher=True) == {"steps": 40, "best": 23.5, "best_step": 40,
                                                                  "last": 23.5, "last_quarter_change": 0.5}
    assert curves.curve_summary({"step": [5], "val_nll": [4.0]}, "nll")["last_quarter_change"] is None
    assert curves.curve_summary({"step": [5]}, "nll")["last"] is None


def test_validations_between_epochs_join_the_epochs_own_in_step_order():
    history = {"step": [100, 200], "val_nll": [5.0, 4.0],
               "curve_step": [25, 50, 75, 100, 125, 150, 175], "curve_val_nll": [7.0, 6.5, 6.0, 5.0, 4.6, 4.3, 4.1]}
    assert curves.val_points(history, "nll") == [(25, 7.0), (50, 6.5), (75, 6.0), (100, 5.0), (125, 4.6),
                                                 (150, 4.3), (175, 4.1), (200, 4.0)]
    assert curves.curve_summary(history, "nll") == {"steps": 200, "best": 4.0, "best_step": 200, "last": 4.0,
                                                    "last_quarter_change": 4.0 - 4.3}
    assert [curves.value_at(history, "nll", s) for s in (10, 25, 99, 200, 999)] == [None, 7.0, 6.0, 4.0, 4.0]
    over_fits = {"step": [100, 200, 300, 400], "val_nll": [4.5, 4.2, 4.3, 4.6]}
    assert curves.curve_summary(over_fits, "nll") == {"steps": 400, "best": 4.2, "best_step": 200, "last": 4.6,
                                                      "last_quarter_change": 4.6 - 4.3}


def test_write_curves_draws_every_trained_model_with_a_step_history(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ARTIFACTS_ROOT", tmp_path / "artifacts")
    model = torch.nn.Linear(2, 1)
    history = {"epoch": [1, 2], "step": [50, 100], "train_nll": [5.0, 4.5], "val_nll": [5.1, 4.8]}
    save_checkpoint(paths.checkpoint_path("p", "pixelcnn"), model, history=history)
    save_checkpoint(paths.checkpoint_path("p", "gated_pixelcnn"), model, history={"epoch": [1], "val_nll": [5.0]})
    rows = curves.write_curves("p", tmp_path / "curves", at=[60, 100])
    assert [r["model"] for r in rows] == ["pixelcnn"]              # the other has no step history
    assert rows[0]["at"] == {60: 5.1, 100: 4.8}
    assert rows[0]["last"] == 4.8 and rows[0]["steps"] == 100
    assert (tmp_path / "curves" / "pixelcnn.png").stat().st_size > 1000
    assert not (tmp_path / "curves" / "priors32.png").exists()     # one prior with a history: no group figure
    save_checkpoint(paths.checkpoint_path("p", "transformer"), model, history=history)
    curves.write_curves("p", tmp_path / "curves")
    assert (tmp_path / "curves" / "priors32.png").stat().st_size > 1000
    assert curves.main(["--profile", "empty", "--out", str(tmp_path / "none")]) == 1


def test_both_judges_of_each_size_have_their_learning_curves():
    from helpers import recognise

    for size in (32, 64):
        for name in (recognise.checkpoint_name(size), recognise.checkpoint_name(size, "subcategory", judge=True)):
            assert curves.MEASURES[name] == ("acc", True), name
