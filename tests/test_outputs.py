"""The one atomic file writer and the one folder commit: an old result survives a failure midway."""

import os
from pathlib import Path

import pytest

from mimicbrush_cli.outputs import commit_folder, write_bytes_atomically


def test_file_writer_flushes_the_file_and_its_folder_before_it_returns(tmp_path, monkeypatch):
    flushed = []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        flushed.append(os.path.realpath(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_bytes_atomically(tmp_path / "result.json", b"{}")
    assert (tmp_path / "result.json").read_bytes() == b"{}"
    assert flushed[-1] == str(tmp_path.resolve())  # the rename itself is flushed
    assert any(Path(path).name.startswith(".result.json.") for path in flushed[:-1])  # the data, before the rename


def test_file_writer_leaves_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    path.write_bytes(b"old")

    def failing_replace(source, destination):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_bytes_atomically(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["result.json"]


def make_folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "weights.bin").write_text(text)
    return path


def test_commit_folder_replaces_an_existing_folder_and_removes_the_old_one(tmp_path):
    make_folder(tmp_path / "step-000002", "old")
    commit_folder(make_folder(tmp_path / ".staging", "new"), tmp_path / "step-000002")
    assert (tmp_path / "step-000002" / "weights.bin").read_text() == "new"
    assert os.listdir(tmp_path) == ["step-000002"]


def test_commit_folder_keeps_the_old_folder_when_renaming_the_new_one_in_fails(tmp_path, monkeypatch):
    make_folder(tmp_path / "step-000002", "old")
    staging = make_folder(tmp_path / ".staging", "new")
    real_replace = os.replace

    def fail_on_staging(source, destination):
        if Path(source) == staging:
            raise OSError("disk gone")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", fail_on_staging)
    with pytest.raises(OSError, match="disk gone"):
        commit_folder(staging, tmp_path / "step-000002")
    assert (tmp_path / "step-000002" / "weights.bin").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == [".staging", "step-000002"]
