"""Which inputs a prior's logits depend on, by gradients: the check behind every causality test."""

import torch


def embedding_grads(model, codes, labels=None, cond=None) -> torch.Tensor:
    """|d logits at output position p / d (embedded input at slot s)|, summed over channels: (L, L) for a
    grid of L = H * W codes, output positions and input slots both in raster order. One backward pass:
    batch element b carries the gradient of position b (eval mode, so BatchNorm does not mix the batch).
    A prior's ``embed`` module must produce the embedded input, (B, H, W, C) or (B, L, C)."""
    model.eval()
    store = {}

    def keep(_module, _inp, out):
        out.retain_grad()
        store["e"] = out

    _, H, W = codes.shape
    n = H * W
    rep = lambda t: None if t is None else t[:1].expand(n, *t.shape[1:])  # noqa: E731
    handle = model.embed.register_forward_hook(keep)
    try:
        logits = model(rep(codes), rep(labels), rep(cond))
        pick = torch.zeros(n, 1, n)
        pick[torch.arange(n), 0, torch.arange(n)] = 1
        (logits.flatten(2) * pick).sum().backward()
    finally:
        handle.remove()
    return store["e"].grad.abs().sum(-1).reshape(n, n)
