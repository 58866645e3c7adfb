"""Stage 0 of a from-scratch model (VAE, image encoder) on videos made from real photos."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from safetensors.torch import load_file

from mimicbrush_cli.config import load_config
from mimicbrush_cli.data import PrepareConfig, prepare
from mimicbrush_cli.data.camera_motion import camera_motion_frames, write_camera_motion_videos
from mimicbrush_cli.data.dataset import TrainingDataConfig
from mimicbrush_cli.loading import load_pipeline_folder
from mimicbrush_cli.training.stages import StageConfig, run_stage


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    for name in ("chelsea", "coffee", "astronaut"):
        Image.fromarray(getattr(data, name)()).save(root / f"{name}.png")
    videos = write_camera_motion_videos(sorted(root.glob("*.png")), root / "videos", num_frames=24, size=(96, 72))
    assert len(videos) == 3
    config = PrepareConfig(sample_fps=6.0, min_gap_s=0.5, max_gap_s=4.0, ssim_min=0.2, ssim_max=0.95,
                           frame_max_side=96, inputs_per_shard=4)
    summary = prepare(root / "prepared", config, videos=root / "videos")
    assert summary.video_pairs > 0
    return root / "prepared"


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


def stage_config(prepared, tmp_path, **overrides):
    values = dict(size="tiny", steps=4, batch_size=4, checkpoint_every=2, output_dir=tmp_path / "vae",
                  data=TrainingDataConfig(shard_dirs=(prepared,), resolution=64))
    values.update(overrides)
    return StageConfig(**values)


def test_vae_stage_writes_a_model_folder_with_fitted_scaling(prepared, tmp_path):
    model_dir = run_stage(stage_config(prepared, tmp_path, crop_size=32))
    pipeline = load_pipeline_folder(model_dir)
    assert pipeline.vae.config.scaling_factor != 0.18215
    assert not (tmp_path / "vae" / "checkpoint").exists()


def test_vae_stage_killed_and_resumed_equals_uninterrupted(prepared, tmp_path, monkeypatch):
    from mimicbrush_cli.training import stages

    whole = load_pipeline_folder(run_stage(stage_config(prepared, tmp_path / "a"))).vae.state_dict()
    component, loss_of_step = stages.STAGES["vae"]

    def killed_at_step_three(pipeline, dataset, step, config):
        if step == 3:
            raise KeyboardInterrupt  # after the step-2 checkpoint
        return loss_of_step(pipeline, dataset, step, config)

    monkeypatch.setitem(stages.STAGES, "vae", (component, killed_at_step_three))
    with pytest.raises(KeyboardInterrupt):
        run_stage(stage_config(prepared, tmp_path / "b"))
    assert load_file(tmp_path / "b" / "vae" / "checkpoint" / "weights.safetensors")
    monkeypatch.setitem(stages.STAGES, "vae", (component, loss_of_step))
    resumed = load_pipeline_folder(run_stage(stage_config(prepared, tmp_path / "b"))).vae.state_dict()
    for key, tensor in whole.items():
        torch.testing.assert_close(resumed[key], tensor, rtol=1e-5, atol=1e-6)


def test_image_encoder_stage_trains_the_encoder_only(prepared, tmp_path):
    vae_dir = run_stage(stage_config(prepared, tmp_path))
    before = load_pipeline_folder(vae_dir)
    after = load_pipeline_folder(run_stage(stage_config(prepared, tmp_path, stage="image_encoder", init_folder=vae_dir,
                                                        output_dir=tmp_path / "encoder")))
    changed = [not torch.equal(a, b) for a, b in zip(before.image_encoder.state_dict().values(),
                                                        after.image_encoder.state_dict().values())]
    assert any(changed)
    for a, b in zip(before.imitative_unet.state_dict().values(), after.imitative_unet.state_dict().values()):
        assert torch.equal(a, b)


def test_demo_stage_configs_load():
    for name in ("demo_vae", "demo_image_encoder"):
        config = load_config(StageConfig, Path(__file__).parents[2] / "configs" / f"{name}.yaml")
        assert config.data.resolution == 128
