import pytest
import torch

from dsa_core.config import TINY
from dsa_core.model import CausalWanModel
from dsa_core.pipeline import StreamingPipeline


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
