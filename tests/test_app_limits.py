"""Server limits are enforced: per-request time, output age, files outside the outputs."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from gradio_client import handle_file

ROOT = Path(__file__).resolve().parent.parent

ARGS = ["a red ball", "fixed", 4, "4,3,2", 0.02, 0.01, 1]


@pytest.mark.slow
def test_request_time_upload_size_and_output_age_limits(app_server, tmp_path):
    outputs = tmp_path / "outputs"
    limits = ("--max-request-seconds", "1", "--output-max-age", "4", "--max-upload-mb", "0.01")
    with app_server(outputs, *limits) as client:
        with pytest.raises(ValueError, match="exceeds the maximum file size of 10485 bytes"):
            client.predict(*ARGS, 1, 0, False, "tiny", handle_file(str(ROOT / "README.md")), api_name="/generate")
        # The server refuses it as well, not only the client that checks first.
        with (ROOT / "README.md").open("rb") as f:
            upload = httpx.post(client.src.rstrip("/") + "/gradio_api/upload", files={"files": f}, timeout=30)
        assert upload.status_code == 413
        result = client.predict(*ARGS, 30, 0, False, "tiny", api_name="/generate")  # 40 chunks planned
        summary = json.loads(Path(result[6]).read_text())
        assert summary["cancelled"] and summary["num_frames"] < summary["planned_frames"]
        first = {p.name for p in outputs.iterdir()}
        assert len(first) == 1
        time.sleep(5)  # older than the output age now
        client.predict(*ARGS, 1, 0, False, "tiny", api_name="/generate")
        second = {p.name for p in outputs.iterdir()}
        assert len(second) == 1 and not second & first


@pytest.mark.slow
def test_no_file_outside_the_outputs_is_served(client):
    base = client.src.rstrip("/")
    for path in ("/etc/passwd", "app.py", "weights/tiny/MANIFEST", "../../etc/passwd"):
        for route in ("/gradio_api/file=", "/file="):
            try:
                with urllib.request.urlopen(base + route + path, timeout=10) as r:
                    body = r.read()
            except urllib.error.HTTPError as err:
                assert err.code in (403, 404), (route, path, err.code)
                continue
            assert b"root:" not in body and b"import" not in body and b"sha256" not in body, (route, path)


@pytest.mark.slow
@pytest.mark.parametrize("args,match", [
    (["--max-queue", "0"], "max queue 0 must be at least 1"),
    (["--max-request-seconds", "100", "--output-max-age", "50"], "must be positive and below the output max age"),
])
def test_bad_limits_are_refused_at_startup(args, match):
    proc = subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and match in proc.stderr


@pytest.mark.slow
def test_load_script_small_run(tmp_path):
    """The load test's machinery on a small run (the README's figures come from the full one)."""
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, "scripts/load_test.py", "--users", "2", "--generations", "2",
                           "--seconds", "1", "--cancel-every", "2", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads(out.read_text())
    assert report["requests"] == 4 and report["cancelled"] == 2 and report["failed"] == 0, report["errors"]
    assert report["memory_mb"]["end_mb"] > 0 and proc.returncode in (0, 1)
