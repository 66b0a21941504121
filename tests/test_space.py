"""The app as a Hugging Face Space: the README's front matter and what scripts/deploy_space.py publishes."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import metadata_load
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from deploy_space import space_files  # noqa: E402


def test_front_matter_pins_what_the_requirements_allow():
    meta = metadata_load(ROOT / "README.md")
    assert meta["sdk"] == "gradio" and (ROOT / meta["app_file"]).is_file()
    # The Space installs Gradio at sdk_version, then requirements.txt: the two must agree.
    gradio = next(Requirement(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
                  if line.startswith("gradio"))
    assert meta["sdk_version"] in gradio.specifier
    python = re.search(r'requires-python = "(.+)"', (ROOT / "pyproject.toml").read_text())[1]
    assert meta["python_version"] in SpecifierSet(python)
    assert len(meta["short_description"]) <= 60  # the Hub's limit


def test_published_files_are_the_tracked_ones_the_app_needs():
    files = space_files()
    tracked = set(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split())
    assert set(files) <= tracked
    manifest = [line.split()[-1] for line in (ROOT / "weights/tiny/MANIFEST").read_text().splitlines()
                if line and not line.startswith("#")]
    for needed in ("README.md", "LICENSE", "app.py", "requirements.txt", "packages.txt", "assets/sample_0.mp4",
                   "weights/tiny/MANIFEST", *(f"weights/tiny/{f}" for f in manifest)):
        assert needed in files
    assert not [f for f in files if f.startswith(("tests/", ".ci/", "runs/")) or "__pycache__" in f]
    out = subprocess.run([sys.executable, "scripts/deploy_space.py", "someone/dsa", "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith(f"{len(files)} files,") and out[1:] == files


@pytest.mark.slow
def test_published_files_serve_the_app_as_a_space(app_server, tmp_path):
    space = tmp_path / "space"
    for f in space_files():
        (space / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, space / f)
    with app_server(tmp_path / "outputs", root=space, as_space=True) as client:
        port = int(client.src.rstrip("/").rsplit(":", 1)[1])
        # Listening on all interfaces (0.0.0.0), as the Space's proxy needs: /proc/net/tcp
        # lists local address 00000000:PORT in state 0A (LISTEN).
        listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        assert any(f[1] == f"00000000:{port:04X}" and f[3] == "0A" for f in listening)
        # The copy's weights verify against their manifest and generate.
        result = client.predict("a red ball", "fixed", 4, "4,3,2", 0.02, 0.01, 1, 1, 0, False, "tiny",
                                api_name="/generate")
        summary = json.loads(Path(result[6]).read_text())
        assert summary["num_frames"] == summary["planned_frames"] > 0


def test_deploy_calls_the_hub_with_its_real_signatures(monkeypatch):
    # No network here: HfApi is replaced by an autospec of itself, which refuses any argument
    # huggingface_hub's own methods do not take.
    from unittest import mock

    import deploy_space
    from huggingface_hub import HfApi

    api = mock.create_autospec(HfApi, instance=True)
    monkeypatch.setattr(deploy_space, "HfApi", lambda token=None: api)
    deploy_space.main(["someone/dsa", "--private", "--hardware", "cpu-basic"])
    api.create_repo.assert_called_once_with("someone/dsa", repo_type="space", space_sdk="gradio", private=True,
                                            exist_ok=True)
    upload = api.upload_folder.call_args.kwargs
    assert upload["repo_type"] == "space" and upload["allow_patterns"] == space_files()
    assert Path(upload["folder_path"]) == ROOT
    api.request_space_hardware.assert_called_once_with("someone/dsa", "cpu-basic")
