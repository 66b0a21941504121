"""DSA Video demo (Gradio).  UI only: every number and all model logic live in dsa_core.

Generate tab: the video streams in chunk by chunk (each chunk an H.264 segment the player
appends), with the confidence after every step and the steps of every chunk charted as
they arrive; at the end, the MP4, the per-chunk table and the JSON to download.
"""

import spaces  # noqa: F401, I001  # before torch: on a ZeroGPU Space it patches CUDA at import

import argparse
import json
import os
import random
import tempfile
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd

from dsa_core.media import Mp4Writer, write_mp4
from dsa_core.pipeline import StreamingPipeline
from dsa_core.schedules import SCHEDULES
from dsa_core.weights import default_weights_dir

OUTPUT_DIR = Path(os.environ.get("DSA_OUTPUT_DIR", Path(tempfile.gettempdir()) / "dsa_video_outputs"))
EXAMPLES = [
    "A small red disc moves left on a plain white background.",
    "A large blue square bounces up and down on green and yellow vertical stripes.",
    "A tiny yellow star spins on a black background, then the scene cuts to a purple triangle on a pink background.",
]
# Which widget feeds which constructor argument of each schedule.
PARAMS = {
    "fixed": {"steps": "steps"},
    "ffe": {"steps": "steps"},
    "diagonal": {"counts": "counts"},
    "adaptive": {"steps": "max_steps", "margin": "margin", "tol": "tol", "min_steps": "min_steps"},
    "proxy": {"steps": "max_steps", "margin": "margin", "tol": "tol", "min_steps": "min_steps"},
}


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
FPS = PIPE.preset.sampling.fps


def number(value, name: str) -> float:
    if value is None or value == "":
        raise gr.Error(f"{name} is empty: enter a number")
    return value


def generate(prompt, schedule, steps, counts, margin, tol, min_steps, seconds, seed, random_seed):
    widgets = {"steps": steps, "counts": counts, "margin": margin, "tol": tol, "min_steps": min_steps}
    params = {arg: widgets[w] for w, arg in PARAMS.get(schedule, {}).items()}
    for key in ("steps", "max_steps", "min_steps"):
        if key in params:
            params[key] = int(number(params[key], key))
    seed = random.randrange(2**31) if random_seed else int(number(seed, "seed"))
    try:
        gen = PIPE.generate(prompt, schedule, seconds=float(number(seconds, "seconds")), seed=seed, **params)
    except ValueError as err:
        raise gr.Error(str(err)) from None
    folder = OUTPUT_DIR / uuid.uuid4().hex
    video = Mp4Writer(folder / "video.mp4", FPS)
    conf_rows, step_rows, frames = [], [], 0
    try:
        for e in gen:
            segment = folder / f"chunk_{e.index:03d}.ts"
            write_mp4(segment, [e.frames], FPS)
            video.write(e.frames)
            frames += len(e.frames)
            conf_rows += [
                {"step": j + 1, "confidence": c, "chunk": f"chunk {e.index}"} for j, c in enumerate(e.confidence)
            ]
            step_rows.append({"chunk": e.index, "steps": e.steps})
            figures = (
                f"**seed** {seed} · **NFE** {e.nfe} · **{frames / e.elapsed_s:.1f}** generated frames/s · "
                f"first chunk after **{gen.events[0].elapsed_s:.2f} s** · chunk {e.index + 1}/{e.num_chunks}"
            )
            yield str(segment), pd.DataFrame(conf_rows), pd.DataFrame(step_rows), figures, *[gr.skip()] * 3
    finally:
        video.close()
    summary = gen.summary()
    (folder / "video.json").write_text(json.dumps(summary, indent=2))
    table = pd.DataFrame([{k: v for k, v in c.items() if k not in ("timesteps", "head_confidence")}
                          for c in summary["chunks"]])
    yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), str(video.path), table, str(folder / "video.json")


def build() -> gr.Blocks:
    d = PIPE.preset.schedules
    with gr.Blocks(title="DSA Video") as demo:
        gr.Markdown("# DSA Video — streaming video diffusion with dynamic step allocation")
        if NOTICE:
            gr.Markdown(NOTICE)
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0], lines=2)
                gr.Examples(EXAMPLES, inputs=prompt)
                schedule = gr.Radio(list(SCHEDULES), value="adaptive", label="Schedule")
                with gr.Accordion("Schedule parameters", open=False):
                    steps = gr.Number(
                        d.fixed_steps, precision=0, label="steps (fixed; FFE after chunk 0; adaptive max)"
                    )
                    counts = gr.Textbox(",".join(map(str, d.diagonal_counts)), label="diagonal step counts")
                    margin = gr.Number(d.adaptive_margin, label="margin (adaptive/proxy)")
                    tol = gr.Number(d.adaptive_tol, label="tol (adaptive/proxy)")
                    min_steps = gr.Number(d.adaptive_min_steps, precision=0, label="min steps (adaptive/proxy)")
                with gr.Row():
                    seconds = gr.Slider(1, PIPE.preset.sampling.max_seconds, value=5, step=1, label="Seconds")
                    seed = gr.Number(0, precision=0, label="Seed")
                    random_seed = gr.Checkbox(False, label="random seed")
                with gr.Row():
                    go = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
            with gr.Column(scale=3):
                stream = gr.Video(label="Live", streaming=True, autoplay=True, height=320)
                figures = gr.Markdown()
        with gr.Row():
            conf_plot = gr.LinePlot(x="step", y="confidence", color="chunk", y_lim=[0, 1],
                                    title="Confidence after each step")
            steps_plot = gr.BarPlot(x="chunk", y="steps", y_lim=[0, PIPE.preset.sampling.max_steps],
                                    title="Steps per chunk")
        with gr.Row():
            final = gr.Video(label="Video (MP4)")
            report = gr.File(label="Per-chunk statistics (JSON)")
        table = gr.Dataframe(label="Per-chunk statistics")
        event = go.click(
            generate,
            [prompt, schedule, steps, counts, margin, tol, min_steps, seconds, seed, random_seed],
            [stream, conf_plot, steps_plot, figures, final, table, report],
            api_name="generate",
        )
        stop.click(None, cancels=[event])
    return demo


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default=os.environ.get("DSA_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DSA_PORT", "7860")))
    args = parser.parse_args()
    build().queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, allowed_paths=[str(OUTPUT_DIR)]
    )
