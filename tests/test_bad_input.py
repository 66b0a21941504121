"""The bad-input matrix of docs/bad_input.md: every case gets a clear error, nothing crashes.

Each case has an id that the docs table lists (a test checks they agree).  The app cases run
against a live server, which must keep serving after each.
"""

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from gradio_client import handle_file

from dsa_core import bench, continuation, generate, probe
from dsa_core.train.__main__ import main as train_main
from dsa_core.weights import default_weights_dir

DOC = Path(__file__).resolve().parent.parent / "docs" / "bad_input.md"
TEN_KB = "a red ball " * 931  # 10 241 characters

# (id, generate() arguments, message)
API = [
    ("api-prompt-none", {"prompt": None}, "prompt must be a non-empty string of 1..2000 characters"),
    ("api-prompt-int", {"prompt": 5}, "prompt must be a non-empty string"),
    ("api-prompt-control-only", {"prompt": "\x00\x07\x1b"}, "prompt has no printable characters"),
    ("api-prompt-10kb", {"prompt": TEN_KB}, "prompt has 10241 characters; the allowed range is 1..2000"),
    ("api-seconds-nan", {"seconds": math.nan}, r"seconds=nan must be a number in \(0, 60.0\]"),
    ("api-seconds-inf", {"seconds": math.inf}, r"seconds=inf must be a number in \(0, 60.0\]"),
    ("api-seconds-negative", {"seconds": -1}, r"seconds=-1 is outside the allowed range \(0, 60.0\]"),
    ("api-seconds-string", {"seconds": "5"}, "seconds='5' must be a number"),
    ("api-seed-bool", {"seed": True}, "seed=True must be an integer in 0.."),
    ("api-seed-float", {"seed": 1.5}, "seed=1.5 must be an integer"),
    ("api-seed-huge", {"seed": 2**70}, "must be an integer in 0..9223372036854775807"),
    ("api-schedule-unknown", {"schedule": "fast"}, "schedule='fast' is unknown; allowed: adaptive"),
    ("api-param-unknown", {"schedule": "fixed", "foo": 1}, "schedule 'fixed' takes no parameter 'foo'"),
    ("api-steps-zero", {"schedule": "fixed", "steps": 0}, r"steps=0 is outside the allowed range 1..4"),
    ("api-steps-float", {"schedule": "fixed", "steps": 2.5}, r"steps=2.5 is outside the allowed range 1..4"),
    ("api-margin-nan", {"schedule": "adaptive", "margin": math.nan}, "margin=nan is outside the allowed range 0..1"),
    ("api-tol-inf", {"schedule": "adaptive", "tol": math.inf}, "tol=inf is outside the allowed range 0..1"),
    ("api-min-above-max", {"schedule": "adaptive", "min_steps": 4, "max_steps": 2},
     r"min_steps=4 is outside the allowed range 1..2"),
    ("api-counts-empty", {"schedule": "diagonal", "counts": []}, "must list at least one step count in 1..4"),
    ("api-context-size", {"context": np.zeros((21, 32, 32, 3), np.uint8)},
     r"context must be uint8 frames \[T, 64, 64, 3\] with T >= 9; got uint8 \[21, 32, 32, 3\]"),
    ("api-context-float", {"context": np.zeros((21, 64, 64, 3), np.float32)},
     r"context must be uint8 frames .*; got float32 \[21, 64, 64, 3\]"),
    ("api-context-list", {"context": [[0]]}, r"context must be uint8 frames .*; got list"),
    ("api-context-short", {"context": np.zeros((8, 64, 64, 3), np.uint8)},
     r"context has 8 frames; at least 9 \(one chunk\) are needed"),
    ("api-context-too-long", {"context": np.zeros((909, 64, 64, 3), np.uint8), "seconds": 5},
     r"the context's 56.81 s and seconds=5.0 make 61.81 s; a video may be at most 60.0 s"),
]


@pytest.mark.parametrize("case,kwargs,match", API, ids=[c[0] for c in API])
def test_python_api(random_pipe, case, kwargs, match):
    kwargs = {"prompt": "a red ball", "seconds": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        random_pipe.generate(kwargs.pop("prompt"), **kwargs)


def test_python_api_control_characters_are_replaced(random_pipe):
    with pytest.warns(UserWarning, match="control characters in the prompt were replaced"):
        gen = random_pipe.generate("a red\x00 ball\x1b", seconds=1)
    assert gen.prompt == "a red ball"


@pytest.fixture(scope="module")
def truncated_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights") / "tiny"
    shutil.copytree(default_weights_dir("tiny"), folder)
    target = folder / "transformer.safetensors"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    return folder


# (id, entry point, argv with {weights} = a copy of weights/tiny with a truncated file and
# {tmp} = an empty folder, message)
CLI = [
    ("cli-generate-schedule", generate.main, ["--prompt", "a ball", "--schedule", "fast"],
     "argument --schedule: invalid choice: 'fast'"),
    ("cli-generate-seconds-nan", generate.main, ["--prompt", "a ball", "--seconds", "nan"],
     "seconds=nan must be a number"),
    ("cli-generate-steps", generate.main, ["--prompt", "a ball", "--schedule", "fixed", "--steps", "9"],
     "steps=9 is outside the allowed range 1..4"),
    ("cli-generate-empty-prompt", generate.main, ["--prompt", " "], "prompt must be a non-empty string"),
    ("cli-generate-seed", generate.main, ["--prompt", "a ball", "--seed", "-3"], "seed=-3 must be an integer"),
    ("cli-generate-truncated-weights", generate.main, ["--prompt", "a ball", "--weights", "{weights}"],
     "transformer.safetensors does not match its sha256"),
    ("cli-generate-continue-not-video", generate.main, ["--prompt", "a ball", "--continue", "{tmp}/bad.json"],
     r"bad.json could not be read as a video"),
    ("cli-generate-continue-no-room", generate.main,
     ["--prompt", "a ball", "--continue", "{tmp}/bad.json", "--seconds", "60"],
     r"seconds=60 leaves no room for a video to continue \(one chunk, 9 frames, at least\): with one, seconds may "
     r"be at most 59.4375"),
    ("cli-generate-missing-weights", generate.main, ["--prompt", "a ball", "--weights", "{tmp}/none"],
     "MANIFEST is missing"),
    ("cli-train-unknown-stage", train_main, ["distill"], "invalid choice: 'distill'"),
    ("cli-train-config-key", train_main, ["vae", "--config", "{tmp}/bad.json"], "config key 'hieght' is unknown"),
    ("cli-bench-prompts", bench.main, ["--prompts", "99"], r"--prompts=99 is outside the allowed range 1..64"),
    ("cli-bench-first-prompt", bench.main, ["--first-prompt", "-1"],
     r"--first-prompt=-1 is outside the allowed range 0..99936 \(clips from 100000 on are the fidelity's reference"),
    ("cli-bench-teacher", bench.main, ["--teacher", "{tmp}"],
     r"--teacher .*: has no teacher.safetensors or text_encoder"),
    ("cli-bench-renoise", bench.main, ["--renoise", "1"], r"--renoise=1.0 is outside the allowed range \(0, 1\)"),
    ("cli-bench-seeds", bench.main, ["--seeds", "0"], r"--seeds=0 is outside the allowed range: at least 1"),
    ("cli-bench-seeds-references", bench.main, ["--references-only", "--seeds", "2"],
     r"--seeds sets the schedules' seeds; --references-only samples each prompt once"),
    ("cli-bench-no-references", bench.main, ["--references-only", "--no-references"],
     r"--no-references skips the reference lines, which --references-only, --teacher and --renoise ask for"),
    ("cli-bench-row-syntax", bench.main, ["--row", "adaptive:min_steps"],
     r"--row adaptive:min_steps: 'min_steps' is not key=value"),
    ("cli-bench-row-parameter", bench.main, ["--row", "adaptive:speed=2"],
     r"--row adaptive speed=2: schedule 'adaptive' takes no parameter 'speed'; allowed: min_steps"),
    ("cli-bench-row-range", bench.main, ["--row", "adaptive:margin=2"],
     r"--row adaptive margin=2: margin=2 is outside the allowed range 0..1"),
    ("cli-bench-student", bench.main, ["--student", "teacher"],
     r"--student 'teacher' is not shipped with these weights; allowed: dmd, asd, diagonal"),
    ("cli-probe-clips", probe.main, ["--clips", "0"], r"--clips=0 is outside the allowed range 1..64"),
    ("cli-probe-teacher", probe.main, ["--teacher", "{tmp}"],
     r"--teacher .*: has no teacher.safetensors or text_encoder"),
    ("cli-continuation-prompts", continuation.main, ["--prompts", "65"],
     r"--prompts=65 is outside the allowed range 1..64"),
    ("cli-continuation-context", continuation.main, ["--context-chunks", "7"],
     r"--context-chunks=7 is outside the allowed range 1..6 \(7 chunks a clip, at least one generated\)"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case,main,argv,match", CLI, ids=[c[0] for c in CLI])
def test_cli(truncated_weights, tmp_path, capsys, monkeypatch, case, main, argv, match):
    (tmp_path / "bad.json").write_text('{"hieght": 64}')
    monkeypatch.chdir(tmp_path)  # anything a failed command wrote would land here
    argv = [a.format(weights=truncated_weights, tmp=tmp_path) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exit_info:  # argparse refusals
        rc = exit_info.code
    assert rc == 2
    assert re.search(match, capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


# (id, /generate arguments, message); the 11 arguments as in the README, a 12th the video to continue.
APP = [
    ("app-prompt-whitespace", ["   ", "adaptive", 4, "4,3,2", 0.02, 0.01, 1, 2, 0, False, "tiny"],
     "prompt must be a non-empty string"),
    ("app-prompt-control-only", ["\x00\x01", "adaptive", 4, "4,3,2", 0.02, 0.01, 1, 2, 0, False, "tiny"],
     "prompt has no printable characters"),
    ("app-prompt-10kb", [TEN_KB, "adaptive", 4, "4,3,2", 0.02, 0.01, 1, 2, 0, False, "tiny"],
     "prompt has 10241 characters; the allowed range is 1..2000"),
    ("app-steps", ["a ball", "fixed", 9, "4,3,2", 0.02, 0.01, 1, 2, 0, False, "tiny"],
     "steps=9 is outside the allowed range"),
    ("app-counts", ["a ball", "diagonal", 4, "4,x,2", 0.02, 0.01, 1, 2, 0, False, "tiny"],
     "diagonal counts '4,x,2' must be integers"),
    ("app-seconds", ["a ball", "adaptive", 4, "4,3,2", 0.02, 0.01, 1, 5000, 0, False, "tiny"],
     "5000 is greater than maximum value 60"),
    ("app-margin", ["a ball", "adaptive", 4, "4,3,2", -3, 0.01, 1, 2, 0, False, "tiny"],
     r"margin=-3(\.0)? is outside the allowed range 0..1"),
    ("app-seed", ["a ball", "adaptive", 4, "4,3,2", 0.02, 0.01, 1, 2, -5, False, "tiny"],
     "seed=-5 must be an integer"),
    ("app-model", ["a ball", "adaptive", 4, "4,3,2", 0.02, 0.01, 1, 2, 0, False, "wan-1.3b"], "wan-1.3b"),
    ("app-continue-not-video",
     ["a ball", "fixed", 1, "4,3,2", 0.02, 0.01, 1, 2, 0, False, "tiny", handle_file(str(DOC))],
     "the uploaded file could not be read as a video"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case,args,match", APP, ids=[c[0] for c in APP])
def test_app_generate(client, case, args, match):
    with pytest.raises(Exception, match=match):
        client.predict(*args, api_name="/generate")
    ok = ["a red ball", "fixed", 1, "4,3,2", 0.02, 0.01, 1, 1, 3, False, "tiny"]
    assert len(list(client.submit(*ok, api_name="/generate"))) >= 2  # the server keeps serving


@pytest.mark.slow
def test_app_other_endpoints(client):
    """app-compare-one-schedule, app-compare-continue-no-room, app-next-prompt-idle"""
    with pytest.raises(Exception, match="choose 2 or 3 schedules"):
        client.predict("a red ball", ["adaptive"], 2, 1, api_name="/compare")
    # Checked before the file is read (the file here is no video).
    with pytest.raises(Exception, match="seconds=60 leaves no room for a video to continue"):
        client.predict("a red ball", ["adaptive", "fixed"], 60, 1, handle_file(str(DOC)), api_name="/compare")
    with pytest.raises(Exception, match="nothing is generating"):
        client.predict("a blue square", False, api_name="/next_prompt")


def test_docs_table_lists_every_case():
    doc = DOC.read_text()
    ids = [c[0] for c in API + CLI + APP] + ["app-compare-one-schedule", "app-compare-continue-no-room",
                                             "app-next-prompt-idle"]
    missing = [i for i in ids if f"`{i}`" not in doc]
    assert not missing, f"docs/bad_input.md lacks {missing}"
    assert len(ids) >= 25

