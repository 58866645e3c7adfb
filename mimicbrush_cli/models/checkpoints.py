"""The released checkpoint layout (REFERENCE.md §4) → pipeline components, and a pipeline → our own folder.

Released layout, under one root (a local `--weights` folder, or the two Hub repos side by side):

    cleansd/stable-diffusion-inpainting/unet/config.json      imitative U-Net config (9 → 13 channels)
    cleansd/stable-diffusion-v1-5/unet/config.json            reference U-Net config
    MimicBrush/mimicbrush/mimicbrush.bin                      torch pickle: unet, referencenet, image_proj,
                                                              depth_guider, image_encoder state dicts
    MimicBrush/image_encoder/config.json                      CLIPVisionModelWithProjection config
    MimicBrush/sd-vae-ft-mse/                                 diffusers AutoencoderKL folder
    MimicBrush/depth_model/depth_anything_vitb14.pth          original Depth Anything layout

Every state dict is checked against the model it loads into: an unknown, missing or wrongly-shaped
key is a one-line `MimicBrushError` (the only keys allowed to be missing are the reference U-Net's
unused tail). Pickles load with `weights_only=True`, so loading cannot execute code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from ..errors import MimicBrushError, first_line
from ..outputs import check_model_output_folder, commit_folder, current_umask
from .build import build_clip_image_processor, build_scheduler
from .depth import DepthGuider
from .depth_checkpoint import load_depth_anything_from_original
from .image_encoder import ImageTokenProjection
from .pickles import load_weights_pickle
from .reference_attention import unused_reference_unet_parameters
from .state_dicts import load_state_dict_checked
from .unets import IMITATIVE_IN_CHANNELS

HUB_REPOS = {"cleansd": "xichenhku/cleansd", "MimicBrush": "xichenhku/MimicBrush"}
# Only these files of the Hub repos are needed; the rest (fp16 copies, full SD weights) is skipped.
HUB_PATTERNS = {
    "cleansd": ["stable-diffusion-inpainting/unet/config.json", "stable-diffusion-v1-5/unet/config.json"],
    "MimicBrush": ["mimicbrush/mimicbrush.bin", "image_encoder/*", "sd-vae-ft-mse/*", "depth_model/depth_anything_vitb14.pth"],
}
POSITION_IDS_BUFFER = "vision_model.embeddings.position_ids"


@dataclass(frozen=True)
class ReleasedLayout:
    cleansd: Path
    mimicbrush: Path

    @property
    def imitative_unet_config(self) -> Path:
        return self.cleansd / "stable-diffusion-inpainting" / "unet" / "config.json"

    @property
    def reference_unet_config(self) -> Path:
        return self.cleansd / "stable-diffusion-v1-5" / "unet" / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.mimicbrush / "mimicbrush" / "mimicbrush.bin"

    @property
    def image_encoder_config(self) -> Path:
        return self.mimicbrush / "image_encoder" / "config.json"

    @property
    def vae(self) -> Path:
        return self.mimicbrush / "sd-vae-ft-mse"

    @property
    def depth_model(self) -> Path:
        return self.mimicbrush / "depth_model" / "depth_anything_vitb14.pth"

    def required_files(self) -> list[Path]:
        return [self.imitative_unet_config, self.reference_unet_config, self.checkpoint, self.image_encoder_config,
                self.vae / "config.json", self.depth_model]

    def check_complete(self) -> None:
        missing = [path for path in self.required_files() if not path.is_file()]
        if missing:
            raise MimicBrushError(f"weights folder incomplete: missing {missing[0]}"
                                  + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


def is_released_layout(root: Path) -> bool:
    return (root / "cleansd").is_dir() or (root / "MimicBrush").is_dir()


def released_layout(root: Path) -> ReleasedLayout:
    if not Path(root).is_dir():
        raise MimicBrushError(f"weights folder not found: {root}")
    layout = ReleasedLayout(cleansd=root / "cleansd", mimicbrush=root / "MimicBrush")
    layout.check_complete()
    return layout


def download_released_layout() -> ReleasedLayout:
    """Fetch (or reuse from the huggingface_hub cache) the released weights: ~10 GB on first use."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    folders = {}
    for name, repo_id in HUB_REPOS.items():
        try:
            folders[name] = Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS[name]))
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as error:
            raise MimicBrushError(
                f"cannot download {repo_id} from the Hugging Face Hub ({type(error).__name__}); download the "
                "released weights elsewhere and pass their folder with --weights DIR") from error
    layout = ReleasedLayout(cleansd=folders["cleansd"], mimicbrush=folders["MimicBrush"])
    layout.check_complete()
    return layout


def load_released_checkpoint(path: Path) -> dict:
    """The released pickle, loaded safely; memory-mapped where the file format allows it."""
    checkpoint = load_weights_pickle(path, "released checkpoint", mmap=True)
    expected = {"unet", "referencenet", "image_proj", "depth_guider", "image_encoder"}
    if not isinstance(checkpoint, dict) or not expected <= set(checkpoint):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise MimicBrushError(f"{path} is not a MimicBrush checkpoint: expected keys {sorted(expected)}, found {found}")
    return checkpoint


def read_weights_file(folder: Path, stem: str) -> dict[str, torch.Tensor]:
    """`<stem>.safetensors` if present, else `<stem>.bin` loaded with `weights_only=True`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    safetensors_path, pickle_path = folder / f"{stem}.safetensors", folder / f"{stem}.bin"
    if safetensors_path.is_file():
        try:
            return load_file(safetensors_path)
        except (SafetensorError, OSError) as error:
            raise MimicBrushError(f"cannot read weights {safetensors_path}: {first_line(error)}") from error
    if pickle_path.is_file():
        return load_weights_pickle(pickle_path, "weights")
    raise MimicBrushError(f"weights folder incomplete: no {stem}.safetensors or {stem}.bin in {folder}")


def _read_unet_config(path: Path, in_channels: int | None = None) -> dict:
    config = dict(UNet2DConditionModel.load_config(path.parent))
    if in_channels is not None:
        config["in_channels"] = in_channels
    return config


def _depth_guider_widths(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """The guider's block widths, read off its weights: conv_in's output, then each stride-2 block's."""
    if "conv_in.weight" not in state_dict:
        raise MimicBrushError("depth guider (depth_guider): missing weight conv_in.weight")
    widths = [int(state_dict["conv_in.weight"].shape[0])]
    index = 1
    while f"blocks.{index}.weight" in state_dict:
        widths.append(int(state_dict[f"blocks.{index}.weight"].shape[0]))
        index += 2
    return tuple(widths)


def load_released_components(layout: ReleasedLayout) -> dict:
    """The pipeline's components from the released layout (the keyword arguments of `MimicBrushPipeline`).
    Sizes come from the files themselves (configs and weight shapes), so a small model written in the
    same layout loads through the same code."""
    layout.check_complete()
    checkpoint = load_released_checkpoint(layout.checkpoint)

    imitative_unet = UNet2DConditionModel.from_config(_read_unet_config(layout.imitative_unet_config, IMITATIVE_IN_CHANNELS))
    load_state_dict_checked(imitative_unet, checkpoint["unet"], "imitative U-Net (unet)")

    reference_unet = UNet2DConditionModel.from_config(_read_unet_config(layout.reference_unet_config))
    load_state_dict_checked(reference_unet, checkpoint["referencenet"], "reference U-Net (referencenet)",
                            allowed_missing=frozenset(unused_reference_unet_parameters(reference_unet)))

    clip_config = CLIPVisionConfig.from_pretrained(layout.image_encoder_config.parent)
    image_encoder = CLIPVisionModelWithProjection(clip_config)
    encoder_state = {key: value for key, value in checkpoint["image_encoder"].items() if key != POSITION_IDS_BUFFER}
    load_state_dict_checked(image_encoder, encoder_state, "image encoder (image_encoder)")

    projector = checkpoint["image_proj"]["projector.weight"] if "projector.weight" in checkpoint["image_proj"] else None
    if projector is None:
        raise MimicBrushError("image_proj: missing weight projector.weight")
    image_projection = ImageTokenProjection(image_hidden_size=projector.shape[1], cross_attention_dim=projector.shape[0])
    load_state_dict_checked(image_projection, checkpoint["image_proj"], "image projection (image_proj)")

    depth_guider = DepthGuider(block_channels=_depth_guider_widths(checkpoint["depth_guider"]))
    load_state_dict_checked(depth_guider, checkpoint["depth_guider"], "depth guider (depth_guider)")

    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(layout.vae))
    load_state_dict_checked(vae, read_weights_file(layout.vae, "diffusion_pytorch_model"), "VAE (sd-vae-ft-mse)")
    depth_estimator = load_depth_anything_from_original(layout.depth_model)
    del checkpoint
    return dict(
        imitative_unet=imitative_unet, reference_unet=reference_unet, vae=vae, image_encoder=image_encoder,
        image_projection=image_projection, depth_guider=depth_guider, depth_estimator=depth_estimator,
        scheduler=build_scheduler(), feature_extractor=build_clip_image_processor(clip_config.image_size),
        depth_input_size=depth_estimator.config.backbone_config.image_size)


def save_pipeline_atomically(pipeline, destination: Path, replace_model: bool = False) -> None:
    """`save_pretrained` as safetensors into a temporary sibling folder, then rename into place.

    `replace_model`: an existing model folder (one with `model_index.json`) there is replaced, as a
    resumed training run re-exports; any other non-empty folder is refused."""
    destination = Path(destination)
    check_model_output_folder(destination, replace_model)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        pipeline.save_pretrained(staging, safe_serialization=True)
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp creates the folder private (0700)
        commit_folder(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_released_layout(pipeline, root: Path) -> Path:
    """Write `pipeline`'s weights the way the released ones are laid out (this module's docstring), pickles
    included: for tests and checks of the released loading path with random weights of any size."""
    import json

    from .depth_checkpoint import to_original_depth_anything_state_dict
    from .reference_attention import unused_reference_unet_parameters

    root = Path(root)
    cleansd, mimicbrush = root / "cleansd", root / "MimicBrush"
    inpainting_config = dict(pipeline.imitative_unet.config)
    inpainting_config["in_channels"] = 9  # the released folder holds the SD-inpainting config
    for folder, config in (("stable-diffusion-inpainting", inpainting_config),
                           ("stable-diffusion-v1-5", dict(pipeline.reference_unet.config))):
        (cleansd / folder / "unet").mkdir(parents=True)
        (cleansd / folder / "unet" / "config.json").write_text(json.dumps(config, default=list))
    unused = set(unused_reference_unet_parameters(pipeline.reference_unet))
    encoder_config = pipeline.image_encoder.config
    encoder_state = dict(pipeline.image_encoder.state_dict())
    encoder_state[POSITION_IDS_BUFFER] = torch.arange((encoder_config.image_size // encoder_config.patch_size) ** 2 + 1)[None]
    checkpoint = {
        "unet": pipeline.imitative_unet.state_dict(),
        "referencenet": {k: v for k, v in pipeline.reference_unet.state_dict().items() if k not in unused},
        "image_proj": pipeline.image_projection.state_dict(),
        "depth_guider": pipeline.depth_guider.state_dict(),
        "image_encoder": encoder_state,
    }
    (mimicbrush / "mimicbrush").mkdir(parents=True)
    torch.save(checkpoint, mimicbrush / "mimicbrush" / "mimicbrush.bin")
    encoder_config.save_pretrained(mimicbrush / "image_encoder")
    pipeline.vae.save_pretrained(mimicbrush / "sd-vae-ft-mse", safe_serialization=False)
    (mimicbrush / "depth_model").mkdir(parents=True)
    original = to_original_depth_anything_state_dict(pipeline.depth_estimator.state_dict(), pipeline.depth_estimator.config)
    torch.save(original, mimicbrush / "depth_model" / "depth_anything_vitb14.pth")
    return root
