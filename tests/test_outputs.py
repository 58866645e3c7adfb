"""The one atomic file writer and the one folder commit: an old result survives a failure midway."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.outputs import (check_folder_output_path, check_image_output_path, check_outputs_spare_inputs,
                                    commit_folder, write_bytes_atomically)


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


# The checks before any work: only creating the folder (and a file in it) tells whether an output can be written.

def test_a_folder_that_cannot_be_created_is_refused():
    # As root, os.access says /proc is writable; no folder can be created there.
    with pytest.raises(MimicBrushError, match=r"cannot write /proc/no-such/out.png: cannot create folder /proc/no-such \("):
        check_image_output_path(Path("/proc/no-such/out.png"))
    with pytest.raises(MimicBrushError, match=r"cannot create folder /proc/no-such \("):
        check_folder_output_path(Path("/proc/no-such/results"))


@contextmanager
def as_another_user():
    """Run as a user other than the folder's owner: `nobody` where the tests run as root (whose real user id
    os.access asks about, so it says yes), else the current user, who is not root."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def read_only_folder():
    """A folder everyone may read and enter and only its owner (root, where the tests run as root) may write."""
    root = Path(tempfile.mkdtemp())  # not under tmp_path, whose parents are private to their owner
    try:
        root.chmod(0o755)
        folder = root / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
    finally:
        (root / "read-only").chmod(0o755)
        shutil.rmtree(root)


def test_a_folder_this_user_cannot_write_is_refused_where_os_access_says_yes(read_only_folder):
    with as_another_user():
        with pytest.raises(MimicBrushError, match=f"cannot write {read_only_folder / 'out.png'}: {read_only_folder} "
                                                  r"is not writable \("):
            check_image_output_path(read_only_folder / "out.png")
        with pytest.raises(MimicBrushError, match=f"cannot create folder {read_only_folder / 'results'} \\("):
            check_folder_output_path(read_only_folder / "results")
        with pytest.raises(MimicBrushError, match=f"{read_only_folder} is not writable"):
            check_folder_output_path(read_only_folder)
    assert list(read_only_folder.iterdir()) == []


def test_the_checks_leave_no_folder_or_file_behind(tmp_path):
    check_image_output_path(tmp_path / "new" / "deeper" / "out.png")
    check_folder_output_path(tmp_path / "other" / "results")
    check_folder_output_path(tmp_path)
    assert os.listdir(tmp_path) == []


def test_an_output_that_would_replace_an_input_is_refused(tmp_path):
    source = tmp_path / "photos" / "source.png"
    source.parent.mkdir()
    source.write_bytes(b"photo")
    (tmp_path / "link.png").symlink_to(source)
    for output in (source, tmp_path / "photos" / ".." / "photos" / "source.png", tmp_path / "link.png"):
        with pytest.raises(MimicBrushError, match=f"would overwrite the source image {source}"):
            check_outputs_spare_inputs([output], [("source image", source)])
    with pytest.raises(MimicBrushError, match=f"output {tmp_path} would replace the folder that holds the source "
                                              f"image {source}"):
        check_outputs_spare_inputs([tmp_path], [("source image", source)])
    check_outputs_spare_inputs([tmp_path / "photos" / "edited.png", tmp_path / "photos-2"], [("source image", source)])
    os.link(source, tmp_path / "hard-link.png")  # replaced by a rename, the source keeps its content
    check_outputs_spare_inputs([tmp_path / "hard-link.png"], [("source image", source)])
    assert source.read_bytes() == b"photo"
