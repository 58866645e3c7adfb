"""`mimicbrush serve`: edit in a browser (paint the mask, pick the reference, watch it work)."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer
from rich.console import Console

from ..errors import MimicBrushError
from ..web.session import ServeConfig
from .app import app, quiet_libraries
from .options import Device, DeviceOption, DType, DTypeOption, Model, Weights, dtype_name

console = Console(stderr=True)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on; the default is this machine only. "
                                      "Another address exposes the page, without a login, to that network.")
                    ] = ServeConfig.host,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = ServeConfig.port,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.1, help="Largest file the page accepts.")
                             ] = ServeConfig.max_upload_mb,
    max_megapixels: Annotated[float, typer.Option("--max-megapixels", min=0.01, help="Largest decoded source or "
                                                  "reference image, in millions of pixels.")
                              ] = ServeConfig.max_pixels / 1e6,
    weights: Weights = None,
    model: Model = None,
    device: DeviceOption = Device.auto,
    dtype: DTypeOption = DType.auto,
) -> None:
    """Serve a local page that edits with one loaded model: paint the mask, pick a reference, download the result."""
    if importlib.util.find_spec("gradio") is None:
        raise MimicBrushError("serve needs gradio: pip install 'mimicbrush-cli[serve]'")
    quiet_libraries()
    from ..loading import load_pipeline
    from ..web.page import launch
    from ..web.session import EditSession

    model_options = ((["--weights", str(weights)] if weights is not None else [])
                     + (["--model", model] if model is not None else [])
                     + (["--device", device.value] if device is not Device.auto else [])
                     + (["--dtype", dtype.value] if dtype is not DType.auto else []))
    config = ServeConfig(host=host, port=port, max_upload_mb=max_upload_mb, max_pixels=int(max_megapixels * 1e6),
                         model_options=tuple(model_options))
    with console.status("loading model"):
        pipeline = load_pipeline(weights=weights, model=model, device=device.value,
                                 dtype=dtype_name(dtype))
    console.print(f"serving on [bold]http://{host}:{port}[/] (Ctrl-C stops)")
    launch(EditSession(pipeline, config), config)
