"""The gradio page of `mimicbrush serve`: paint a mask on the source, pick a reference (and, as a hint, paint the
part of it to copy from), edit, download.

Only gradio's public API; the work is done by `session.EditSession`. Importing this module imports
gradio, so only `serve` does.
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr
import numpy as np

from ..errors import MimicBrushError
from ..imaging import load_image, load_mask, rgb_on_white
from ..settings import (OPTION_SETTINGS, SETTINGS, EditSettings, flag, format_value, kind_of, parse_value,
                        resolve_settings)
from .session import BOX_COLOUR, EditSession, ServeConfig, box_from_corners, check_upload, find_examples, outline

# See-through, so the source shows under the mask; any painted pixel (alpha > 0) is part of the mask.
PAINT_COLOUR = ("rgb({}, {}, {})".format(*BOX_COLOUR), 0.6)
NO_DEPTH_REASON = "unavailable: this model has no depth model (use the released weights)"
NO_PRIOR_REASON = "unavailable: this model's reference attention has no positional prior"


def _error_line(error: MimicBrushError) -> str:
    return f"**error:** {error}"


def page_settings(values: dict[str, Any], defaults: EditSettings = EditSettings()) -> EditSettings:
    """`EditSettings` from the page's controls (setting name -> the control's value), over the model's `defaults`:
    a control left at the model's default is not a choice, so that unticking the reference cache drops the model's
    reference timestep with it. A bad value is the page's one error line (`MimicBrushError`)."""
    given = {}
    for name, value in values.items():
        kind = kind_of(name)
        if kind is bool or SETTINGS[name].choices:
            parsed = bool(value) if kind is bool else str(value)
        else:
            parsed = parse_value(name, "" if value is None else str(value))
        if parsed != getattr(defaults, name):
            given[name] = parsed
    return resolve_settings(defaults, given)


def _title(name: str) -> str:
    return {"num_samples": "Samples", "mean_of": "Each sample the mean of"}.get(name, name.replace("_", " ").capitalize())


def _control(name: str, value: Any, interactive: bool = True, reason: str | None = None):
    """The page's control of setting `name`, made from its field: a checkbox, a menu, or a text field that takes
    what its command-line option takes (a number, or the word for "none")."""
    setting = SETTINGS[name]
    options = {"label": _title(name), "info": reason or setting.help, "elem_id": flag(name)[2:],
               "interactive": interactive}
    if kind_of(name) is bool:
        return gr.Checkbox(value=value, **options)
    if setting.choices:
        return gr.Dropdown(list(setting.choices), value=value, **options)
    if setting.none_word:
        return gr.Textbox(value=format_value(name, value), max_lines=1, **options)
    return gr.Number(value=value, precision=0 if kind_of(name) is int else None, **options)


def build_page(session: EditSession) -> gr.Blocks:
    """The page, wired to `session` (its one model); `launch` serves it."""
    examples = find_examples()
    defaults = session.edit_defaults  # the model's own: the page starts from them
    with gr.Blocks(title="MimicBrush", analytics_enabled=False) as page:
        gr.Markdown("## MimicBrush: paint the region to change, give a reference to imitate")
        with gr.Row():
            with gr.Column():
                source = gr.ImageEditor(
                    label="Source: paint over the region to edit (brush size in the brush menu)",
                    type="pil", image_mode="RGBA", sources=("upload", "clipboard"), format="png", transforms=(),
                    brush=gr.Brush(colors=[PAINT_COLOUR], default_color=PAINT_COLOUR, color_mode="fixed"),
                    eraser=gr.Eraser(), layers=False, elem_id="source")
                mask_image = gr.Image(label="…or a mask image: white = edit (used instead of the painting)",
                                      type="pil", image_mode=None, sources=("upload", "clipboard"), format="png",
                                      height=160, elem_id="mask-image")
                mask_box = gr.Textbox(label="…or a box X0,Y0,X1,Y1 in pixels (used instead of both): type it, "
                                      "or click two corners on the picture below", placeholder="e.g. 100,80,300,240",
                                      elem_id="mask-box")
                box_picker = gr.Image(label="Click two corners of the box", type="numpy", interactive=False,
                                      format="png", height=200, buttons=["fullscreen"], elem_id="box-picker")
                picker_source, first_corner = gr.State(None), gr.State(None)
                invert = gr.Checkbox(label="Invert mask (edit the rest)", value=False, elem_id="invert")
            with gr.Column():
                reference = gr.Image(label="Reference to imitate", type="pil", image_mode=None, height=360,
                                     sources=("upload", "clipboard"), format="png", elem_id="reference")
                # The reference's own editor, for the hint: its picture is set from the reference above (no
                # upload of its own), so the reference is uploaded and checked in one place.
                reference_painter = gr.ImageEditor(
                    label="Optional hint: paint the part of the reference to copy from", type="pil",
                    image_mode="RGBA", sources=(), format="png", transforms=(),
                    brush=gr.Brush(colors=[PAINT_COLOUR], default_color=PAINT_COLOUR, color_mode="fixed"),
                    eraser=gr.Eraser(), layers=False, elem_id="reference-region")
                reference_box = gr.Textbox(label="…or a box X0,Y0,X1,Y1 in pixels over the reference (used instead "
                                           "of the painting); neither: the whole reference",
                                           placeholder="e.g. 0,0,300,200", elem_id="reference-box")
                if examples:
                    with gr.Row():
                        example = gr.Dropdown(list(examples), value=list(examples)[0], label="Bundled example",
                                              elem_id="example")
                        load_example = gr.Button("Load example", elem_id="load-example")
        unavailable = {"keep_shape": None if session.has_depth_model else NO_DEPTH_REASON,
                       "reference_locality": None if session.has_positional_prior else NO_PRIOR_REASON}
        controls = {}
        for title, advanced in (("Settings", False), ("Advanced", True)):
            with gr.Accordion(title, open=not advanced):
                with gr.Row():
                    for name in OPTION_SETTINGS:
                        if SETTINGS[name].advanced == advanced:
                            reason = unavailable.get(name)
                            controls[name] = _control(name, getattr(defaults, name), reason is None, reason)
        run = gr.Button("Edit", variant="primary", elem_id="run")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            before_after = gr.ImageSlider(label="Before / after", type="numpy", format="png", elem_id="before-after")
            gallery = gr.Gallery(label="Samples", format="png", columns=2, elem_id="gallery")
        with gr.Row():
            download_result = gr.DownloadButton("Download result (PNG)", interactive=False, elem_id="download-result")
            download_mask = gr.DownloadButton("Download mask (PNG)", interactive=False, elem_id="download-mask")
            download_region = gr.DownloadButton("Download reference region (PNG)", interactive=False,
                                                elem_id="download-reference-region")
        command = gr.Code(label="The same edit from the command line", language="shell", interactive=False,
                          elem_id="command")

        def edit(editor, reference_image, mask_picture, box, invert_mask, painter, region_box, *values,
                 progress=gr.Progress()):
            started = time.perf_counter()
            editor = editor or {}
            off = gr.DownloadButton(value=None, interactive=False)
            try:
                inputs = session.read_inputs(editor.get("background"), editor.get("layers") or [], reference_image,
                                             box or "", bool(invert_mask), mask_picture)
                hint = session.reference_region(inputs[1], region_box or "", (painter or {}).get("layers") or [])
                settings = page_settings(dict(zip(controls, values)), defaults)
                progress(0, desc="encoding")
                result = session.edit(*inputs, settings, lambda step, total: progress(
                    (step, total), desc=f"step {step} of {total}"), reference_region=hint)
            except MimicBrushError as error:
                return None, None, off, off, off, "", _error_line(error)
            seconds = time.perf_counter() - started
            region = result.reference_mask_path
            return ((result.source, result.samples[0]), result.samples,
                    gr.DownloadButton(value=str(result.sample_paths[0]), interactive=True),
                    gr.DownloadButton(value=str(result.mask_path), interactive=True),
                    gr.DownloadButton(value=str(region), interactive=True) if region else off, result.command,
                    f"done: {len(result.samples)} sample(s) in {seconds:.1f} s")

        # One model per server: edits queue and run one at a time. The status says so at once, so that the
        # last edit's "done" line does not stand beside the results of the next one while it runs.
        run.click(lambda: "editing…", outputs=status, queue=False).then(
            edit, inputs=[source, reference, mask_image, mask_box, invert, reference_painter, reference_box,
                          *controls.values()],
            outputs=[before_after, gallery, download_result, download_mask, download_region, command, status],
            concurrency_limit=1, concurrency_id="model")

        def uploaded(what):
            def check(payload):
                # Unprocessed, so that a file that is not an image gets our message (gradio has already
                # confined the payload's path to its upload folder).
                if not payload:
                    return gr.skip(), ""
                try:
                    check_upload(payload["path"], payload.get("orig_name"), what, session.config.max_pixels)
                except MimicBrushError as error:
                    return None, _error_line(error)
                return gr.skip(), ""
            return check

        def show_source(editor):
            background = (editor or {}).get("background")
            if background is None:
                return None, None, None
            image = rgb_on_white(background)
            return image, image, None

        def pick_corner(image, corner, event: gr.SelectData):
            if image is None:
                return gr.skip(), None, gr.skip()
            clicked = (int(event.index[0]), int(event.index[1]))
            if corner is None:
                return outline(image, corner=clicked), clicked, gr.skip()
            box = box_from_corners(tuple(corner), clicked)
            return outline(image, box), None, box

        source.upload(show_source, inputs=source, outputs=[box_picker, picker_source, first_corner])
        box_picker.select(pick_corner, inputs=[picker_source, first_corner],
                          outputs=[box_picker, first_corner, mask_box])

        def reference_picture(image):
            # The hint's editor: the reference's picture with nothing painted.
            return None if image is None else {"background": rgb_on_white(image), "layers": [], "composite": None}

        reference.upload(uploaded("reference image"), inputs=reference, outputs=[reference, status], preprocess=False)
        # A new reference clears the painting and the box; clearing the hint's editor clears the painting only
        # (it keeps the reference's picture, which the editor has no upload of its own to bring back).
        reference.change(lambda image: (reference_picture(image), ""), inputs=reference,
                         outputs=[reference_painter, reference_box])
        reference_painter.clear(reference_picture, inputs=reference, outputs=reference_painter)
        mask_image.upload(uploaded("mask image"), inputs=mask_image, outputs=[mask_image, status], preprocess=False)

        if examples:
            def load(name):
                # The example's mask goes in as a mask image: a layer set from here is drawn offset from
                # the image by gradio's editor (6.31), and a later stroke would export it there too.
                source_path, reference_path, mask_path = examples[name]
                background = load_image(source_path, "example source")
                editor_value = {"background": background, "layers": [], "composite": None}
                mask = load_mask(mask_path).astype(np.uint8) * 255
                return (editor_value, load_image(reference_path, "example reference"), mask, "", "", background,
                        background, None)

            load_example.click(load, inputs=example, outputs=[source, reference, mask_image, mask_box, status,
                                                              box_picker, picker_source, first_corner])
    return page


def launch(session: EditSession, config: ServeConfig, block: bool = True) -> gr.Blocks:
    """Serve the page on `config.host:config.port`: no share link, uploads capped at `config.max_upload_mb`."""
    page = build_page(session)
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=config.host, server_port=config.port, share=False, inbrowser=False,
                max_file_size=int(config.max_upload_mb * 1024 * 1024), prevent_thread_lock=not block,
                show_error=False, footer_links=[], quiet=not block)
    return page
