"""`pip install .` gives a working generator: its dependencies declared, every module and the
tiny model's weights inside, and `from_preset("tiny")` running with no source tree beside it."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_an_installed_wheel_streams_the_tiny_model_without_the_source_tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "requirements.txt", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src)
    for name in ("dsa_core", "weights"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", str(src), "--no-build-isolation", "--no-deps", "-w", str(tmp_path / "dist")],
                   check=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = next(z.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "dsa_core").rglob("*.py")}
    assert not modules - names, f"not in the wheel (add the package to pyproject's packages): {modules - names}"
    weights = {f"dsa_core/_weights/{p.relative_to(ROOT / 'weights').as_posix()}"
               for p in (ROOT / "weights" / "tiny").rglob("*") if p.is_file()}
    assert not weights - names, f"weights missing from the wheel: {weights - names}"
    required = {line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()} - {""}
    declared = {line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ")}
    assert "torch==2.13.0" in declared and len(declared) == len(required), (declared, required)
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the wheel carries no LICENSE"

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True)
    script = (
        "import dsa_core\n"
        "from dsa_core.pipeline import StreamingPipeline\n"
        "pipe = StreamingPipeline.from_preset('tiny')\n"
        "events = list(pipe.generate('a red ball bounces', 'adaptive', seconds=1, seed=0))\n"
        "print(dsa_core.__file__, pipe.weights_dir, len(events), events[0].frames.shape, sep='\\n')\n"
    )
    # Run from an empty folder so that only the installed copy can be imported.
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    module, weights_dir, chunks, shape = out.stdout.strip().splitlines()[-4:]
    assert Path(module).is_relative_to(site) and Path(weights_dir).is_relative_to(site)
    assert int(chunks) == 2 and shape == "(9, 64, 64, 3)"
    # Exporting a trained model needs a target there: the installed copy's weights stay as shipped.
    manifest = (Path(weights_dir) / "MANIFEST").read_bytes()
    out = subprocess.run([sys.executable, "-m", "dsa_core.train", "export"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "export needs --dest DIR" in out.stderr, out.stderr[-2000:]
    assert (Path(weights_dir) / "MANIFEST").read_bytes() == manifest
