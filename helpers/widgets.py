"""Explorers for JupyterLab (ipywidgets): a sampler, the interpolation picker and an inpainting
explorer, shown in 05_extensions (the sampler for both the 32x32 and the VQ-VAE-2 priors).

Each explorer is a function that returns the widget, built around a pure callback
(:func:`draw_samples`, :func:`interpolation_view`, :func:`inpaint_view`) that turns the
controls' values into an image tensor — testable without a browser. Where no one can move a
slider (papermill, nbval, plain python) the explorer returns a static matplotlib figure of its
default view instead, so the executed notebook still shows a picture; see :func:`is_static`.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from . import extensions as ext
from . import viz


def is_static() -> bool:
    """True when widgets cannot be used live, so explorers draw a static figure.

    ``EMOJIVQ_STATIC=1`` / ``=0`` decides outright; ``PAPERMILL`` set means static. Otherwise a
    live view needs an IPython kernel that a Jupyter front end started: jupyter_server sets
    ``JPY_SESSION_NAME`` for the kernels of JupyterLab / Notebook sessions, while papermill,
    nbval and nbclient start theirs without it. (Other front ends, e.g. VS Code, get the static
    figure unless ``EMOJIVQ_STATIC=0`` or ``static=False`` is given.)
    """
    flag = os.environ.get("EMOJIVQ_STATIC", "").strip()
    if flag:
        return flag not in ("0", "false", "False", "no")
    if os.environ.get("PAPERMILL"):
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return True
    shell = get_ipython()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return True
    return not os.environ.get("JPY_SESSION_NAME")


def _explorer(controls: list, render: Callable[[], "plt.Figure"], static: bool | None,
              triggers: Sequence | None = None):
    """The static figure, or a VBox of ``controls`` over an Output that ``render`` redraws when a
    trigger changes (a Button's click or a control's value; default: every control's value)."""
    if is_static() if static is None else static:
        fig = render()
        plt.close(fig)   # returned, so the notebook shows it once (not again by the inline backend)
        return fig
    import ipywidgets as widgets
    from IPython.display import display

    out = widgets.Output()
    # the controls wrap onto more lines where the page is narrower than their row
    box = widgets.VBox([widgets.HBox(controls, layout=widgets.Layout(flex_flow="row wrap")), out])

    def refresh(*_):
        with out:
            out.clear_output(wait=True)
            box.figure = render()   # kept: the last view, for tests and for saving
            display(box.figure)
            plt.close(box.figure)

    for c in triggers if triggers is not None else controls:
        if isinstance(c, widgets.Button):
            c.on_click(refresh)
        else:
            c.observe(refresh, names="value")
    box.refresh = refresh   # tests and users can redraw without a click
    refresh()
    return box


# ---------------------------------------------------------------------------------------------
# sampler

def _labels(prior, n: int, category: int | None, style: int | None):
    """What the sampler is given: the category alone, or, for a prior conditioned on the vendor
    and a chosen ``style``, (n, 2) category ("none" if not chosen) and style."""
    from .sampling import styled

    if style is None or not styled(prior):
        return category
    num_classes = (prior[0] if isinstance(prior, (tuple, list)) else prior).config.num_classes
    return torch.tensor([[num_classes if category is None else category, style]]).expand(n, 2)


def draw_samples(sources: dict, name: str, *, temperature: float = 1.0, top_k: int | None = None,
                 guidance: float = 1.0, category: int | None = None, style: int | None = None, n: int = 16,
                 seed: int = 0) -> torch.Tensor:
    """``n`` uint8 samples of the prior ``sources[name]``: a (prior, decoder) pair, the prior a
    code prior for a VQ-VAE or a (top, bottom) pair for a VQ-VAE-2 (optionally a third item,
    ``cond_fn`` for a bottom prior without its own condition, e.g. ``vqvae2.top_condition``).
    ``top_k`` 0 or None: off; ``category`` and ``style`` (a vendor, for priors conditioned on it)
    None: any (with neither, ``guidance`` does nothing)."""
    from .artifacts import SamplingSetting
    from .sampling import sample_images

    prior, decoder, *rest = sources[name]
    setting = SamplingSetting(temperature=temperature, top_k=top_k or None, guidance=guidance)
    return sample_images(prior, decoder, n, setting=setting, labels=_labels(prior, n, category, style), seed=seed,
                         progress=False, cond_fn=rest[0] if rest else None)


def sampler_explorer(sources: dict, category_names: Sequence[str] | dict, *, style_names: Sequence[str] = (),
                     n: int = 16, seed: int = 0, max_top_k: int = 512, static: bool | None = None):
    """Choose the prior, temperature, top-k (0 = off), guidance (with a category) and category,
    and with ``style_names`` (the vendors), when a prior is conditioned on it, the style; "draw"
    samples a fresh grid (a new seed per click). ``category_names``: the class names of every
    prior, or {prior: its class names} when they differ (categories for one, sub-categories for
    another). Static: ``n`` unconditional samples of the first prior at T = 1."""
    import ipywidgets as widgets

    from .sampling import styled

    names = list(sources)
    classes = category_names if isinstance(category_names, dict) else {name: category_names for name in names}
    options = lambda name: [("any", None)] + [(c, i) for i, c in enumerate(classes[name])]
    prior = widgets.Dropdown(options=names, value=names[0], description="prior")
    temperature = widgets.FloatSlider(value=1.0, min=0.3, max=1.5, step=0.05, description="temperature")
    top_k = widgets.IntSlider(value=0, min=0, max=max_top_k, step=1, description="top-k (0: off)")
    guidance = widgets.FloatSlider(value=1.0, min=0.0, max=5.0, step=0.25, description="guidance")
    category = widgets.Dropdown(options=options(names[0]), value=None, description="category")
    # registered before the explorer's redraw, so a new prior's classes are in place when it draws
    prior.observe(lambda change: setattr(category, "options", options(change["new"])), names="value")
    style = widgets.Dropdown(options=[("any", None)] + [(v, i) for i, v in enumerate(style_names)],
                             value=None, description="style")
    draw = widgets.Button(description="draw", button_style="primary")
    state = {"seed": seed}
    draw.on_click(lambda _: state.update(seed=state["seed"] + 1))   # registered first: runs before the redraw

    def render():
        cat, sty = category.value, style.value
        images = draw_samples(sources, prior.value, temperature=temperature.value, top_k=top_k.value,
                              guidance=guidance.value, category=cat, style=sty, n=n, seed=state["seed"])
        what = "any category" if cat is None else f"{classes[prior.value][cat]}, guidance {guidance.value:.2f}"
        what += "" if sty is None or not styled(sources[prior.value][0]) else f", {style_names[sty]} style"
        return viz.image_grid(images, nrow=min(n, 8), title=f"{prior.value}: T = {temperature.value:.2f}, "
                              f"top-k = {top_k.value or 'off'}, {what} (seed {state['seed']})")

    with_style = bool(style_names) and any(styled(source[0]) for source in sources.values())
    controls = [prior, temperature, top_k, guidance, category] + ([style] if with_style else []) + [draw]
    return _explorer(controls, render, static, triggers=[draw, prior])


# ---------------------------------------------------------------------------------------------
# interpolation

VIEW_LABELS = ["A", "latent blend", "snapped to codes", "pixel cross-fade", "B"]


def interpolation_view(vqvae, image_a: torch.Tensor, image_b: torch.Tensor, alpha: float,
                       source: str = "codebook") -> torch.Tensor:
    """(5, 3, H, W) uint8: A, the latent blend at ``alpha`` decoded, the same snapped to codes,
    the pixel cross-fade, B (``extensions.blend_at``)."""
    return torch.cat(list(ext.blend_at(vqvae, image_a, image_b, alpha, source).values()))


def interpolation_picker(vqvae, images: torch.Tensor, names: Sequence[str], *, default=(0, 1), steps: int = 12,
                         static: bool | None = None):
    """Two emoji dropdowns and a slider for a. Static: the whole ``steps``-step interpolation of
    the ``default`` pair (latent blend, snapped, cross-fade)."""
    import ipywidgets as widgets

    options = [(f"{i}: {name}", i) for i, name in enumerate(names)]
    a = widgets.Dropdown(options=options, value=default[0], description="A")
    b = widgets.Dropdown(options=options, value=default[1], description="B")
    alpha = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=1 / (steps - 1), description="a")
    is_static_view = is_static() if static is None else static

    def render():
        if is_static_view:
            rows = ext.interpolate(vqvae, images[a.value], images[b.value], steps)
            return viz.compare_grid(list(rows.values()), list(rows),
                                    title=f"{names[a.value]} -> {names[b.value]}")
        view = interpolation_view(vqvae, images[a.value], images[b.value], alpha.value)
        return viz.image_grid(view, nrow=5, title=f"a = {alpha.value:.2f}: " + " | ".join(VIEW_LABELS))

    return _explorer([a, b, alpha], render, is_static_view)


# ---------------------------------------------------------------------------------------------
# inpainting

INPAINT_LABELS = ["original", "masked", "autoencoder", "prior (best)"]


def inpaint_view(vqvae, prior, images: torch.Tensor, tops, lefts, *, labels=None, n_samples: int = 4,
                 mask: int = 8, seed: int = 0) -> torch.Tensor:
    """(4 + n_samples, N, 3, H, W) uint8 for N images with their masks at (tops, lefts): original,
    masked, the autoencoder's inpainting, the prior's best sample, then every prior sample."""
    masks = ext.mask_at(tops, lefts, images.shape[-1], mask)
    ae = ext.autoencoder_inpaint(vqvae, images, masks)
    pr = ext.prior_inpaint(prior, vqvae, images, masks, n_samples=n_samples, labels=labels, seed=seed,
                           progress=False)
    return torch.stack([images, ext.apply_mask(images, masks), ae, pr.best, *pr.samples.unbind(1)])


def inpainting_explorer(vqvae, prior, images: torch.Tensor, names: Sequence[str], *, labels=None,
                        n_samples: int = 4, mask: int = 8, static_rows: Sequence[int] = range(8),
                        static: bool | None = None):
    """An emoji dropdown and sliders for the mask's corner; both methods side by side, then the
    prior's samples. Static: the emojis ``static_rows`` with a centred mask, one column each."""
    import ipywidgets as widgets

    size = images.shape[-1]
    options = [(f"{i}: {name}", i) for i, name in enumerate(names)]
    emoji = widgets.Dropdown(options=options, value=0, description="emoji")
    top = widgets.IntSlider(value=(size - mask) // 2, min=0, max=size - mask, description="mask top")
    left = widgets.IntSlider(value=(size - mask) // 2, min=0, max=size - mask, description="mask left")
    is_static_view = is_static() if static is None else static
    label_of = (lambda i: None) if labels is None else (lambda i: torch.as_tensor(labels)[i])  # noqa: E731

    def render():
        if is_static_view:
            rows = torch.as_tensor(list(static_rows)).long()
            rows = rows[rows < len(images)]
            centre = [(size - mask) // 2] * len(rows)
            view = inpaint_view(vqvae, prior, images[rows], centre, centre, n_samples=n_samples, mask=mask,
                                labels=None if labels is None else torch.as_tensor(labels)[rows])
            return viz.compare_grid(list(view[:4]), INPAINT_LABELS, title="inpainting an 8x8 mask")
        i = emoji.value
        view = inpaint_view(vqvae, prior, images[i:i + 1], top.value, left.value, n_samples=n_samples,
                            mask=mask, labels=label_of(i))
        return viz.image_grid(view[:, 0], nrow=len(view), title=f"{names[i]}: " + " | ".join(INPAINT_LABELS)
                              + f" | {n_samples} prior samples")

    return _explorer([emoji, top, left], render, is_static_view)


__all__ = ["is_static", "draw_samples", "sampler_explorer", "interpolation_view", "interpolation_picker",
           "inpaint_view", "inpainting_explorer"]
