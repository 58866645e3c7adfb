import re
from pathlib import Path

import pytest
import torch
from skimage import data

from mimicbrush_cli.benchmark.lpips import HEADS_FILE, TRUNK_FILE, LPIPS, load_lpips
from mimicbrush_cli.errors import MimicBrushError


@pytest.fixture(scope="module")
def lpips(metric_models_dir):
    return load_lpips(metric_models_dir / "lpips")


def test_lpips_of_identical_images_is_zero(lpips):
    photo = data.coffee()[:96, :128]
    assert lpips.distance(photo, photo.copy()) == pytest.approx(0.0, abs=1e-7)


def test_lpips_of_different_images_is_positive(lpips):
    assert lpips.distance(data.coffee()[:96, :128], data.chelsea()[:96, :128]) > 0


def test_lpips_upsamples_crops_too_small_for_alexnet(lpips):
    assert lpips.distance(data.coffee()[:10, :20], data.chelsea()[:10, :20]) > 0


def test_lpips_parameter_names_are_torchvision_and_lpips_ones():
    names = set(LPIPS().state_dict())
    assert {"features.0.weight", "features.3.weight", "features.6.weight", "features.8.weight",
            "features.10.bias"} <= names
    assert {f"lin{index}.model.1.weight" for index in range(5)} <= names


def test_lpips_loads_the_published_file_names(metric_models_dir):
    folder = metric_models_dir / "lpips"
    assert (folder / TRUNK_FILE).is_file() and (folder / HEADS_FILE).is_file()
    loaded = load_lpips(folder)
    heads = torch.load(folder / HEADS_FILE, weights_only=True)
    torch.testing.assert_close(loaded.lin2.model[1].weight, heads["lin2.model.1.weight"])


def test_lpips_offline_without_weights_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr("mimicbrush_cli.benchmark.lpips._installed_lpips_heads", lambda: None)
    with pytest.raises(MimicBrushError, match="--metrics-models") as error:
        load_lpips(None, offline=True)
    assert "\n" not in str(error.value)


def test_lpips_folder_missing_a_file_is_user_error(tmp_path):
    with pytest.raises(MimicBrushError, match=TRUNK_FILE):
        load_lpips(tmp_path)


def test_lpips_offline_says_where_the_alexnet_weights_come_from(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MimicBrushError) as error:
        load_lpips(None, offline=True)
    assert "download.pytorch.org" in str(error.value) and str(tmp_path / "hub" / "checkpoints") in str(error.value)
    assert "Hub is offline" not in str(error.value)


SETUP_SCRIPT = Path(__file__).parents[2] / "scripts" / "setup.sh"


def install_lpips() -> str:
    """How to install the original LPIPS code, with the version scripts/setup.sh pins (the one place it is named):
    without its dependencies, since it asks for torchvision, which does not import beside the CPU torch (and which
    the test does not use). An extra in pyproject.toml cannot say --no-deps."""
    pin = re.search(r"\blpips==[0-9.]+", SETUP_SCRIPT.read_text(encoding="utf-8"))
    assert pin is not None, f"{SETUP_SCRIPT} no longer installs lpips=="
    return f"run scripts/setup.sh, or: pip install --no-deps {pin.group()}"


def test_lpips_equals_the_original_implementation(monkeypatch):
    """The LPIPS authors' own code (the `lpips` package, v0.1, AlexNet) and ours give the same distance on
    real photos with the same weights: the package's published heads, and one random AlexNet trunk.

    The package builds its trunk with torchvision, which does not import beside this CPU torch and whose
    ImageNet weights are a download: it is handed our AlexNet `features` (torchvision's layer layout)
    through a stand-in `torchvision.models`. Everything LPIPS adds to the trunk is the original code."""
    import sys
    import types

    import numpy as np
    from skimage import filters

    torch.manual_seed(0)
    ours = LPIPS()  # random trunk
    stand_in = types.ModuleType("torchvision")
    stand_in.models = types.SimpleNamespace(alexnet=lambda pretrained: types.SimpleNamespace(features=ours.features))
    monkeypatch.setitem(sys.modules, "torchvision", stand_in)
    for name in [name for name in sys.modules if name == "lpips" or name.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    try:
        import lpips as original_package
    except ModuleNotFoundError as error:
        if error.name != "lpips":
            raise
        pytest.fail(f"this test compares with the original LPIPS code, which is not installed: {install_lpips()}",
                    pytrace=False)

    original = original_package.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False).eval()
    heads = {key: value for key, value in original.state_dict().items() if key.startswith("lin") and "lins." not in key}
    assert len(heads) == 5
    ours.load_state_dict(heads, strict=False)

    coffee, chelsea = data.coffee()[:192, :256], data.chelsea()[:192, :256]
    blurred = (filters.gaussian(coffee, sigma=2, channel_axis=-1) * 255).round().astype(np.uint8)
    pairs = [(coffee, chelsea), (coffee, blurred), (data.astronaut()[:160, :160], data.astronaut()[8:168, 8:168])]
    to_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # noqa: E731
    with torch.no_grad():
        expected = [float(original(to_tensor(a), to_tensor(b))) for a, b in pairs]
    measured = [ours.distance(a, b) for a, b in pairs]
    assert min(expected) > 0
    np.testing.assert_allclose(measured, expected, rtol=1e-5)
