"""Values made from a module's weights (regrouped or folded weights, tables, whole inference plans), kept on the
module until a weight changes.

A weight changes in place (an optimiser step, `load_state_dict`, `p.copy_`) or is replaced (`.to()`, a new
Parameter); the first bumps the tensor's version counter, the second gives it a new address, so the key
(address, version, dtype, device) of every weight the value was made from notices both.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from torch import Tensor, nn


def _key(weight: Tensor) -> tuple:
    return weight.data_ptr(), weight._version, weight.dtype, weight.device


def cached_on(module: nn.Module, weights: Tensor | Iterable[Tensor], make: Callable[[Any], Any],
              name: str = "_fast") -> Any:
    """make(weights), kept on the module (as attribute `name`) until one of the weights changes.

    Args:
        weights: one tensor, or several (e.g. `module.parameters()`, a tuple then goes to `make`), all followed.
        make: builds the value from `weights`.
        name: the slot on the module; one per cached value. `drop_cached(module, name)` empties it.
    """
    if isinstance(weights, Tensor):
        key = _key(weights)
    else:
        weights = tuple(weights)
        key = tuple(map(_key, weights))
    if module.__dict__.get(name + "_key") != key:
        module.__dict__[name], module.__dict__[name + "_key"] = make(weights), key
    return module.__dict__[name]


def drop_cached(module: nn.Module, name: str = "_fast") -> None:
    """Forget the value `cached_on(module, ..., name=name)` kept (it is made again on next use)."""
    module.__dict__.pop(name, None)
    module.__dict__.pop(name + "_key", None)


def without_cached(state: dict, name: str = "_fast") -> dict:
    """A module's `__dict__` without the cached value `name` and its key: for `__getstate__`, so a copy or a
    pickle makes the value again instead of carrying it."""
    return {k: v for k, v in state.items() if k not in (name, name + "_key")}
