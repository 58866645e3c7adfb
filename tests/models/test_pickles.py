"""A weights pickle that cannot be loaded is a one-line user error that says so plainly."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.models.checkpoints import load_released_checkpoint, read_weights_file
from mimicbrush_cli.models.pickles import load_weights_pickle


class RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "mimicbrush.bin"
    torch.save({"unet": RunsCode()}, path)
    with pytest.raises(MimicBrushError) as caught:
        load_released_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"refused to unpickle released checkpoint {path}")
    assert "weights_only" not in message and "\n" not in message
    assert isinstance(caught.value.__cause__, pickle.UnpicklingError)


@pytest.mark.parametrize("content", [b"", b"hello, not a pickle\n", b"PK\x03\x04 truncated zip"],
                         ids=["empty", "text", "truncated"])
def test_a_corrupt_file_is_not_a_loadable_checkpoint(tmp_path, content):
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(content)
    with pytest.raises(MimicBrushError, match="is not a loadable checkpoint"):
        read_weights_file(tmp_path, "diffusion_pytorch_model")


def test_a_bug_inside_torch_load_is_not_turned_into_a_user_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError

    monkeypatch.setattr(torch, "load", broken)
    with pytest.raises(ZeroDivisionError):
        load_weights_pickle(tmp_path / "x.pt", "weights")
