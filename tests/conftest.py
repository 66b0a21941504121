import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from gradio_client import Client

from dsa_core.config import TINY
from dsa_core.model import CausalWanModel
from dsa_core.pipeline import StreamingPipeline

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_model() -> CausalWanModel:
    torch.manual_seed(0)
    return CausalWanModel(TINY.model).eval()


@pytest.fixture(scope="session")
def random_pipe() -> StreamingPipeline:
    """The tiny preset with random weights: exercises the machinery, not the model."""
    return StreamingPipeline.from_preset("tiny", random_init=True, device="cpu", seed=0)


@pytest.fixture(scope="session")
def tiny_pipe() -> StreamingPipeline:
    """The shipped, trained tiny model: what the app, the CLI and the bench serve by default."""
    return StreamingPipeline.from_preset("tiny", device="cpu", seed=0)


@contextmanager
def app_process(outputs: Path, *args: str, root: Path = ROOT, as_space: bool = False) -> Iterator[str]:
    """Run `root`/app.py on a free port (with extra CLI args) and yield its URL once it answers:
    on loopback through `--port`, or `as_space`, with the address in Gradio's variables as a
    Hugging Face Space sets them (all interfaces)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_SERVER_", "DSA_HOST", "DSA_PORT"))}
    env["DSA_OUTPUT_DIR"] = str(outputs)
    if as_space:
        env |= {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port)}
    else:
        args = ("--port", str(port), *args)
    server = subprocess.Popen([sys.executable, "app.py", *args], cwd=root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextmanager
def serve_app(outputs: Path, *args: str, **where) -> Iterator[Client]:
    """`app_process` with a client connected to it."""
    with app_process(outputs, *args, **where) as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="session")
def launch_app():
    """`app_process`, for tests that drive the app other than through a client (a browser)."""
    return app_process


@pytest.fixture(scope="session")
def app_server():
    """`serve_app`, for tests that need a server of their own (other limits)."""
    return serve_app


@pytest.fixture(scope="session")
def client(tmp_path_factory):
    """A real app server with the default limits, shared by the app tests."""
    with serve_app(tmp_path_factory.mktemp("outputs")) as c:
        yield c
