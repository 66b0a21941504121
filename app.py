"""DSA Video demo (Gradio).  UI only: every number and all model logic live in dsa_core.

A first cut: prompt, schedule, seconds and seed in; the newest frame of each chunk and the
per-chunk statistics stream out as chunks are decoded, then the MP4.  The full demo
(charts, compare tab, prompt changes mid-stream) is issue 5.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import gradio as gr

from dsa_core.media import Mp4Writer
from dsa_core.pipeline import StreamingPipeline
from dsa_core.schedules import SCHEDULES
from dsa_core.weights import default_weights_dir

OUTPUT_DIR = Path(tempfile.gettempdir()) / "dsa_video_outputs"


def load_pipeline() -> tuple[StreamingPipeline, str]:
    """The embedded tiny model; random weights (said plainly) until trained ones are shipped."""
    if (default_weights_dir("tiny") / "MANIFEST").is_file():
        return StreamingPipeline.from_preset("tiny"), ""
    notice = (
        "⚠️ No trained weights in `weights/tiny` yet: the model runs with **random weights**, "
        "so videos are noise-like patterns that do not follow the prompt."
    )
    return StreamingPipeline.from_preset("tiny", random_init=True), notice


PIPE, NOTICE = load_pipeline()


def run(prompt: str, schedule: str, seconds: float, seed: float):
    try:
        gen = PIPE.generate(prompt, schedule, seconds=float(seconds), seed=int(seed))
    except ValueError as err:
        raise gr.Error(str(err)) from None
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkstemp(suffix=".mp4", dir=OUTPUT_DIR)[1])
    writer = Mp4Writer(out, PIPE.preset.sampling.fps)
    rows = []
    try:
        for event in gen:
            writer.write(event.frames)
            s = event.stats()
            rows.append([s["index"], s["steps"], s["confidence"][-1], s["nfe"], s["transformer_ms"], s["decode_ms"]])
            yield event.frames[-1], rows, None
    finally:
        writer.close()
    yield event.frames[-1], rows, str(out)


def build() -> gr.Blocks:
    with gr.Blocks(title="DSA Video") as demo:
        gr.Markdown("# DSA Video — streaming video diffusion with dynamic step allocation")
        if NOTICE:
            gr.Markdown(NOTICE)
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", value="a red ball bounces on a striped background")
                schedule = gr.Dropdown(list(SCHEDULES), value="adaptive", label="Schedule")
                seconds = gr.Slider(1, 10, value=5, step=1, label="Seconds")
                seed = gr.Number(value=0, precision=0, label="Seed")
                button = gr.Button("Generate", variant="primary")
            with gr.Column():
                frame = gr.Image(label="Latest frame", height=256)
                video = gr.Video(label="Video")
        stats = gr.Dataframe(headers=["chunk", "steps", "confidence", "NFE so far", "transformer ms", "decode ms"])
        button.click(run, [prompt, schedule, seconds, seed], [frame, stats, video], api_name="generate")
    return demo


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default=os.environ.get("DSA_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DSA_PORT", "7860")))
    args = parser.parse_args()
    build().queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port)
