"""A guard for device discipline that needs no GPU: inside ``one_device()``, any torch call whose
tensors sit on two devices raises, as it would on a CUDA or MPS machine. The CPU alone cannot see
such a mix, and PyTorch's ``meta`` device (shapes, no data) lets it pass; with the models on
``meta`` and the data on the CPU, the guard finds each place where data reaches a model without
being moved to its device.

Allowed, as on a GPU: 0-dim CPU tensors beside tensors elsewhere (they act as Python scalars),
and the calls whose job is to move data (``.to``, ``.copy_``, ``.cpu``). Since a meta tensor has
no data, the guard also makes what would read it back give placeholders: a copy to the CPU is
ones (floats; zeros otherwise) of its shape, ``.item()`` / ``.tolist()`` / ``bool()`` give ones
or True. The numbers are then meaningless; where work runs and what moves are not. ``moves``
records every copy onto ``meta`` (its shape), so a test can tell what went to the device and how
often."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

META = torch.device("meta")
_MOVES = {torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cpu, torch.Tensor.cuda,
          torch._has_compatible_shallow_copy_type}   # (asked by Module.to when it moves parameters)
_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
          torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.numpy}


class MixedDevices(RuntimeError):
    """A torch call got tensors on two devices."""


def _placeholder(t: torch.Tensor) -> torch.Tensor:
    fill = 1 if t.dtype.is_floating_point or t.dtype == torch.bool else 0
    return torch.full(t.shape, fill, dtype=t.dtype)


class one_device(TorchFunctionMode):
    """``with one_device() as guard: ...``: raise :class:`MixedDevices` on a call mixing devices;
    ``guard.calls`` counts calls per device type, ``guard.moves`` lists the shapes copied to meta."""

    def __init__(self):
        super().__init__()
        self.calls: dict[str, int] = {}
        self.moves: list[tuple] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if first is not None and first.device == META:
            if func in _READS:
                return func(_placeholder(first), *args[1:], **kwargs)
            if func is torch.Tensor.cpu or (func is torch.Tensor.to and self._target(args, kwargs) == "cpu"):
                dtype = torch._C._nn._parse_to(*args[1:], **kwargs)[1] if func is torch.Tensor.to else None
                out = _placeholder(first)
                return out.to(dtype) if dtype is not None else out
        if func in _MOVES:
            if func is torch.Tensor.to and first is not None and first.device != META \
                    and self._target(args, kwargs) == "meta":
                self.moves.append(tuple(first.shape))
            return func(*args, **kwargs)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        devices = {t.device for t in tensors if not (t.device.type == "cpu" and t.dim() == 0)}
        if len(devices) > 1:
            name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
            raise MixedDevices(f"{name} got tensors on {sorted(map(str, devices))}")
        for d in devices:
            self.calls[d.type] = self.calls.get(d.type, 0) + 1
        return func(*args, **kwargs)

    @staticmethod
    def _target(args, kwargs) -> str | None:
        try:
            device = torch._C._nn._parse_to(*args[1:], **kwargs)[0]
        except (TypeError, RuntimeError):
            return None
        return device.type if device is not None else None
