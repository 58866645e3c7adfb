"""The gradio page of `mimicbrush serve`: paint a mask on the source, pick a reference, edit, download.

Only gradio's public API; the work is done by `session.EditSession`. Importing this module imports
gradio, so only `serve` does.
"""

from __future__ import annotations

import time

import gradio as gr
import numpy as np

from ..errors import MimicBrushError
from ..imaging import load_image, load_mask, rgb_on_white
from ..settings import SCHEDULERS, EditSettings, edit_settings
from .session import BOX_COLOUR, EditSession, ServeConfig, box_from_corners, check_upload, find_examples, outline

# See-through, so the source shows under the mask; any painted pixel (alpha > 0) is part of the mask.
PAINT_COLOUR = ("rgb({}, {}, {})".format(*BOX_COLOUR), 0.6)
NO_DEPTH_REASON = "unavailable: this model has no depth model (use the released weights)"
NO_PRIOR_REASON = "unavailable: this model's reference attention has no positional prior"


def _error_line(error: MimicBrushError) -> str:
    return f"**error:** {error}"


def page_settings(steps, scheduler, guidance, seed, num_samples, crop, keep_shape, reference_cache,
                  reference_locality, mean_of=1, reference_timestep=None) -> EditSettings:
    """`EditSettings` from the page's controls; a reference locality of 0 (or none) is the trained width, a
    reference timestep of 0 (or none) the first step's."""
    return edit_settings(steps=int(steps), scheduler=str(scheduler), guidance=float(guidance), seed=int(seed),
                         num_samples=int(num_samples), crop=bool(crop), keep_shape=bool(keep_shape),
                         reference_cache=bool(reference_cache),
                         reference_locality=float(reference_locality) if reference_locality else None,
                         mean_of=int(mean_of),
                         reference_timestep=int(reference_timestep) if reference_timestep else None)


def build_page(session: EditSession) -> gr.Blocks:
    """The page, wired to `session` (its one model); `launch` serves it."""
    examples = find_examples()
    defaults = EditSettings()
    with gr.Blocks(title="MimicBrush", analytics_enabled=False) as page:
        gr.Markdown("## MimicBrush: paint the region to change, give a reference to imitate")
        with gr.Row():
            with gr.Column():
                source = gr.ImageEditor(
                    label="Source: paint over the region to edit (brush size in the brush menu; eraser to undo)",
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
                if examples:
                    with gr.Row():
                        example = gr.Dropdown(list(examples), value=list(examples)[0], label="Bundled example",
                                              elem_id="example")
                        load_example = gr.Button("Load example", elem_id="load-example")
        with gr.Accordion("Settings", open=True):
            with gr.Row():
                steps = gr.Slider(1, 200, value=defaults.steps, step=1, label="Steps", elem_id="steps")
                scheduler = gr.Dropdown(list(SCHEDULERS), value=defaults.scheduler, label="Solver (ddim: released)",
                                        elem_id="scheduler")
                guidance = gr.Slider(0, 20, value=defaults.guidance, step=0.5, label="Guidance")
                seed = gr.Number(value=defaults.seed, precision=0, label="Seed")
                num_samples = gr.Slider(1, 8, value=defaults.num_samples, step=1, label="Samples")
                mean_of = gr.Slider(1, 8, value=defaults.mean_of, step=1, elem_id="mean-of",
                                    label="Each sample the mean of (bundled model: 4)")
            with gr.Row():
                crop = gr.Checkbox(value=defaults.crop, label="Crop around the mask (sharp small edits on large "
                                   "photos; off: the released behaviour)")
                keep_shape = gr.Checkbox(value=False, label="Keep shape (depth-conditioned texture transfer)",
                                         interactive=session.has_depth_model,
                                         info=None if session.has_depth_model else NO_DEPTH_REASON,
                                         elem_id="keep-shape")
                reference_cache = gr.Checkbox(value=defaults.reference_cache,
                                              label="Reference cache (faster, approximate)")
                locality = gr.Number(value=0, minimum=0, maximum=1, step=0.01, elem_id="reference-locality",
                                     label="Reference locality (width of the positional prior in image sides; 0: as "
                                     "trained; the bundled model: 0.07, README)",
                                     interactive=session.has_positional_prior,
                                     info=None if session.has_positional_prior else NO_PRIOR_REASON)
                reference_timestep = gr.Number(value=0, minimum=0, precision=0, elem_id="reference-timestep",
                                               label="Reference timestep (with the reference cache; 0: the first "
                                               "step's; the bundled model: 999, README)")
        run = gr.Button("Edit", variant="primary", elem_id="run")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            before_after = gr.ImageSlider(label="Before / after", type="numpy", format="png", elem_id="before-after")
            gallery = gr.Gallery(label="Samples", format="png", columns=2, elem_id="gallery")
        with gr.Row():
            download_result = gr.DownloadButton("Download result (PNG)", interactive=False, elem_id="download-result")
            download_mask = gr.DownloadButton("Download mask (PNG)", interactive=False, elem_id="download-mask")
        command = gr.Code(label="The same edit from the command line", language="shell", interactive=False,
                          elem_id="command")

        def edit(editor, reference_image, mask_picture, box, invert_mask, steps_value, scheduler_value, guidance_value,
                 seed_value, samples_value, crop_value, keep_shape_value, cache_value, locality_value, mean_of_value,
                 timestep_value, progress=gr.Progress()):
            started = time.perf_counter()
            editor = editor or {}
            try:
                inputs = session.read_inputs(editor.get("background"), editor.get("layers") or [], reference_image,
                                             box or "", bool(invert_mask), mask_picture)
                settings = page_settings(steps_value, scheduler_value, guidance_value, seed_value, samples_value,
                                         crop_value, keep_shape_value, cache_value, locality_value, mean_of_value,
                                         timestep_value)
                progress(0, desc="encoding")
                result = session.edit(*inputs, settings, lambda step, total: progress(
                    (step, total), desc=f"step {step} of {total}"))
            except MimicBrushError as error:
                return (None, None, gr.DownloadButton(value=None, interactive=False),
                        gr.DownloadButton(value=None, interactive=False), "", _error_line(error))
            seconds = time.perf_counter() - started
            return ((result.source, result.samples[0]), result.samples,
                    gr.DownloadButton(value=str(result.sample_paths[0]), interactive=True),
                    gr.DownloadButton(value=str(result.mask_path), interactive=True), result.command,
                    f"done: {len(result.samples)} sample(s) in {seconds:.1f} s")

        # One model per server: edits queue and run one at a time. The status says so at once, so that the
        # last edit's "done" line does not stand beside the results of the next one while it runs.
        run.click(lambda: "editing…", outputs=status, queue=False).then(
            edit, inputs=[source, reference, mask_image, mask_box, invert, steps, scheduler, guidance, seed,
                          num_samples, crop, keep_shape, reference_cache, locality, mean_of, reference_timestep],
            outputs=[before_after, gallery, download_result, download_mask, command, status],
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

        reference.upload(uploaded("reference image"), inputs=reference, outputs=[reference, status], preprocess=False)
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
