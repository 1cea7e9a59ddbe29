"""The device the code finds, proven on a CPU-only machine.

* Placement: with ``pick_device`` patched to the "meta" device (tensors with shapes and no data),
  the Trainer, the samplers and the FID feature pass must put their models and the tensors they
  create there.
* Discipline: ``tests/_device_guard.py`` raises on any torch call whose tensors sit on two
  devices, as CUDA and MPS do (the CPU and meta let it pass). With the models on meta and the data
  on the CPU, the stages, the samplers, encoding and the Trainer run under it end to end.
* What a GPU run records and restores (its generator, its name, its bf16, TF32 and determinism
  switches, one GPU per torchrun process), with the device's module faked where a GPU is needed.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from _device_guard import MixedDevices, one_device
from helpers import checkpoints, metrics, runtime, sampling, stages, train
from helpers.artifacts import SamplingSetting
from helpers.models.pixelcnn import GatedPixelCNN, GatedPixelCNNConfig
from helpers.models.vqvae import VQVAE, VQVAEConfig
from helpers.models.vqvae2 import VQVAE2

META = torch.device("meta")
K = 12


def _prior():
    torch.manual_seed(0)
    return GatedPixelCNN(GatedPixelCNNConfig(num_codes=K, hidden=16, layers=2, head_hidden=16))


def _on_meta(module: torch.nn.Module) -> bool:
    return all(p.device == META for p in module.parameters())


@pytest.fixture
def tf32_flags():
    """Set every TF32 switch with ``set(value)``; put back what they were after the test."""
    saved = runtime.tf32_enabled()
    yield runtime._set_tf32
    runtime._set_tf32(saved)


def _tf32_on() -> bool:
    flags = runtime.tf32_enabled()
    assert len(set(flags.values())) == 1, flags   # always switched together
    return flags["cuda.matmul"]


class _Stop(Exception):
    """Raised by a stub where meta tensors can go no further."""


def test_trainer_defaults_to_the_picked_device_and_prepares_batches_there(monkeypatch):
    monkeypatch.setattr(train, "pick_device", lambda: META)
    codes = torch.randint(0, K, (8, 4, 4))
    trainer = train.Trainer(_prior(), (codes,), (codes,), train.TrainConfig(max_steps=1, batch_size=4, progress=False))
    assert trainer.device == META and _on_meta(trainer.model)
    assert trainer.precision == "fp32"   # bf16 only where runtime.native_bf16 says so (never on meta)
    batch = next(trainer._batches(trainer._tensors("train"), train=True))
    (prepared,) = trainer._prepare(batch)
    assert prepared.device == META and prepared.shape == (4, 4, 4) and prepared.dtype == torch.long


def test_an_explicit_trainer_device_wins_over_the_picked_one(monkeypatch):
    monkeypatch.setattr(train, "pick_device", lambda: META)
    codes = torch.randint(0, K, (8, 4, 4))
    trainer = train.Trainer(_prior(), (codes,), None, train.TrainConfig(max_steps=1, progress=False), device="cpu")
    assert trainer.device == torch.device("cpu") and not _on_meta(trainer.model)


def test_sampler_computes_logits_on_the_priors_device(monkeypatch):
    seen = []

    def stop_at_first_draw(logits, temperature, top_k, generator):
        seen.append((logits.device, tuple(logits.shape)))
        raise _Stop

    monkeypatch.setattr(sampling, "_draw", stop_at_first_draw)
    prior = _prior().to(META)
    for method in ("incremental", "naive"):
        with pytest.raises(_Stop):
            sampling.sample_codes(prior, 3, (4, 4), method=method, progress=False)
    assert seen == [(META, (3, K)), (META, (3, K))]
    assert prior.training   # the stop still restored the mode sampling found


def _vqvae():
    torch.manual_seed(0)
    return VQVAE(VQVAEConfig(hidden=8, res_blocks=1, res_hidden=4, num_codes=K, embed_dim=4))


def test_decode_moves_cpu_codes_to_the_decoders_device(monkeypatch):
    vqvae = _vqvae().to(META)
    seen = []

    def stop(codes):
        seen.append((codes.device, tuple(codes.shape)))
        raise _Stop

    monkeypatch.setattr(vqvae, "decode_codes", stop)
    with pytest.raises(_Stop):
        sampling.decode(vqvae, torch.randint(0, K, (2, 8, 8)))
    assert seen == [(META, (2, 8, 8))]


def test_fid_extractor_sits_and_computes_on_the_requested_device():
    net = metrics.feature_extractor("fast", "meta")
    assert _on_meta(net)
    # Its forward stops at torch.autocast, which rejects "meta"; the resize it runs first builds
    # its interpolation matrices on the input's device.
    x = metrics.tf1x_resize(torch.zeros(2, 3, 32, 32, device=META), metrics.INCEPTION_SIZE)
    assert x.device == META and x.shape == (2, 3, metrics.INCEPTION_SIZE, metrics.INCEPTION_SIZE)
    body = net.Conv2d_1a_3x3(x.contiguous(memory_format=torch.channels_last))
    assert body.device == META and body.shape[:2] == (2, 32)


def test_fid_feature_pass_runs_on_the_picked_device_with_tf32_off(monkeypatch, tf32_flags):
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append((x.device, _tf32_on()))
            return (torch.zeros(len(x), 2048),)

    monkeypatch.setattr(runtime, "pick_device", lambda: META)
    monkeypatch.setattr(metrics.inception, "feature_extractor", lambda kind, device: Recorder())
    tf32_flags(True)   # as if a training run had left TF32 on
    out = metrics.inception_features(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), batch_size=2, progress=False)
    assert out.shape == (3, 2048) and out.device == torch.device("cpu")
    assert seen == [(META, False)] * 2
    assert _tf32_on()   # restored after


def test_tf32_block_restores_the_flags_even_on_error(tf32_flags):
    tf32_flags(False)
    with pytest.raises(_Stop), runtime.tf32(True):
        assert _tf32_on()
        raise _Stop
    assert not _tf32_on()


def test_a_checkpoint_saved_on_cpu_loads_onto_the_requested_device(tmp_path):
    model = _prior()
    path = checkpoints.save_checkpoint(tmp_path / "prior.pt", model)
    ckpt = checkpoints.load_checkpoint(path)
    assert all(t.device == torch.device("cpu") for t in ckpt["state_dict"].values())
    on_meta = checkpoints.build_model(ckpt, device=META)
    assert _on_meta(on_meta)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in on_meta.state_dict().items()} == shapes
    on_cpu = checkpoints.build_model(ckpt)   # the default: the CPU, weights as saved
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in on_cpu.state_dict().items())


# ---- discipline: no torch call mixes devices (tests/_device_guard.py) --------------------------

@pytest.fixture
def meta_autocast(monkeypatch):
    """torch.autocast refuses "meta" even when disabled; on meta it becomes a no-op block."""
    real = torch.autocast

    def autocast(device_type, *args, **kwargs):
        return contextlib.nullcontext() if device_type == "meta" else real(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", autocast)


def _vqvae2():
    torch.manual_seed(0)
    return VQVAE2.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes_top=K, num_codes_bottom=K,
                        embed_dim=8)


def test_the_guard_refuses_what_cuda_refuses():
    with pytest.raises(MixedDevices, match="embedding"), one_device():
        torch.nn.functional.embedding(torch.zeros(2, dtype=torch.long), torch.zeros(K, 4, device=META))
    with one_device() as guard:   # moving is allowed, and so are 0-dim CPU operands
        x = torch.ones(3).to(META) * torch.tensor(2.0)
    assert x.device == META and guard.moves == [(3,)]


def test_the_bottom_priors_condition_is_computed_on_the_autoencoders_device(meta_autocast):
    """04's bottom PixelCNN trains on VQVAE2.top_condition of the top codes: CPU code grids must go
    to the VQ-VAE-2's device first (on a GPU: "Expected all tensors to be on the same device")."""
    vq2 = _vqvae2().to(META)
    top = {"fit": torch.randint(0, K, (700, 8, 8)), "val": torch.randint(0, K, (30, 8, 8))}
    bottom = {"fit": torch.randint(0, K, (700, 16, 16)), "val": torch.randint(0, K, (30, 16, 16))}
    labels = {"fit": torch.randint(0, 3, (700,)), "val": torch.randint(0, 3, (30,))}
    grids = SimpleNamespace(fit=lambda level: (top if level == "top" else bottom)["fit"],
                            val=lambda level: (top if level == "top" else bottom)["val"],
                            fit_labels=lambda style: labels["fit"], val_labels=lambda style: labels["val"])
    family = stages.PriorFamily("pixelcnn", {}, cond_fn=vq2.top_condition)
    with one_device() as guard:
        codes, lab, cond = stages._level_data(grids, family, "bottom", "fit", False)
    assert cond.device == META and cond.shape == (700, 8, 16, 16)
    assert codes is bottom["fit"] and lab is labels["fit"]          # the Trainer moves those itself
    assert guard.moves == [(700, 8, 8)]                             # the top codes, once
    plain = stages.PriorFamily("pixelsnail", {})                    # no cond_fn: the codes as they are
    assert stages._level_data(grids, plain, "bottom", "val", False)[2] is top["val"]


def test_the_trainer_moves_its_data_to_its_device_once_per_run(meta_autocast):
    """Not a batch at a time: the train and val tensors go to the device when the run starts, each
    epoch's order (indices) once, and every batch is indexed there."""
    codes, labels = torch.randint(0, K, (40, 4, 4)), torch.randint(0, 3, (40,))
    torch.manual_seed(0)
    prior = GatedPixelCNN(GatedPixelCNNConfig(num_codes=K, hidden=16, layers=2, head_hidden=16, num_classes=3,
                                              label_dropout=0.2, dropout=0.1)).to(META)
    config = train.TrainConfig(max_steps=9, batch_size=8, progress=False, log_every=2, curve_every=2)
    with one_device() as guard:
        trainer = train.Trainer(prior, (codes[:32], labels[:32]), (codes[32:], labels[32:]), config, device=META)
        trainer.run()
    assert trainer.step == 9 and len(trainer.history["curve_step"]) == 4
    epochs = len(trainer.history["epoch"])
    assert sorted(guard.moves) == sorted([(32, 4, 4), (32,), (8, 4, 4), (8,)] + [(32,)] * epochs)
    assert guard.calls["meta"] > 100 * guard.calls.get("cpu", 0)   # the work ran on the device


def test_sampling_from_a_hierarchy_keeps_to_the_models_device(meta_autocast):
    """Top codes, the bottom's condition through VQVAE2.top_condition, guidance, decoding: with the
    models on the device and labels on the CPU, nothing mixes. (Each position's draw goes through
    the CPU generator callers seed, and back.)"""
    vq2 = _vqvae2().to(META)
    torch.manual_seed(0)
    top = GatedPixelCNN(GatedPixelCNNConfig(num_codes=K, hidden=16, layers=2, head_hidden=16, num_classes=3,
                                            label_dropout=0.2)).to(META)
    bottom = GatedPixelCNN(GatedPixelCNNConfig(num_codes=K, hidden=16, layers=2, head_hidden=16, num_classes=3,
                                               cond_channels=8)).to(META)
    setting = SamplingSetting(temperature=0.9, top_k=5, guidance=2.0)
    with one_device():
        images = sampling.sample_images((top, bottom), vq2, 5, setting=setting, labels=torch.tensor([0, 1, 2, 0, 1]),
                                        cond_fn=vq2.top_condition, progress=False)
    assert images.shape == (5, 3, 64, 64) and images.device == torch.device("cpu")


def test_encoding_keeps_to_the_models_device(meta_autocast):
    from helpers import autoencode

    vq2 = _vqvae2().to(META)
    with one_device() as guard:
        top, bottom = autoencode.encode_all(vq2, torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8))
    assert top.shape == (5, 8, 8) and bottom.shape == (5, 16, 16) and guard.moves == [(5, 3, 64, 64)]


# ---- what a GPU run records and restores --------------------------------------------------------

class _FakeGenerators:
    """Stands in for torch.cuda's generator functions on a machine without CUDA."""

    def __init__(self):
        self.state = torch.tensor([1, 2, 3], dtype=torch.uint8)
        self.set_to = []

    def get_rng_state(self, device):
        return self.state.clone()

    def set_rng_state(self, state, device):
        self.set_to.append(state.clone())


def test_a_checkpoint_keeps_the_training_devices_generator_and_a_resume_restores_it(tmp_path, monkeypatch):
    """On CUDA, dropout, label dropout, flips and the quantizer's restarts draw from the GPU's own
    generator: a resumed run continues the same run only if that state travels with the CPU's."""
    fake = _FakeGenerators()
    monkeypatch.setattr(runtime, "_generator_module", lambda device_type: fake)
    codes = torch.randint(0, K, (8, 4, 4))
    cuda = torch.device("cuda")

    def trainer():
        t = train.Trainer(_prior(), (codes,), None, train.TrainConfig(max_steps=1, progress=False),
                          tmp_path / "p.pt", device="cpu")
        t.device = cuda   # as if it trained there: saving and restoring touch no CUDA tensor
        return t

    trainer()._save(tmp_path / "p.last.pt", completed=False)
    saved = checkpoints.load_checkpoint(tmp_path / "p.last.pt")["extra"]
    assert saved["device_rng_state"]["device"] == "cuda"
    assert torch.equal(saved["device_rng_state"]["state"], fake.state)
    resumed = trainer()
    resumed._restore(checkpoints.load_checkpoint(tmp_path / "p.last.pt"), with_optimizer=True)
    assert len(fake.set_to) == 1 and torch.equal(fake.set_to[0], fake.state)
    on_cpu = train.Trainer(_prior(), (codes,), None, train.TrainConfig(max_steps=1, progress=False), device="cpu")
    on_cpu._restore(checkpoints.load_checkpoint(tmp_path / "p.last.pt"), with_optimizer=True)
    assert len(fake.set_to) == 1   # another kind of device goes on with its own stream


def test_the_classifier_keeps_the_stream_of_the_device_it_trains_on_apart(monkeypatch):
    """fit_classifier seeds its own run; the caller's random streams, the CPU's and the training
    device's (MPS as well as CUDA), must be where they were afterwards."""
    from helpers import recognise

    forked = []

    @contextlib.contextmanager
    def fake_fork(devices=None, enabled=True, device_type=None, **kw):
        forked.append((device_type, list(devices) if devices is not None else None))
        yield

    class NoTraining:
        def __init__(self, model, *args, **kwargs):
            self.model = model

        def run(self):
            return self.model

    monkeypatch.setattr(torch.random, "fork_rng", fake_fork)
    monkeypatch.setattr(recognise, "Trainer", NoTraining)
    images = torch.zeros(6, 3, 32, 32, dtype=torch.uint8)
    ds = SimpleNamespace(classes=lambda label: (torch.zeros(6, dtype=torch.long), ["a", "b"]),
                         images=lambda size, split: images[:3], rows=lambda split: torch.arange(3),
                         fingerprint="x")
    config = train.TrainConfig(max_steps=1, progress=False)
    recognise.fit_classifier(ds, 32, "smoke", config, device="mps")
    assert forked == [("mps", [torch.device("mps")])]
    monkeypatch.setattr(runtime, "pick_device", lambda: torch.device("cpu"))
    recognise.fit_classifier(ds, 32, "smoke", config)
    assert forked[1] == (None, [])   # on the CPU: the CPU's stream alone


def test_native_bf16_on_cuda_means_bf16_tensor_cores_not_emulation(monkeypatch):
    """A T4 or V100 "supports" bf16 by emulation, far slower than fp32: "auto" must train in fp32 there."""
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return including_emulation   # an emulating GPU

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert runtime.native_bf16("cuda") is False and asked == [False]
    assert runtime.resolve_precision("auto", "cuda") == "fp32"


def test_what_a_run_records_names_the_device_it_ran_on(monkeypatch):
    monkeypatch.setattr(runtime, "pick_device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"Test GPU {index}")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    m = runtime.machine()
    assert (m["device"], m["device_name"], m["device_bf16"]) == ("cuda:0", "Test GPU 0", True)
    assert "cpu_model" in m and "fast_bf16" in m   # the host is still named
    cpu = runtime.machine("cpu")
    assert cpu["device"] == "cpu" and cpu["device_bf16"] == cpu["fast_bf16"]


def test_inception_takes_a_batch_per_device(monkeypatch):
    sizes = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            sizes.append(len(x))
            return (torch.zeros(len(x), 2048),)

    monkeypatch.setattr(metrics.inception, "feature_extractor", lambda kind, device: Recorder())
    images = torch.zeros(100, 3, 8, 8, dtype=torch.uint8)
    metrics.inception_features(images, device="cpu", progress=False)
    assert set(sizes[:-1]) == {8}
    sizes.clear()
    out = metrics.inception_features(images, device=META, progress=False)
    assert sizes == [64, 36] and out.shape == (100, 2048) and out.dtype == torch.float64


# ---- precision: TF32 where it is harmless, fp32 where it is not --------------------------------

def test_tf32_uses_the_current_switches_and_every_one_moves_together(tf32_flags):
    tf32_flags(False)
    if runtime._NEW_API:
        with runtime.tf32(True):
            assert torch.backends.cuda.matmul.fp32_precision == "tf32"
            assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"


def test_cudnn_convolutions_are_fp32_by_default():
    """cuDNN's own default allows TF32 convolutions: encoding, sampling and evaluation outside a
    training step must not run in another precision than validation and the CPU. Importing the
    project switches TF32 off (checked in a fresh process: the switches are process-wide)."""
    import subprocess
    import sys

    code = ("import torch; torch.backends.cudnn.conv.fp32_precision = 'tf32'; import helpers.runtime as r; "
            "print(sorted(set(r.tf32_enabled().values())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[False]"


def test_a_cuda_training_step_allows_tf32_and_the_autotuner_and_deterministic_forbids_it():
    cuda = torch.device("cuda")
    before = (_tf32_on(), torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    with runtime.training_backends(cuda):
        assert _tf32_on() and torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
        with runtime.full_fp32(cuda):
            assert not _tf32_on()
        assert _tf32_on()
    with runtime.training_backends(cuda, deterministic=True):
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert torch.is_deterministic_algorithms_warn_only_enabled()   # an op without a kernel warns
        assert not torch.backends.cudnn.benchmark
    assert (_tf32_on(), torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == before
    with runtime.training_backends("cpu", deterministic=True):   # nothing to switch on a CPU
        assert not torch.are_deterministic_algorithms_enabled() and not _tf32_on()


def test_validation_and_the_quantizers_distances_run_in_fp32_inside_a_training_step(monkeypatch, tmp_path):
    """Under TF32 a training step's matmuls keep 10 mantissa bits; the quantizer's nearest-code
    distances and k-means must tell close codes apart (fp32), and validation is fp32 so that a
    learning curve is one precision. full_fp32 is faked to act on the CPU."""
    from helpers.models import losses, quantize

    seen = []
    fp32_blocks = lambda device: runtime.tf32(False)   # noqa: E731  (on a GPU: full_fp32's own block)
    monkeypatch.setattr(quantize, "full_fp32", fp32_blocks)
    monkeypatch.setattr(losses, "full_fp32", fp32_blocks)
    monkeypatch.setattr(train, "full_fp32", fp32_blocks)
    nearest = quantize.VectorQuantizer._nearest
    monkeypatch.setattr(quantize.VectorQuantizer, "_nearest",
                        lambda self, flat: seen.append(("nearest", _tf32_on())) or nearest(self, flat))
    train_step = VQVAE.training_step
    monkeypatch.setattr(VQVAE, "training_step",
                        lambda self, batch: seen.append(("step", self.training, _tf32_on())) or train_step(self, batch))
    torch.manual_seed(0)
    model = VQVAE.named("default", hidden=16, res_blocks=1, res_hidden=8, num_codes=K, embed_dim=4)
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8)
    trainer = train.Trainer(model, (images[:16],), (images[16:],), train.TrainConfig(max_steps=2, batch_size=8,
                            progress=False, precision="fp32"), device="cpu")
    with runtime.tf32(True):   # as a CUDA training step has it
        trainer.fit()
    assert ("step", True, True) in seen and ("step", False, False) in seen          # train TF32, val fp32
    assert ("step", False, True) not in seen
    assert {entry[1] for entry in seen if entry[0] == "nearest"} == {False}


def test_the_results_say_which_gpu_trained_and_in_which_precision():
    from helpers import report

    host = {"cpu": "x86_64", "cpu_model": "Some CPU", "cpu_capability": "AVX2", "fast_bf16": False, "threads": 16,
            "torch": "2.14.1", "commit": "abc1234"}
    gpu = {**host, "device": "cuda:0", "device_name": "Test GPU", "device_bf16": True}
    text = report.machine_text({"protocol": {"machine": gpu}})
    assert "Test GPU (cuda:0)" in text and "bf16 training" in text and "no fast bf16" not in text
    on_cpu = report.machine_text({"protocol": {"machine": {**host, "device": "cpu", "device_bf16": False}}})
    assert on_cpu == report.machine_text({"protocol": {"machine": host}})   # as before a device was recorded
    assert "Some CPU" in on_cpu and "fp32 training (no fast bf16)" in on_cpu


# ---- torchrun: one GPU per process, or the CPU ----------------------------------------------------

@pytest.fixture
def one_gpu(monkeypatch):
    """A machine with one (pretended) CUDA GPU; torch.distributed's start-up recorded, not run."""
    monkeypatch.delenv("EMOJIVQ_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    seen = {}
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: seen.setdefault("set_device", device))
    from helpers import cli

    monkeypatch.setattr(cli.dist, "init_process_group", lambda backend: seen.setdefault("backend", backend))
    return cli, seen


def _torchrun_env(monkeypatch, rank: int, world: int) -> None:
    for key, value in {"WORLD_SIZE": world, "RANK": rank, "LOCAL_RANK": rank, "LOCAL_WORLD_SIZE": world}.items():
        monkeypatch.setenv(key, str(value))


def test_two_processes_on_a_one_gpu_machine_stop_with_what_to_do(one_gpu, monkeypatch):
    cli, seen = one_gpu
    _torchrun_env(monkeypatch, 1, 2)
    with pytest.raises(RuntimeError, match=r"2 processes on this machine but 1 GPU.*--nproc_per_node 1.*EMOJIVQ_DEVICE=cpu"):
        cli.init_distributed()
    assert seen == {}   # refused before binding a GPU or joining a group


def test_each_process_takes_its_own_gpu_or_the_cpu_when_asked(one_gpu, monkeypatch):
    cli, seen = one_gpu
    _torchrun_env(monkeypatch, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")   # two machines, one process each
    assert cli.init_distributed() == torch.device("cuda", 0) and seen == {"set_device": torch.device("cuda", 0),
                                                                          "backend": "nccl"}
    seen.clear()
    _torchrun_env(monkeypatch, 1, 2)
    monkeypatch.setenv("EMOJIVQ_DEVICE", "cpu")   # what the distributed tests ask for
    assert cli.init_distributed() == torch.device("cpu") and seen == {"backend": "gloo"}
