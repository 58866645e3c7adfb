"""Stage 0 of a from-scratch model (VAE, image encoder) through `train`, on videos made from real photos."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from mimicbrush_cli.data.camera_motion import camera_motion_frames, write_camera_motion_videos
from mimicbrush_cli.loading import load_pipeline_folder
from mimicbrush_cli.loading import build_random_pipeline
from mimicbrush_cli.errors import MimicBrushError
from mimicbrush_cli.training import train
from mimicbrush_cli.training.config import load_train_config
from mimicbrush_cli.training.checkpointing import list_checkpoints


def test_camera_motion_moves_and_changes_light():
    frames = list(camera_motion_frames(data.coffee(), num_frames=12, size=(80, 60), seed=3))
    assert len(frames) == 12 and frames[0].shape == (60, 80, 3)
    first, last = frames[0].astype(float), frames[-1].astype(float)
    assert np.abs(first - last).mean() > 5  # the view moved
    again = list(camera_motion_frames(data.coffee(), num_frames=12, size=(80, 60), seed=3))
    np.testing.assert_array_equal(frames[5], again[5])


def test_camera_motion_video_decodes(tmp_path):
    Image.fromarray(data.rocket()).save(tmp_path / "rocket.png")
    (video,) = write_camera_motion_videos([tmp_path / "rocket.png"], tmp_path / "out", num_frames=10, size=(64, 48))
    with av.open(str(video)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 10 and frames[0].shape == (48, 64, 3)


STAGES = {"autoencoder": "vae", "contrastive": "image_encoder"}


def stage_config(prepared, output_dir, task="autoencoder", **overrides):
    values = {"model": {"init": "random", "size": "tiny"}, "trainable": [STAGES[task]],
              "objective": {"task": task, "crop_size": 32 if task == "autoencoder" else 0},
              "data": {"shard_dirs": [str(prepared)], "resolution": 64}, "steps": 4, "batch_size": 2,
              "optimizer": {"lr": 1e-3}, "validation": {"every": 0}, "checkpoint_every": 2,
              "output_dir": str(output_dir), "export": str(output_dir / "model")}
    values.update(overrides)
    return load_train_config(values)


class Killed(Exception):
    pass


def test_vae_stage_writes_a_model_folder_with_fitted_scaling(prepared, tmp_path):
    result = train(stage_config(prepared, tmp_path / "vae"), show_progress=False)
    pipeline = load_pipeline_folder(result.exported)
    assert pipeline.vae.config.scaling_factor != 0.18215
    assert [path.name for path in list_checkpoints(tmp_path / "vae")] == ["step-000002", "step-000004"]
    # Only the VAE learned.
    untouched = build_random_pipeline("tiny", seed=0)  # where the run started
    assert not torch.equal(pipeline.vae.encoder.conv_in.weight, untouched.vae.encoder.conv_in.weight)
    for a, b in zip(pipeline.imitative_unet.state_dict().values(), untouched.imitative_unet.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow  # a training stage end to end
def test_vae_stage_killed_and_resumed_equals_uninterrupted(prepared, tmp_path):
    whole = train(stage_config(prepared, tmp_path / "a"), show_progress=False)

    def kill_at_step_three(report) -> None:
        if report.step == 3:
            raise Killed  # after the step-2 checkpoint

    with pytest.raises(Killed):
        train(stage_config(prepared, tmp_path / "b"), show_progress=False, on_step=kill_at_step_three)
    resumed = train(stage_config(prepared, tmp_path / "b", resume="latest"), show_progress=False)
    assert resumed.losses == {3: whole.losses[3], 4: whole.losses[4]}
    assert resumed.pipeline.vae.config.scaling_factor == whole.pipeline.vae.config.scaling_factor
    for key, tensor in whole.pipeline.vae.state_dict().items():
        torch.testing.assert_close(resumed.pipeline.vae.state_dict()[key], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a training stage end to end
def test_image_encoder_stage_trains_the_encoder_only(prepared, tmp_path):
    vae_dir = train(stage_config(prepared, tmp_path / "vae"), show_progress=False).exported
    before = load_pipeline_folder(vae_dir)
    after = load_pipeline_folder(train(stage_config(prepared, tmp_path / "encoder", task="contrastive",
                                                    model={"init": "folder", "path": str(vae_dir)}),
                                       show_progress=False).exported)
    changed = [not torch.equal(a, b) for a, b in zip(before.image_encoder.state_dict().values(),
                                                        after.image_encoder.state_dict().values())]
    assert any(changed)
    for component in ("vae", "imitative_unet", "image_projection"):
        for a, b in zip(getattr(before, component).state_dict().values(), getattr(after, component).state_dict().values()):
            assert torch.equal(a, b)


@pytest.mark.parametrize("overrides, message", [
    ({"trainable": ["vae", "imitative_unet"]}, "trains the vae alone"),
    ({"validation": {"every": 10}}, "validation renders edits"),
    ({"objective": {"task": "edit"}, "trainable": ["imitative_unet", "vae"]}, "keeps them frozen"),
])
def test_stage_configs_that_cannot_work_are_refused(tmp_path, overrides, message):
    with pytest.raises(MimicBrushError, match=message):
        stage_config(tmp_path, tmp_path / "run", **overrides)


def test_demo_stage_configs_load():
    for name, task in (("demo_vae", "autoencoder"), ("demo_image_encoder", "contrastive")):
        config = load_train_config(Path(__file__).parents[2] / "configs" / f"{name}.yaml")
        assert config.data.resolution == 128 and config.objective.task == task


@pytest.mark.slow  # a training stage end to end
def test_a_vae_stage_checkpoint_exports_with_the_scaling_the_run_fitted(prepared, tmp_path):
    from mimicbrush_cli.training.export import export_checkpoint

    config = stage_config(prepared, tmp_path / "vae")
    result = train(config, show_progress=False)
    exported = export_checkpoint(config, list_checkpoints(tmp_path / "vae")[-1], tmp_path / "from_checkpoint")
    fitted = load_pipeline_folder(result.exported).vae.config.scaling_factor
    assert fitted != 0.18215
    assert load_pipeline_folder(exported).vae.config.scaling_factor == pytest.approx(fitted, rel=1e-6)
