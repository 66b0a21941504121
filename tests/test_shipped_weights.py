"""The trained `tiny` weights committed in `weights/tiny`: integrity, use by default, calibration."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dsa_core.calibration import calibration, load_teacher
from dsa_core.weights import default_weights_dir, verify_manifest

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = default_weights_dir("tiny")


def test_every_shipped_file_is_hash_listed_with_its_recipe():
    verified = {p.relative_to(WEIGHTS).as_posix() for p in verify_manifest(WEIGHTS)}
    on_disk = {p.relative_to(WEIGHTS).as_posix() for p in WEIGHTS.rglob("*") if p.is_file() and p.name != "MANIFEST"}
    assert verified == on_disk
    assert "python -m dsa_core.train" in (WEIGHTS / "MANIFEST").read_text()
    assert sum(p.stat().st_size for p in WEIGHTS.rglob("*") if p.is_file()) < 60 * 2**20


@pytest.mark.slow
def test_generate_cli_uses_the_shipped_weights(tmp_path):
    out = tmp_path / "v.mp4"
    subprocess.run([sys.executable, "-m", "dsa_core.generate", "--prompt", "a red ball moves left", "--seconds", "1",
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["random_init"] is False and out.stat().st_size > 0


@pytest.mark.slow
def test_confidence_head_is_calibrated_on_64_heldout_clips(tiny_pipe):
    """DSA's premise: low confidence where the chunk is far from the teacher's prediction."""
    report = calibration(tiny_pipe, load_teacher(WEIGHTS, tiny_pipe), clips=64)
    print(json.dumps(report, indent=2))
    assert report["pairs"] == 64 * 7 * 4
    assert report["spearman"] <= -0.5
