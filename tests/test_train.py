"""The Trainer: learning, early stopping, checkpoints, resume, numerical faults."""

from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from helpers.checkpoints import CheckpointError, load_checkpoint
from helpers.models import register
from helpers.ranks import Ranks
from helpers.train import TrainConfig, Trainer


@dataclass
class TinyConfig:
    dim: int = 4
    blow_up_at: int = -1   # a training step at which the loss becomes NaN (-1: never)
    diverge_after: int = -1  # after this many training steps the val loss is 10^4 times larger (finite)


@register
class TinyRegressor(torch.nn.Module):
    """y = w.x + noise-free target; enough to see a loss fall."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.linear = torch.nn.Linear(config.dim, 1)
        self.drop = torch.nn.Dropout(0.1)   # uses the global RNG: resume must restore it
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config_dict(cls, d):
        return cls(TinyConfig(**d))

    def training_step(self, batch):
        x, y = batch
        if self.training:
            self.calls += 1
        loss = torch.nn.functional.mse_loss(self.linear(self.drop(x)).squeeze(-1), y)
        if self.training and self.calls.item() == self.config.blow_up_at:
            loss = loss * float("nan")
        if not self.training and 0 <= self.config.diverge_after <= self.calls.item():
            loss = loss * 1e4
        return loss, {"mse": loss.item()}


def data(n=256, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = x @ torch.arange(1.0, dim + 1) + 0.5
    return (x[:200], y[:200]), (x[200:], y[200:])


def config(**kw):
    base = dict(epochs=6, batch_size=32, lr=0.3, warmup_steps=2, precision="fp32", progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_trainer_lowers_the_validation_loss(tmp_path):
    torch.manual_seed(0)
    train, val = data()
    trainer = Trainer(TinyRegressor(TinyConfig()), train, val, config(), tmp_path / "m.pt")
    trainer.run()
    losses = trainer.history["val_loss"]
    assert len(losses) == 6 and losses[-1] < 0.2 * losses[0]


def interrupt_after_epoch(n):
    def callback(trainer, record):
        if record["epoch"] == n:
            raise KeyboardInterrupt
    return callback


def test_finished_run_leaves_only_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    train, val = data()
    Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=2), tmp_path / "m.pt").run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert load_checkpoint(tmp_path / "m.pt")["extra"]["completed"] is True


def test_interrupted_run_keeps_its_resumable_state(tmp_path):
    torch.manual_seed(0)
    train, val = data()
    first = Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=3), tmp_path / "m.pt",
                    callbacks=[interrupt_after_epoch(1)])
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.last.pt", "m.pt"]
    last = load_checkpoint(tmp_path / "m.last.pt")
    assert last["epoch"] == 1 and not last["extra"]["completed"]
    assert "weight_average" not in last["extra"]   # only a run that keeps a weight average stores one
    resumed = Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=3), tmp_path / "m.pt")
    resumed.run()
    assert resumed.epoch == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_loading_a_finished_run_removes_a_leftover_last_checkpoint(tmp_path, capsys):
    """A kill between the final save and the removal leaves both files; the next run tidies up."""
    torch.manual_seed(0)
    train, val = data()
    Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=1), tmp_path / "m.pt").run()
    (tmp_path / "m.last.pt").write_bytes((tmp_path / "m.pt").read_bytes())
    Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=1), tmp_path / "m.pt").run()
    assert "loaded finished run" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_finished_run_is_loaded_not_retrained(tmp_path, capsys):
    torch.manual_seed(0)
    train, val = data()
    Trainer(TinyRegressor(TinyConfig()), train, val, config(), tmp_path / "m.pt").run()
    again = Trainer(TinyRegressor(TinyConfig()), train, val, config(), tmp_path / "m.pt")
    model = again.run()
    out = capsys.readouterr().out
    assert "loaded finished run" in out and "other settings" not in out
    assert model.calls.item() > 0 and again.epoch == 6


def test_a_finished_run_with_another_budget_is_loaded_and_the_log_names_the_difference(tmp_path, capsys):
    torch.manual_seed(0)
    train, val = data()
    Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=2), tmp_path / "m.pt").run()
    again = Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=4, max_minutes=9.0), tmp_path / "m.pt")
    again.run()
    out = capsys.readouterr().out
    assert again.epoch == 2 and "other settings: epochs 2 (asked 4)" in out and "max_minutes" not in out


def test_best_checkpoint_holds_the_lowest_val_loss(tmp_path):
    torch.manual_seed(0)
    train, val = data()
    trainer = Trainer(TinyRegressor(TinyConfig()), train, val, config(lr=0.3, schedule="constant"), tmp_path / "m.pt")
    trainer.run()
    best = load_checkpoint(tmp_path / "m.pt")
    assert best["metrics"]["best_val"] == pytest.approx(min(trainer.history["val_loss"]))
    assert trainer.evaluate()["loss"] == pytest.approx(best["metrics"]["best_val"], rel=1e-5)
    assert best["extra"]["completed"] is True


def test_early_stopping_stops_when_val_loss_stalls(tmp_path):
    torch.manual_seed(0)
    train, val = data()
    # lr 0: nothing improves after the first epoch.
    trainer = Trainer(TinyRegressor(TinyConfig()), train, val, config(lr=0.0, epochs=50, patience=3), tmp_path / "m.pt")
    trainer.run()
    assert trainer.stopped_early and trainer.epoch == 4


def test_resume_continues_bit_identical(tmp_path):
    train, val = data()
    torch.manual_seed(0)
    full = Trainer(TinyRegressor(TinyConfig()), train, val, config(), tmp_path / "a.pt")
    full.run()

    torch.manual_seed(0)
    first = Trainer(TinyRegressor(TinyConfig()), train, val, config(), tmp_path / "b.pt",
                    callbacks=[interrupt_after_epoch(3)])
    with pytest.raises(KeyboardInterrupt):
        first.run()
    torch.manual_seed(123)  # the resumed process starts with another RNG state
    resumed = Trainer(TinyRegressor(TinyConfig()), train, val, config(), tmp_path / "b.pt")
    resumed.run()
    assert resumed.history["val_loss"] == full.history["val_loss"]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_nan_loss_stops_with_the_step_and_keeps_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    train, val = data()
    steps_per_epoch = 200 // 32
    model = TinyRegressor(TinyConfig(blow_up_at=2 * steps_per_epoch + 3))
    trainer = Trainer(model, train, val, config(), tmp_path / "m.pt")
    with pytest.raises(FloatingPointError, match=r"epoch 3, step 15.*m\.last\.pt"):
        trainer.run()
    last = load_checkpoint(tmp_path / "m.last.pt")
    assert last["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


@pytest.mark.parametrize("curve_every", [None, 2])
def test_a_finite_blow_up_of_the_val_loss_stops_the_run_and_keeps_last_good_checkpoint(tmp_path, curve_every):
    torch.manual_seed(0)
    train, val = data()
    steps_per_epoch = 200 // 32
    model = TinyRegressor(TinyConfig(diverge_after=2 * steps_per_epoch + 3))   # after step 15
    trainer = Trainer(model, train, val, config(curve_every=curve_every), tmp_path / "m.pt")
    stop = 16 if curve_every else 3 * steps_per_epoch   # the first validation after it
    with pytest.raises(FloatingPointError, match=rf"diverged: val loss .* at step {stop} .*m\.last\.pt"):
        trainer.run()
    assert load_checkpoint(tmp_path / "m.last.pt")["epoch"] == 2
    best = load_checkpoint(tmp_path / "m.pt")
    assert best["metrics"]["best_val"] == min(best["history"]["val_loss"]) < 100   # a pre-divergence epoch


def test_a_run_that_merely_gets_worse_on_val_is_not_called_diverged(tmp_path):
    torch.manual_seed(0)
    train, val = data()
    model = TinyRegressor(TinyConfig())
    trainer = Trainer(model, train, val, config(curve_every=1), tmp_path / "m.pt")
    trainer.lowest_val = 1e-3   # a val loss up to 10x this is still a run, not a divergence
    trainer._check_diverged(9e-3)
    with pytest.raises(FloatingPointError, match="diverged"):
        trainer._check_diverged(2e-2)


@pytest.mark.parametrize("interrupted", [False, True])
def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, interrupted):
    torch.manual_seed(0)
    train, val = data()
    callbacks = [interrupt_after_epoch(1)] if interrupted else []
    try:
        Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=2), tmp_path / "m.pt", callbacks=callbacks).run()
    except KeyboardInterrupt:
        pass
    files = [tmp_path / "m.pt", tmp_path / "m.last.pt"] if interrupted else [tmp_path / "m.pt"]
    before = {p: p.read_bytes() for p in files}
    other = Trainer(TinyRegressor(TinyConfig(blow_up_at=99)), train, val, config(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="model_kwargs.blow_up_at") as e:
        other.run()
    assert f"delete {' and '.join(str(p) for p in files)};" in str(e.value)   # says how to go on
    assert {p: p.read_bytes() for p in files} == before                    # and lost nothing


def test_resume_refuses_other_data(tmp_path):
    torch.manual_seed(0)
    train, val = data()
    Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=1), tmp_path / "m.pt",
            data_fingerprint="aaa").run()
    other = Trainer(TinyRegressor(TinyConfig()), train, val, config(), tmp_path / "m.pt", data_fingerprint="bbb")
    with pytest.raises(CheckpointError, match="data_fingerprint"):
        other.run()


@pytest.mark.parametrize("fast_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_takes_bf16_only_where_the_cpu_has_it(monkeypatch, tmp_path, fast_bf16, expected):
    from helpers import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda device="cpu": fast_bf16)
    assert runtime.resolve_precision("auto") == expected
    assert runtime.resolve_precision("bf16") == "bf16" and runtime.resolve_precision("fp32") == "fp32"
    train, val = data()
    trainer = Trainer(TinyRegressor(TinyConfig()), train, val, config(precision="auto", epochs=1), tmp_path / "m.pt")
    assert trainer.precision == expected and trainer.bf16 == (expected == "bf16")
    trainer.run()
    assert load_checkpoint(tmp_path / "m.pt")["extra"]["precision"] == expected   # what the run used


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        Trainer(TinyRegressor(TinyConfig()), *data(), config(precision="fp16"))


def test_native_bf16_answers_for_this_machine():
    from helpers.runtime import native_bf16

    assert isinstance(native_bf16("cpu"), bool)
    assert native_bf16("meta") is False      # a device we know nothing of: fp32


# ----------------------------------------------------------------------------- budgets in steps

def test_the_budget_is_optimizer_steps_and_may_end_mid_epoch(tmp_path):
    torch.manual_seed(0)
    train, val = data()                                   # 200 examples: 6 steps of 32 per epoch
    trainer = Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=None, max_steps=15), tmp_path / "m.pt")
    trainer.run()
    assert trainer.step == 15 and trainer.epoch == 3 and not trainer.time_capped
    assert trainer.history["step"] == [6, 12, 15]
    assert len(trainer.history["val_loss"]) == 3          # the cut last epoch is validated too
    # the schedule runs over the steps: the last of 15 steps trained at the cosine's value for 14/15
    import math
    cfg, floor = trainer.config, trainer.config.min_lr_ratio * trainer.config.lr
    expected = floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * 14 / 15))
    assert trainer.history["lr"][-1] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="give the run a budget"):
        Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=None))


def test_fewer_examples_than_a_batch_train_one_short_batch_a_step(tmp_path):
    torch.manual_seed(0)
    (x, y), val = data()
    trainer = Trainer(TinyRegressor(TinyConfig()), (x[:20], y[:20]), val, config(epochs=None, max_steps=3),
                      tmp_path / "m.pt")                   # 20 examples, batches of 32
    trainer.run()
    assert trainer.step == 3 and trainer.epoch == 3 and len(trainer.history["train_loss"]) == 3


def test_a_slow_machine_trains_the_identical_model(tmp_path):
    """The same steps and seed give the same weights whatever the speed: a callback that sleeps
    after every epoch stands in for a slow or busy CPU."""
    import time

    def train_once(path, callbacks=()):
        torch.manual_seed(0)
        train, val = data()
        t = Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=None, max_steps=20), path,
                    callbacks=list(callbacks))
        return t.run(), t

    fast, t_fast = train_once(tmp_path / "fast.pt")
    slow, t_slow = train_once(tmp_path / "slow.pt", [lambda trainer, record: time.sleep(0.3)])
    assert t_slow.seconds > t_fast.seconds + 0.8
    for a, b in zip(fast.state_dict().values(), slow.state_dict().values()):
        assert torch.equal(a, b)
    assert t_fast.history["val_loss"] == t_slow.history["val_loss"]


def test_a_learning_curve_between_epochs_leaves_the_training_as_it_was(tmp_path):
    def train_once(path, curve_every=None):
        torch.manual_seed(0)
        train, val = data()
        t = Trainer(TinyRegressor(TinyConfig()), train, val,
                    config(epochs=None, max_steps=20, curve_every=curve_every), path)
        return t.run(), t

    plain, t_plain = train_once(tmp_path / "plain.pt")
    curved, t_curved = train_once(tmp_path / "curved.pt", curve_every=3)
    for a, b in zip(plain.state_dict().values(), curved.state_dict().values()):
        assert torch.equal(a, b)
    assert t_plain.history["val_loss"] == t_curved.history["val_loss"]
    assert "curve_step" not in t_plain.history
    assert t_curved.history["curve_step"] == [3, 6, 9, 12, 15, 18]
    losses = t_curved.history["curve_val_loss"]
    assert len(losses) == 6 and losses[-1] < losses[0]          # the regressor learns between epochs
    saved = load_checkpoint(tmp_path / "curved.pt")["history"]
    assert saved["curve_step"] == [3, 6, 9, 12, 15, 18] and saved["curve_val_loss"] == losses


def test_a_wall_clock_cap_stops_the_run_and_marks_it_time_capped(tmp_path, monkeypatch):
    import helpers.train as train_module

    clock = {"now": 0.0}
    def fake_clock():                                    # every call is a tenth of a second later
        clock["now"] += 0.1
        return clock["now"]
    monkeypatch.setattr(train_module.time, "perf_counter", fake_clock)
    torch.manual_seed(0)
    train, val = data()
    trainer = Trainer(TinyRegressor(TinyConfig()), train, val,
                      config(epochs=None, max_steps=1000, max_minutes=0.05), tmp_path / "m.pt")  # 3 s
    trainer.run()
    assert trainer.time_capped and 0 < trainer.step < 1000
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt["extra"]["time_capped"] is True and ckpt["extra"]["completed"] is True
    # loading the finished run keeps the mark
    again = Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=None, max_steps=1000), tmp_path / "m.pt")
    again.run()
    assert again.time_capped


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, False), (True, False, True), (False, True, True)])
def test_on_x86_fast_bf16_needs_bf16_instructions_not_just_avx512(monkeypatch, avx512_bf16, amx, expected):
    # oneDNN says bf16 is "supported" on any AVX-512 CPU; without AVX512-BF16 or AMX it converts,
    # and training in bf16 runs at about half the speed of fp32.
    from helpers import runtime

    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert runtime.native_bf16("cpu") is expected


def test_a_weight_average_is_what_is_validated_kept_and_returned(tmp_path):
    train, val = data()
    torch.manual_seed(0)
    plain = Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=None, max_steps=12), None)
    trajectory = []
    step = plain.optimizer.step

    def record(*a, **kw):   # the raw weights after every optimizer step
        out = step(*a, **kw)
        trajectory.append([p.detach().clone() for p in plain.model.parameters()])
        return out
    plain.optimizer.step = record
    plain.run()
    torch.manual_seed(0)
    expected = [p.detach().clone() for p in TinyRegressor(TinyConfig()).parameters()]   # the same start weights
    for i, weights in enumerate(trajectory):
        d = min(0.9, (1 + i) / (10 + i))
        expected = [d * a + (1 - d) * w for a, w in zip(expected, weights)]

    torch.manual_seed(0)
    averaged = Trainer(TinyRegressor(TinyConfig()), train, val, config(epochs=None, max_steps=12, ema_decay=0.9), None)
    model = averaged.run()
    for got, want, raw in zip(model.parameters(), expected, trajectory[-1]):
        torch.testing.assert_close(got, want)
        assert not torch.allclose(got, raw)                        # not the last raw weights
    assert averaged.history["train_loss"] == plain.history["train_loss"]   # training itself is unchanged
    assert averaged.history["val_loss"] != plain.history["val_loss"]       # validated: the average
    with pytest.raises(ValueError, match="between 0 and 1"):
        Trainer(TinyRegressor(TinyConfig()), train, val, config(ema_decay=1.0), None)


def test_a_run_with_a_weight_average_resumes_bit_identical_and_keeps_the_average(tmp_path):
    train, val = data()
    cfg = config(ema_decay=0.95)
    torch.manual_seed(0)
    full = Trainer(TinyRegressor(TinyConfig()), train, val, cfg, tmp_path / "a.pt")
    full.run()
    torch.manual_seed(0)
    first = Trainer(TinyRegressor(TinyConfig()), train, val, cfg, tmp_path / "b.pt",
                    callbacks=[interrupt_after_epoch(3)])
    with pytest.raises(KeyboardInterrupt):
        first.run()
    last, best = load_checkpoint(tmp_path / "b.last.pt"), load_checkpoint(tmp_path / "b.pt")
    average = last["extra"]["weight_average"]                  # the average travels with the run's state
    assert torch.equal(best["state_dict"]["linear.weight"], average[0])      # the best weights: the average
    assert not torch.equal(last["state_dict"]["linear.weight"], average[0])  # the run's own: the raw ones
    torch.manual_seed(123)
    resumed = Trainer(TinyRegressor(TinyConfig()), train, val, cfg, tmp_path / "b.pt")
    resumed.run()
    assert resumed.history["val_loss"] == full.history["val_loss"]
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_one_process_is_a_world_of_one_whose_collectives_return_their_inputs():
    """Without torchrun the Trainer's ranks are this process alone: no DDP, every collective hands
    back what it was given, and a training pass takes the examples in the order a DataLoader over a
    RandomSampler seeded per epoch gives them (the order the project's weights were trained in)."""
    ranks = Ranks(torch.device("cpu"))
    assert (ranks.rank, ranks.world, ranks.alone) == (0, 1, True)
    net = torch.nn.Linear(2, 1)
    assert ranks.wrap(net) is net
    values = {"loss": 0.25, "mse": 1.5}
    assert ranks.mean(values) is values and ranks.total(7, values) == (7, values)
    assert ranks.max(3.5) == 3.5 and ranks.all_finite(True) is True and ranks.all_finite(False) is False
    assert ranks.which("nan") == "nan"
    ranks.barrier()
    orders = [ranks.order(10, train=True, seed=3, epoch=epoch) for epoch in (0, 1)]
    for epoch, order in enumerate(orders):
        sampler = RandomSampler(range(10), generator=torch.Generator().manual_seed(3 * 100_003 + epoch))
        assert order == [int(i) for i in DataLoader(range(10), batch_size=None, sampler=sampler)]
    assert orders[0] != orders[1] and sorted(orders[0]) == list(range(10))
    assert ranks.order(10, train=False, seed=3, epoch=1) == list(range(10))
    assert ranks.n_batches(70, 32, train=True) == 2 and ranks.n_batches(70, 32, train=False) == 3
    assert ranks.n_batches(20, 32, train=True) == 1   # fewer examples than a batch: one short batch


def test_how_often_the_logs_are_read_changes_neither_history_nor_weights():
    """Losses stay on the device between reads (every ``log_every`` steps): the epoch means are
    summed in the same order whatever the interval."""
    def once(log_every):
        torch.manual_seed(0)
        train, val = data()
        t = Trainer(TinyRegressor(TinyConfig()), train, val, config(log_every=log_every, curve_every=4), None)
        model = t.run()
        return model.state_dict(), {k: v for k, v in t.history.items() if k != "train_seconds"}

    (a, history_a), (b, history_b) = once(1), once(50)
    assert history_a == history_b and len(history_a["curve_step"]) > 3
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    with pytest.raises(ValueError, match="log_every"):
        Trainer(TinyRegressor(TinyConfig()), *data(), config(log_every=0))


def test_train_tensors_of_different_lengths_are_refused():
    (x, y), val = data()
    with pytest.raises(ValueError, match=r"train tensors must have one length.*\[200, 199\]"):
        Trainer(TinyRegressor(TinyConfig()), (x, y[:-1]), val, config())
