"""DSA Video demo (Gradio).  UI only: every number and all model logic live in dsa_core.

Generate tab: the video streams in chunk by chunk (each chunk an H.264 segment the player
appends), with the confidence after every step and the steps of every chunk charted as
they arrive; a next prompt takes effect from the next chunk to start; an uploaded video may be
continued instead of starting from noise; at the end, the MP4, the per-chunk table and the
JSON to download.  Compare tab: one prompt, seed and initial noise
(and uploaded video, if any) through two or three schedules, streamed side by side.
"""

import spaces  # noqa: I001  # before torch: on a ZeroGPU Space it patches CUDA at import

import argparse
import contextlib
import functools
import json
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import torch

from dsa_core.cpu import fit_threads
from dsa_core.eval import Evaluator, caption_attributes
from dsa_core.evalnet import AttributeNet
from dsa_core.media import Mp4Writer, write_mp4
from dsa_core.pipeline import ChunkEvent, Generation, GivenVideo, StreamingPipeline, read_context
from dsa_core.prefetch import prefetch
from dsa_core.schedules import SCHEDULES
from dsa_core.world import WORLDS, heldout_seed, sample_clip

OUTPUT_DIR = Path(os.environ.get("DSA_OUTPUT_DIR", Path(tempfile.gettempdir()) / "dsa_video_outputs"))


@dataclass
class Limits:
    """What one server allows; each from the command line or the environment (README, "Limits")."""

    max_queue: int = int(os.environ.get("DSA_MAX_QUEUE", "16"))  # waiting requests beyond the running one
    max_request_s: float = float(os.environ.get("DSA_MAX_REQUEST_S", "300"))  # a generation is stopped after this
    output_max_age_s: float = float(os.environ.get("DSA_OUTPUT_MAX_AGE_S", "3600"))  # older outputs are deleted
    max_upload_mb: float = float(os.environ.get("DSA_MAX_UPLOAD_MB", "50"))  # a larger video to continue is refused

    def validate(self) -> None:
        if self.max_queue < 1:
            raise SystemExit(f"max queue {self.max_queue} must be at least 1")
        if not 0 < self.max_request_s < self.output_max_age_s:
            raise SystemExit(f"max request seconds {self.max_request_s} must be positive and below the output "
                             f"max age {self.output_max_age_s} (a running generation's files must outlive it)")
        if not self.max_upload_mb > 0:
            raise SystemExit(f"max upload {self.max_upload_mb} MB must be positive")


LIMITS = Limits()
# Held-out world captions (never trained on): for these the app knows what the video should
# show, so Compare can score it.  Any other prompt is generated but not scored.
KNOWN_CAPTIONS = {**caption_attributes(range(64)), **caption_attributes(range(16), WORLDS["simple"])}
# First two one-object prompts, whose colours the shipped model follows (README, Benchmark),
# then two of the full world's, which it mostly does not.
EXAMPLES = [sample_clip(heldout_seed(i), WORLDS[world]).caption
            for world, i in (("simple", 3), ("simple", 6), ("full", 23), ("full", 4))]
# Which widget feeds which constructor argument of each schedule.
PARAMS = {
    "fixed": {"steps": "steps"},
    "ffe": {"steps": "steps"},
    "diagonal": {"counts": "counts"},
    "adaptive": {"steps": "max_steps", "margin": "margin", "tol": "tol", "min_steps": "min_steps"},
    "proxy": {"steps": "max_steps", "margin": "margin", "tol": "tol", "min_steps": "min_steps"},
}
# The tables' columns, shown as headers before a run fills them.  Per chunk: its record in
# the JSON (`ChunkEvent.stats`) but for the step lists, which the charts show.
CHUNK_COLUMNS = ["index", "steps", "confidence", "nfe", "num_frames", "transformer_ms", "decode_ms", "prompt"]
SUMMARY_COLUMNS = ["schedule", "student", "NFE", "frames", "generated FPS", "first-chunk latency s", "mean steps",
                   "quality (0–100)"]
ACTIVE: dict[str, Generation] = {}  # the running generation of each browser session
# Held for each chunk: after Stop, the chunk under way ends in its worker while the next request
# starts; its first chunk waits for it instead of sharing the device (`prefetch`).
CHUNK_LOCK = threading.Lock()
# A video to try "Continue a video" on without one at hand: the shipped model's first sample.
CONTINUE_EXAMPLE = Path(__file__).resolve().parent / "assets" / "sample_0.mp4"


# The embedded default: the trained tiny model shipped in weights/tiny (hash-verified on load).
PIPE = StreamingPipeline.from_preset("tiny")
# Gradio probes and remuxes each streamed segment in subprocesses while the next chunk computes
# (`prefetch`): one CPU left to them made Compare about 17% faster on 2 cores (README, "The app").
fit_threads(reserve=1)
FPS = PIPE.preset.sampling.fps
# wan-1.3b needs CUDA; it is offered only there and loaded on first use.
MODELS = ["tiny"] + (["wan-1.3b"] if torch.cuda.is_available() else [])
PIPES: dict[str, StreamingPipeline] = {"tiny": PIPE}


def pipeline(model: str) -> StreamingPipeline:
    if model not in MODELS:
        raise gr.Error(f"model={model!r} is not available here; allowed: {', '.join(MODELS)}")
    if model not in PIPES:
        try:
            PIPES[model] = StreamingPipeline.from_preset(model)
        except (ValueError, OSError) as err:  # missing or refused files: say which
            raise gr.Error(f"{model} could not be loaded: {err}") from None
    return PIPES[model]


def number(value: float | None, name: str) -> float:
    if value is None or value == "":
        raise gr.Error(f"{name} is empty: enter a number")
    return value


@contextlib.contextmanager
def shown(video: str | None = None) -> Iterator[None]:
    """Bad input becomes a visible error, a warning (frames skipped, a prompt truncated) a
    visible warning; Gradio's temporary path of an uploaded `video` becomes "the uploaded file"."""
    def say(text: str) -> str:
        return text.replace(str(video), "the uploaded file") if video else text

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except ValueError as err:
            raise gr.Error(say(str(err))) from None
    for w in caught:
        gr.Warning(say(str(w.message)))


def uploaded_video(video: str | None, model: str, seconds: float) -> GivenVideo | None:
    """The uploaded video's last whole chunks that leave room for `seconds`, if one is given:
    checked, trimmed, encoded and decoded once, however many schedules continue it (Compare)."""
    if not video:
        return None
    with shown(video):
        pipe = pipeline(model)
        return pipe.given(read_context(video, pipe.preset, seconds))


def start(prompt: str, schedule: str, widgets: dict, seconds: float, seed: float, model: str = "tiny",
          context: GivenVideo | None = None) -> Generation:
    """Validate the form and start a generation on the schedule's own trained student, after the
    `context` frames if given."""
    with shown():
        pipe = pipeline(model).for_schedule(schedule)
        params = {arg: widgets[w] for w, arg in PARAMS.get(schedule, {}).items() if widgets[w] is not None}
        for key in ("steps", "max_steps", "min_steps"):
            if key in params:
                params[key] = int(number(params[key], key))
        seconds = float(number(seconds, "seconds"))
        return pipe.generate(prompt, schedule, seconds=seconds, seed=int(seed), context=context, **params)


def prune_outputs() -> None:
    """Delete the output folders of generations older than the limit, so disk use stays bounded."""
    cutoff = time.time() - LIMITS.output_max_age_s
    for folder in OUTPUT_DIR.glob("*/"):
        if folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def over_time(gen: Generation, e: ChunkEvent) -> bool:
    """Stop a generation past the per-request limit (checked between chunks), and say so once:
    the chunk computed ahead (`prefetch`) still arrives after the cancel."""
    if e.elapsed_s <= LIMITS.max_request_s or e.index + 1 == e.num_chunks or gen.cancel_requested:
        return False
    gen.cancel()
    gr.Warning(f"stopped after {e.elapsed_s:.0f} s: the per-request limit on this server is "
               f"{LIMITS.max_request_s:g} s")
    return True


class ChunkView:
    """What one streaming generation shows: segments, chart data, running figures, final files."""

    def __init__(self, gen: Generation) -> None:
        prune_outputs()
        self.gen = gen
        self.folder = OUTPUT_DIR / uuid.uuid4().hex
        self.video = Mp4Writer(self.folder / "video.mp4", FPS)
        self.conf_rows: list[dict] = []
        self.step_rows: list[dict] = []
        self.frames = 0  # generated, not given
        self.chunks: list = []  # decoded frames, for the quality score

    def segment(self, name: str, frames: np.ndarray) -> str:
        """The player's next segment, and the same frames appended to the MP4."""
        path = self.folder / f"{name}.ts"
        write_mp4(path, [frames], FPS)
        self.video.write(frames)
        return str(path)

    def given(self) -> tuple:
        """The uploaded video's frames that the generation continues: the first segment and the
        start of the MP4, before any chart data."""
        frames = self.gen.context_frames
        figures = (f"continuing the last {len(frames)} frames ({len(frames) / FPS:.2f} s, "
                   f"{self.gen.context_chunks} chunks) of the uploaded video")
        return self.segment("given", frames), *self.charts(), figures

    def add(self, e: ChunkEvent) -> tuple:
        segment = self.segment(f"chunk_{e.index:03d}", e.frames)
        self.frames += len(e.frames)
        self.chunks.append(e.frames)
        # One point series per step number across chunks.  The chunk is a category (as in the bar
        # chart, ordered by `charts`), so the axis shows whole chunks, not a numeric axis's 0.5 ticks.
        self.conf_rows += [{"chunk": str(e.index), "confidence": c, "step": f"step {j + 1}"}
                           for j, c in enumerate(e.confidence)]
        self.step_rows.append({"chunk": str(e.index), "steps": e.steps})
        fallback = (
            "" if self.gen.pipe.trained_head else " (this model has no trained confidence head: adaptive runs as proxy)"
        )
        figures = (
            f"**{self.gen.schedule.name}**{fallback} on the {self.gen.pipe.student} student · seed {self.gen.seed} · "
            f"**NFE** {e.nfe} · "
            f"**{self.frames / e.elapsed_s:.1f}** generated frames/s · first chunk after "
            f"**{self.gen.events[0].elapsed_s:.2f} s** · chunk {e.index + 1}/{e.num_chunks} · prompt: {e.prompt}"
        )
        return segment, *self.charts(), figures

    def charts(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The two charts' data so far, typed even when empty: an empty frame's object columns
        read as categories, and a bar chart first sent one kept a categorical step axis."""
        conf = pd.DataFrame(self.conf_rows, columns=["chunk", "confidence", "step"]).astype(
            {"chunk": str, "confidence": float, "step": str})
        steps = pd.DataFrame(self.step_rows, columns=["chunk", "steps"]).astype({"chunk": str, "steps": int})
        return conf, steps

    def finish(self) -> tuple[str, pd.DataFrame, str, dict]:
        self.video.close()
        summary = self.gen.summary()
        (self.folder / "video.json").write_text(json.dumps(summary, indent=2))
        table = pd.DataFrame(summary["chunks"], columns=CHUNK_COLUMNS)
        return str(self.video.path), table, str(self.folder / "video.json"), summary


@spaces.GPU
def generate(prompt: str, schedule: str, steps: int | None, counts: str, margin: float | None, tol: float | None,
             min_steps: int | None, seconds: float, seed: int | None, random_seed: bool, model: str,
             request: gr.Request, video: str | None = None) -> Iterator[tuple]:
    # `video` last and None by default: gradio_client callers may leave it out.
    widgets = {"steps": steps, "counts": counts, "margin": margin, "tol": tol, "min_steps": min_steps}
    seed = random.randrange(2**31) if random_seed else number(seed, "seed")
    gen = start(prompt, schedule, widgets, seconds, seed, model, uploaded_video(video, model, seconds))
    view = ChunkView(gen)
    ACTIVE[request.session_hash] = gen
    try:
        if gen.context_chunks:
            yield *view.given(), *[gr.skip()] * 3
        for e in prefetch(gen, gen.cancel, CHUNK_LOCK):
            yield *view.add(e), *[gr.skip()] * 3
            over_time(gen, e)
    finally:
        ACTIVE.pop(request.session_hash, None)
        mp4, table, report, _ = view.finish()
    yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), mp4, table, report


def next_prompt(prompt: str, recache: bool, request: gr.Request) -> str:
    gen = ACTIVE.get(request.session_hash)
    if gen is None:
        raise gr.Error("nothing is generating: the next prompt applies to a running generation")
    try:
        gen.change_prompt(prompt, recache=bool(recache))
    except ValueError as err:
        raise gr.Error(str(err)) from None
    return f"takes effect from the next chunk to start: {prompt.strip()}"


@functools.cache
def evaluator() -> Evaluator:
    """Built on first use: it renders real reference clips (a few seconds)."""
    return Evaluator(AttributeNet.shipped())


def quality(prompt: str, view: ChunkView) -> float | str:
    """Total score (0–100) of a finished video whose prompt is a known world caption."""
    attributes = KNOWN_CAPTIONS.get(prompt.strip())
    if attributes is None:
        return "— (not a world caption)"
    try:
        return round(evaluator().score([np.concatenate(view.chunks)], [attributes])["total_score"], 1)
    except ValueError as err:  # e.g. too short to hold one scored window
        return f"— ({err})"


@spaces.GPU
def compare(prompt: str, names: list[str], seconds: float, seed: int | None,
            video: str | None = None) -> Iterator[tuple]:
    # `video` last and None by default: gradio_client callers may leave it out.
    if not 2 <= len(names or []) <= 3:
        raise gr.Error(f"choose 2 or 3 schedules to compare (chose {len(names or [])})")
    defaults = {"steps": None, "counts": None, "margin": None, "tol": None, "min_steps": None}
    context = uploaded_video(video, "tiny", seconds)  # every schedule continues the same frames
    views = [ChunkView(start(prompt, name, defaults, seconds, number(seed, "seed"), context=context))
             for name in names]
    if context is not None:  # every player opens with them
        update: list = [gr.skip()] * 13
        for i, v in enumerate(views):
            update[4 * i : 4 * i + 4] = v.given()
        yield tuple(update)

    def turns() -> Iterator[tuple[int, ChunkEvent]]:
        # Chunk by chunk, in turns: every schedule streams at once from the same noise.
        iterators = [iter(v.gen) for v in views]
        while any(it is not None for it in iterators):
            for i, it in enumerate(iterators):
                e = None if it is None else next(it, None)
                if e is None:
                    iterators[i] = None
                else:
                    yield i, e

    def cancel_all() -> None:
        for v in views:  # each ends before its next chunk
            v.gen.cancel()

    for i, e in prefetch(turns(), cancel_all, CHUNK_LOCK):
        # Only this column changes: a streaming video given its last segment again would
        # append that segment to its player a second time.
        update: list = [gr.skip()] * 13
        update[4 * i : 4 * i + 4] = views[i].add(e)
        yield tuple(update)
        if over_time(views[i].gen, e):
            cancel_all()
    rows = []
    for v in views:
        _, _, _, s = v.finish()
        # The schedules ran in turns, so their wall clocks overlap: each is timed by its own
        # chunks' transformer and decode time.
        own_s = [(c["transformer_ms"] + c["decode_ms"]) / 1e3 for c in s["chunks"]]
        rows.append([v.gen.schedule.name, v.gen.pipe.student, s["nfe"], s["num_frames"],
                     round(v.frames / sum(own_s), 1), round(own_s[0], 3),
                     round(sum(c["steps"] for c in s["chunks"]) / len(s["chunks"]), 2), quality(prompt, v)])
    yield *[gr.skip()] * 12, pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def charts(max_steps: int) -> tuple[gr.ScatterPlot, gr.BarPlot]:
    # Points, not lines: steps 2-4 often run on one chunk only, and a one-point line is not drawn.
    # The chunks are categories, put in number order: by name "10" would come before "7".
    longest = PIPE.latent_frames(PIPE.preset.sampling.max_seconds) // PIPE.preset.model.chunk_frames
    order = [str(k) for k in range(longest + 1)]
    return (
        gr.ScatterPlot(x="chunk", y="confidence", color="step", y_lim=[0, 1], sort=order,
                       title="Confidence after each step"),
        gr.BarPlot(x="chunk", y="steps", y_lim=[0, max_steps], sort=order, title="Steps per chunk"),
    )


def upload(who: str) -> gr.Video:
    with gr.Accordion("Continue a video (optional)", open=False):
        video = gr.Video(sources=["upload"], label="Video to continue", height=200)
        # Gradio keeps example files out of its cache's expiry (`delete_cache` above).
        gr.Examples([[str(CONTINUE_EXAMPLE)]], inputs=video, label="Example: assets/sample_0.mp4")
        gr.Markdown(f"Scaled and cropped to the model's frame at its frame rate; {who} its last whole "
                    "chunks, within the length limit with the seconds above.")
    return video


def build() -> gr.Blocks:
    d, s = PIPE.preset.schedules, PIPE.preset.sampling
    # Gradio's own copies of served files expire like the outputs they copy.
    age = int(LIMITS.output_max_age_s)
    with gr.Blocks(title="DSA Video", delete_cache=(age, age)) as demo:
        gr.Markdown("# DSA Video — streaming video diffusion with dynamic step allocation")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=2):
                    prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0], lines=2)
                    gr.Examples(EXAMPLES, inputs=prompt)
                    schedule = gr.Radio(list(SCHEDULES), value="adaptive", label="Schedule")
                    with gr.Accordion("Schedule parameters", open=False):
                        steps = gr.Number(d.fixed_steps, precision=0,
                                          label="steps (fixed; FFE after chunk 0; adaptive/proxy max)")
                        counts = gr.Textbox(",".join(map(str, d.diagonal_counts)), label="diagonal step counts")
                        margin = gr.Number(d.adaptive_margin, label="margin (adaptive/proxy)")
                        tol = gr.Number(d.adaptive_tol, label="tol (adaptive/proxy)")
                        min_steps = gr.Number(d.adaptive_min_steps, precision=0, label="min steps (adaptive/proxy)")
                    with gr.Row():
                        seconds = gr.Slider(1, s.max_seconds, value=5, step=1, label="Seconds")
                        seed = gr.Number(0, precision=0, label="Seed")
                        random_seed = gr.Checkbox(False, label="random seed")
                    model = gr.Dropdown(MODELS, value="tiny", label="Model",
                                        info="wan-1.3b is offered where a GPU is present")
                    video = upload("the generation continues")
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary")
                        stop = gr.Button("Stop", variant="stop")
                    with gr.Row():
                        upcoming = gr.Textbox(label="Next prompt (from the next chunk on)", scale=3)
                        recache = gr.Checkbox(False, label="re-cache earlier chunks")
                        switch = gr.Button("Switch", scale=1)
                    switched = gr.Markdown()
                with gr.Column(scale=3):
                    stream = gr.Video(label="Live", streaming=True, autoplay=True, height=320)
                    figures = gr.Markdown()
            with gr.Row():
                conf_plot, steps_plot = charts(s.max_steps)
            with gr.Row():
                final = gr.Video(label="Video (MP4)", height=320)
                report = gr.File(label="Per-chunk statistics (JSON)")
            table = gr.Dataframe(label="Per-chunk statistics", headers=CHUNK_COLUMNS, interactive=False)
            event = go.click(
                generate,
                [prompt, schedule, steps, counts, margin, tol, min_steps, seconds, seed, random_seed, model, video],
                [stream, conf_plot, steps_plot, figures, final, table, report],
                api_name="generate",
                concurrency_id="device",
            )
            stop.click(None, cancels=[event])
            switch.click(next_prompt, [upcoming, recache], switched, api_name="next_prompt", queue=False)
        with gr.Tab("Compare"):
            c_prompt = gr.Textbox(label="Prompt", value=EXAMPLES[1], lines=2)
            gr.Examples(EXAMPLES, inputs=c_prompt)
            with gr.Row():
                c_names = gr.CheckboxGroup(list(SCHEDULES), value=["adaptive", "fixed", "ffe"],
                                           label="Schedules (2 or 3; each with its defaults)")
                c_seconds = gr.Slider(1, s.max_seconds, value=5, step=1, label="Seconds")
                c_seed = gr.Number(0, precision=0, label="Seed (same initial noise for all)")
            c_video = upload("every schedule continues")
            c_go = gr.Button("Compare", variant="primary")
            columns = []
            with gr.Row():
                for i in range(3):
                    with gr.Column():
                        video = gr.Video(label=f"Schedule {i + 1}", streaming=True, autoplay=True, height=240)
                        points, bars = charts(s.max_steps)
                        columns += [video, points, bars, gr.Markdown()]
            summary = gr.Dataframe(label="Summary · FPS and latency: each schedule's own transformer and decode "
                                         "time (they run in turns) · quality: the total score of dsa_core.eval "
                                         "(0–100), measured for held-out world captions such as the examples",
                                   headers=SUMMARY_COLUMNS, interactive=False)
            c_go.click(compare, [c_prompt, c_names, c_seconds, c_seed, c_video], [*columns, summary],
                       api_name="compare", concurrency_id="device")
    return demo


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    # After our own variables, Gradio's: a Hugging Face Space sets GRADIO_SERVER_NAME=0.0.0.0,
    # and an app that bound loopback there would never answer its health check.
    parser.add_argument("--host",
                        default=os.environ.get("DSA_HOST") or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("DSA_PORT") or os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--max-queue", type=int, default=LIMITS.max_queue)
    parser.add_argument("--max-request-seconds", type=float, default=LIMITS.max_request_s)
    parser.add_argument("--output-max-age", type=float, default=LIMITS.output_max_age_s, help="seconds")
    parser.add_argument("--max-upload-mb", type=float, default=LIMITS.max_upload_mb)
    args = parser.parse_args()
    LIMITS = Limits(args.max_queue, args.max_request_seconds, args.output_max_age, args.max_upload_mb)
    LIMITS.validate()
    # Generate and Compare share the "device" queue: one generation at a time, others wait
    # and see their position.  The app serves files from its own output folder only.
    demo = build()
    demo.queue(default_concurrency_limit=1, max_size=LIMITS.max_queue).launch(
        server_name=args.host, server_port=args.port, allowed_paths=[str(OUTPUT_DIR)],
        max_file_size=int(LIMITS.max_upload_mb * 2**20),
    )
