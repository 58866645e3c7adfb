"""`prepare`: outputs, resume after interruption, array-job splits, CLI, recipes."""

import hashlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import mimicbrush_cli
from mimicbrush_cli.cli.app import app
from mimicbrush_cli.config import config_to_dict, load_config
from mimicbrush_cli.data import PrepareConfig, iter_video_pairs, prepare
from mimicbrush_cli.data.shards import ShardWriter, read_sidecars
from mimicbrush_cli.data.summary import HISTOGRAM_BINS

RECIPES = Path(__file__).resolve().parents[2] / "data_recipes"


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, photo_frames, make_video_session):
    """Five videos (one of them bad) so that shards of two inputs leave a partial last chunk."""
    folder = tmp_path_factory.mktemp("mixed")
    for index in range(4):
        frames = photo_frames["astronaut" if index % 2 else "coffee"][index:]
        make_video_session(folder / f"clip{index}.mp4", frames)
    (folder / "broken.webm").write_bytes(b"\x1a\x45\xdf\xa3 not really a webm")
    return folder


def manifest_text(folder: Path) -> str:
    return (folder / "manifest.jsonl").read_text()


def tar_contents(folder: Path) -> list[bytes]:
    return sorted(path.read_bytes() for path in (folder / "shards").glob("*.tar"))


def test_prepare_writes_shards_manifest_histogram_and_summary(tmp_path, video_folder, sam_folder, config_for_tiny_videos):
    summary = prepare(tmp_path, config_for_tiny_videos(), videos=video_folder, sam_images=sam_folder)
    assert summary.video_pairs == 6 and summary.sam_samples == 2
    assert summary.histogram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "summary.json").is_file()
    assert len(manifest_text(tmp_path).splitlines()) == 8
    assert not list(tmp_path.rglob(".*tmp*"))  # no temporary file left behind
    pairs = list(iter_video_pairs([tmp_path]))
    assert len(pairs) == 6
    key, source, reference = pairs[0]
    assert source.dtype == np.uint8 and source.shape == reference.shape == (48, 64, 3)


def test_every_scored_pair_is_kept_or_counted_once_by_reason(tmp_path, video_folder, config_for_tiny_videos):
    summary = prepare(tmp_path, config_for_tiny_videos(), videos=video_folder)
    pair_counts = {reason: count for reason, count in summary.rejects.items() if reason.startswith("pair:")}
    assert set(pair_counts) == {"pair:too-similar", "pair:too-different", "pair:not-chosen"}
    assert pair_counts["pair:not-chosen"] > 0  # 3 pairs at most per video, many more inside the window
    assert sum(summary.ssim_histogram) == summary.video_pairs + sum(pair_counts.values())


def test_a_clip_without_a_pair_in_the_window_names_its_closest_ssim_and_the_window(tmp_path, video_folder,
                                                                                  config_for_tiny_videos):
    summary = prepare(tmp_path, config_for_tiny_videos(ssim_min=0.97, ssim_max=0.99), videos=video_folder)
    assert {entry["reason"] for entry in summary.skipped} == {"no-pair-in-ssim-window"}
    histogram = np.asarray(summary.ssim_histogram)
    assert histogram.sum() == summary.rejects["pair:too-different"]  # every pair is below the window
    for entry in summary.skipped:
        match = re.fullmatch(r"closest SSIM (\S+) of (\d+) scored pairs \(range (\S+)\.\.(\S+)\), "
                             r"window \[0\.97, 0\.99\]", entry["detail"])
        assert match, entry["detail"]
        closest, highest = float(match[1]), float(match[4])
        assert closest == highest < 0.97  # below the window, the closest pair is the most similar one
    # The most similar pair of both clips lies in the histogram's highest non-empty bin.
    top_bin = np.flatnonzero(histogram)[-1]
    best = max(float(re.search(r"closest SSIM (\S+)", entry["detail"])[1]) for entry in summary.skipped)
    assert HISTOGRAM_BINS[top_bin] - 5e-4 <= best <= HISTOGRAM_BINS[top_bin + 1] + 5e-4
    assert sum(int(re.search(r"of (\d+) scored", entry["detail"])[1]) for entry in summary.skipped) == histogram.sum()


def test_resume_after_interruption_gives_the_same_manifest(tmp_path, mixed_folder, config_for_tiny_videos,
                                                          monkeypatch):
    config = config_for_tiny_videos()
    prepare(tmp_path / "whole", config, videos=mixed_folder)

    real_commit = ShardWriter.commit
    calls = []

    def crash_on_second_shard(self, sidecar):
        calls.append(self.name)
        if len(calls) == 2:
            self._tar.close() if self._tar else None
            raise KeyboardInterrupt  # killed while the second shard's tar is still a temporary file
        return real_commit(self, sidecar)

    monkeypatch.setattr(ShardWriter, "commit", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        prepare(tmp_path / "resumed", config, videos=mixed_folder)
    monkeypatch.setattr(ShardWriter, "commit", real_commit)
    assert len(read_sidecars(tmp_path / "resumed")) == 1

    summary = prepare(tmp_path / "resumed", config, videos=mixed_folder)
    assert summary.run_already_done == 2 and summary.run_processed == 3
    assert manifest_text(tmp_path / "resumed") == manifest_text(tmp_path / "whole")
    again = prepare(tmp_path / "resumed", config, videos=mixed_folder)
    assert again.run_processed == 0 and manifest_text(tmp_path / "resumed") == manifest_text(tmp_path / "whole")


def test_a_skipped_truncated_video_is_redone_once_the_complete_file_replaces_it(tmp_path, photo_frames, make_video,
                                                                             config_for_tiny_videos, monkeypatch):
    prepare_module = importlib.import_module("mimicbrush_cli.data.prepare")  # not the function the package exports

    folder = tmp_path / "videos"
    folder.mkdir()
    make_video(folder / "a.mp4", photo_frames["coffee"])
    complete = make_video(tmp_path / "complete.mp4", photo_frames["astronaut"])
    (folder / "b.mp4").write_bytes(complete.read_bytes()[:complete.stat().st_size // 2])  # a download cut short
    make_video(folder / "c.mp4", photo_frames["astronaut"][4:])
    config = config_for_tiny_videos()  # two inputs per shard: [a, b] and [c]
    out = tmp_path / "out"
    first = prepare(out, config, videos=folder)
    assert [entry["id"] for entry in first.skipped] == ["video:b.mp4"]

    shutil.copyfile(complete, folder / "b.mp4")  # the download completed
    # Killed after the new shard was committed, before the one it replaces was deleted: that one is ignored.
    monkeypatch.setattr(prepare_module, "remove_replaced_shards", lambda output: None)
    resumed = prepare(out, config, videos=folder)
    assert resumed.skipped == [] and resumed.run_already_done == 1 and resumed.run_processed == 2
    fresh = tmp_path / "fresh"
    uninterrupted = prepare(fresh, config, videos=folder)
    assert manifest_text(out) == manifest_text(fresh)
    assert resumed.video_pairs == uninterrupted.video_pairs == 9
    assert resumed.ssim_histogram == uninterrupted.ssim_histogram

    monkeypatch.undo()
    again = prepare(out, config, videos=folder)
    assert again.run_processed == 0 and manifest_text(out) == manifest_text(fresh)
    # The replaced shard's tar and sidecar are gone; the shards hold the same bytes as the uninterrupted run's.
    assert read_sidecars(out, replaced=True) == [] and len(list((out / "shards").glob("*.json"))) == 2
    assert tar_contents(out) == tar_contents(fresh)


def test_array_job_parts_together_equal_one_job(tmp_path, mixed_folder, config_for_tiny_videos):
    config = config_for_tiny_videos()
    prepare(tmp_path / "one", config, videos=mixed_folder)
    parts = [prepare(tmp_path / "split", config, videos=mixed_folder, shard_index=index, num_shards=2)
             for index in range(2)]
    assert sum(part.run_inputs for part in parts) == 5 and min(part.run_inputs for part in parts) > 0
    assert manifest_text(tmp_path / "split") == manifest_text(tmp_path / "one")


@pytest.mark.slow
def test_worker_processes_give_the_same_manifest(tmp_path, mixed_folder, config_for_tiny_videos):
    config = config_for_tiny_videos()
    prepare(tmp_path / "serial", config, videos=mixed_folder)
    prepare(tmp_path / "pool", config, videos=mixed_folder, workers=2)
    assert manifest_text(tmp_path / "pool") == manifest_text(tmp_path / "serial")


def live_descendants(pid: int) -> set[int]:
    """Processes below `pid` that are running (not zombies), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state != "Z":
            children.setdefault(int(parent), []).append(int(stat.parent.name))
    found, frontier = set(), [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.add(child)
            frontier.append(child)
    return found


def is_running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# What the `mimicbrush` command runs (the console script's text), and a hook for a worker, which re-imports it
# (spawn runs the parent's main module again): it holds the second worker there, still starting when its parent
# is killed, as a slow import on a loaded machine would.
LAUNCHER = """import os, sys, time
if __name__ == "__mp_main__" and os.environ.get("SLOW_SECOND_WORKER"):
    try:
        os.close(os.open(os.environ["SLOW_SECOND_WORKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # the first worker goes on at once
        time.sleep(60)
from mimicbrush_cli.cli.app import main
if __name__ == "__main__":
    sys.exit(main())
"""


def output_files(folder: Path) -> dict[str, str]:
    """Every file of a prepared folder, hidden ones too, with a hash of its bytes; but summary.json (it has the run's
    timings)."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != "summary.json"}


@pytest.mark.slow
@pytest.mark.parametrize("stop, workers, slow_start", [
    (signal.SIGKILL, 2, False), (signal.SIGTERM, 2, False), (signal.SIGKILL, 1, False), (signal.SIGKILL, 2, True)],
    ids=["kill-9", "sigterm", "kill-9-one-process", "kill-9-while-a-worker-starts"])
def test_workers_stop_with_a_killed_prepare_and_a_rerun_gives_the_same_files(tmp_path, photo_frames, make_video,
                                                                             config_for_tiny_videos, stop, workers,
                                                                             slow_start):
    folder = tmp_path / "videos"
    folder.mkdir()
    for index in range(12):
        make_video(folder / f"clip{index:02d}.mp4", photo_frames["astronaut" if index % 2 else "coffee"][index % 4:])
    # One process spends long on a shard of four videos: the kill finds the shard's temporary tar open.
    config = config_for_tiny_videos(inputs_per_shard=1 if workers > 1 else 4)
    chunks = 12 // config.inputs_per_shard
    recipe, launcher = tmp_path / "recipe.yaml", tmp_path / "mimicbrush"
    recipe.write_text(yaml.safe_dump({key: value for key, value in config_to_dict(config).items()
                                      if value is not None}))
    launcher.write_text(LAUNCHER)
    out, shards = tmp_path / "out", tmp_path / "out" / "shards"
    command = [sys.executable, str(launcher), "prepare", str(folder), "-o", str(out), "--recipe", str(recipe),
               "--workers", str(workers)]
    package_root = str(Path(mimicbrush_cli.__file__).parents[1])
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": package_root}
    slow = {"SLOW_SECOND_WORKER": str(tmp_path / "first-worker-started")} if slow_start else {}
    with open(tmp_path / "stderr.txt", "wb") as stderr:
        parent = subprocess.Popen(command, env=env | slow, stdout=subprocess.DEVNULL, stderr=stderr)
    workers_seen: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        # Busy: a shard is committed and (one process) the next one is being written.
        while not (list(shards.glob("*.json")) and (workers > 1 or list(shards.glob(".*.tmp*")))):
            assert parent.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()
            time.sleep(0.005)
        workers_seen = live_descendants(parent.pid)
        parent.send_signal(stop)
        parent.wait()
        committed = sorted(path.name for path in shards.glob("*.json"))
        assert (workers_seen or workers == 1) and len(committed) < chunks  # stopped mid-run
        deadline = time.monotonic() + 5
        while any(is_running(pid) for pid in workers_seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers_seen if is_running(pid)], "worker processes outlived prepare"
        time.sleep(1)
        assert sorted(path.name for path in shards.glob("*.json")) == committed  # nothing written after the stop
        if workers > 1:
            assert not list(shards.glob(".*"))  # the workers deleted the shards they were writing
    finally:
        for pid in workers_seen:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)

    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    resumed = json.loads((out / "summary.json").read_text())
    assert resumed["run_already_done"] == len(committed) * config.inputs_per_shard
    prepare(tmp_path / "whole", config, videos=folder)
    # The same files with the same bytes as a run never stopped: shards, sidecars, manifest, histogram, nothing else.
    assert output_files(out) == output_files(tmp_path / "whole")


def test_a_rerun_deletes_the_temporary_shards_of_dead_processes_of_this_host_only(tmp_path, video_folder,
                                                                                 config_for_tiny_videos):
    shards = tmp_path / "out" / "shards"
    shards.mkdir(parents=True)
    host, ended = socket.gethostname(), subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    stale = shards / f".video-0123.tar.tmp-{host}-{ended.pid}"  # a run killed with kill -9 while writing it
    running = shards / f".video-4567.json.tmp-{host}-{os.getppid()}"  # another run, still writing
    elsewhere = shards / f".video-89ab.tar.tmp-other-host-{ended.pid}"  # an array job on another machine
    for path in (stale, running, elsewhere):
        path.write_bytes(b"half a shard")
    prepare(tmp_path / "out", config_for_tiny_videos(), videos=video_folder)
    assert not stale.exists() and running.exists() and elsewhere.exists()


def test_a_worker_whose_parent_died_commits_nothing(tmp_path, video_folder, config_for_tiny_videos, monkeypatch):
    # The death signal's handler runs between Python instructions only: a worker in native code can reach
    # its commit with the signal still pending. The check before each commit stops it there.
    from mimicbrush_cli.data import workers

    out = tmp_path / "out"
    monkeypatch.setattr(workers, "_parent_pid", os.getppid() + 1)  # this "worker"'s parent is gone
    with pytest.raises(SystemExit):
        prepare(out, config_for_tiny_videos(), videos=video_folder)
    assert not list((out / "shards").glob("*.json")) and not list((out / "shards").glob(".*"))
    monkeypatch.setattr(workers, "_parent_pid", os.getppid())  # its parent lives: it commits
    assert prepare(out, config_for_tiny_videos(), videos=video_folder).video_pairs > 0
    assert list((out / "shards").glob("*.json"))


def test_changing_the_recipe_of_an_existing_output_is_refused(tmp_path, video_folder, config_for_tiny_videos):
    from mimicbrush_cli.errors import MimicBrushError

    prepare(tmp_path, config_for_tiny_videos(), videos=video_folder)
    with pytest.raises(MimicBrushError, match="other settings"):
        prepare(tmp_path, config_for_tiny_videos(ssim_min=0.3), videos=video_folder)


def test_cli_prepare_renders_a_summary_and_reports_user_errors(tmp_path, video_folder):
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", str(video_folder), "-o", str(tmp_path / "out"), "--set", "sample_fps=5",
                                 "--set", "min_gap_s=0.4", "--set", "ssim_min=0.15", "--set", "ssim_max=0.6"])
    assert result.exit_code == 0, result.output
    assert "video pairs" in result.output and (tmp_path / "out" / "manifest.jsonl").is_file()
    missing = runner.invoke(app, ["prepare", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out2")])
    assert missing.exit_code == 2 and "no such folder" in missing.output
    typo = runner.invoke(app, ["prepare", str(video_folder), "-o", str(tmp_path / "out3"), "--set", "ssim_mni=0.3"])
    assert typo.exit_code == 2 and "unknown config key ssim_mni" in typo.output


def test_cli_prepare_that_prepares_nothing_fails_in_one_line_and_writes_its_summary(tmp_path):
    # (A folder without any input is refused before anything is written: test_prepare_bad_inputs.py.)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "clip.mp4").write_bytes(b"not a video")
    runner = CliRunner()
    skipped = runner.invoke(app, ["prepare", str(broken), "-o", str(tmp_path / "out2")])
    assert skipped.exit_code == 2
    assert "error: nothing prepared: all 1 inputs were skipped (1 unreadable-container; details in" in skipped.output
    assert "skipped video:clip.mp4: unreadable-container" in skipped.output
    record = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert [entry["id"] for entry in record["skipped"]] == ["video:clip.mp4"]


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda path: path.stem)
def test_recipes_load_into_prepare_config(recipe):
    assert isinstance(load_config(PrepareConfig, recipe), PrepareConfig)


def test_there_are_three_recipes():
    assert {path.stem for path in RECIPES.glob("*.yaml")} >= {"stock_video", "sa1b", "offline_small"}
