"""One checker for every state dict loaded into a model: a user error that names the first unknown,
missing or wrongly-shaped weight, where torch would raise a many-line error (or, into a model built on
the meta device, "Cannot copy out of meta tensor")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..errors import MimicBrushError


def first_of(keys: Iterable[str], what: str) -> str:
    """`what` and the first of `keys` in sorted order, with how many more there are."""
    keys = sorted(keys)
    return f"{what} {keys[0]}" + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else "")


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str,
                            allowed_missing: Iterable[str] = frozenset(), assign: bool = False,
                            file_names: Mapping[str, str] | None = None) -> None:
    """`module.load_state_dict` after checking every key and shape; errors start with `what`.

    `allowed_missing`: keys the state dict may lack (they keep the module's values). `assign`: take
    the tensors themselves (for a module built on the meta device). `file_names`: the name a key had
    in the file, for weights renamed on loading; errors then give both.
    """
    expected = module.state_dict()
    unknown = set(state_dict) - set(expected)
    if unknown:
        raise MimicBrushError(f"{what}: {first_of(unknown, 'unknown weight')}")
    missing = set(expected) - set(state_dict) - set(allowed_missing)
    if missing:
        raise MimicBrushError(f"{what}: {first_of(missing, 'missing weight')}")
    for key, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            name = key if file_names is None or file_names.get(key, key) == key else f"{file_names[key]} (as {key})"
            raise MimicBrushError(f"{what}: weight {name} has shape {tuple(tensor.shape)}, "
                                  f"expected {tuple(expected[key].shape)}")
    module.load_state_dict(state_dict, strict=False, assign=assign)
