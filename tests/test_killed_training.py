"""A training stage SIGKILLed at random points resumes to exactly the weights of an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dsa_core.train.common import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
TOY = {"height": 32, "width": 32, "latent_frames": 6, "batch_size": 2, "clip_frames": 5, "stats_clips": 4,
       "steps": 16, "ckpt_every": 1, "log_every": 1}


def command(config: Path) -> list[str]:
    return [sys.executable, "-m", "dsa_core.train", "vae", "--config", str(config), "--resume"]


def checkpoint_step(folder: Path) -> int:
    ckpt = folder / "checkpoint.pt"
    return load_checkpoint(ckpt)["step"] if ckpt.is_file() else 0


@pytest.mark.slow
def test_sigkill_three_times_then_resume_equals_uninterrupted(tmp_path):
    configs = {}
    for name in ("straight", "killed"):
        configs[name] = tmp_path / f"{name}.json"
        configs[name].write_text(json.dumps({**TOY, "out_dir": str(tmp_path / name)}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(configs["straight"]), cwd=ROOT, env=env, check=True, capture_output=True)

    rng = random.Random(0)
    folder = tmp_path / "killed" / "vae"
    targets = sorted(rng.sample(range(1, TOY["steps"] - 1), 3))
    for target in targets:
        proc = subprocess.Popen(command(configs["killed"]), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and checkpoint_step(folder) < target and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.2))  # somewhere inside a step, or inside a checkpoint write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the stage ended before it could be killed"
        # Whatever the moment, the checkpoint on disk is a whole one.
        assert checkpoint_step(folder) >= target
        assert not (folder / "final").exists()
    subprocess.run(command(configs["killed"]), cwd=ROOT, env=env, check=True, capture_output=True)

    final = "final/diffusion_pytorch_model.safetensors"
    straight = load_file(str(tmp_path / "straight" / "vae" / final))
    resumed = load_file(str(folder / final))
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    steps = [json.loads(line)["step"] for line in (folder / "losses.jsonl").read_text().splitlines()]
    assert steps == list(range(TOY["steps"]))  # each step logged once, none lost or repeated
