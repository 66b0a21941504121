"""Each schedule's step counts and NFE on scripted confidences, through the real chunk loop."""

import math

import pytest
import torch

from dsa_core.config import TINY
from dsa_core.model import KVCache, ModelOutput
from dsa_core.pipeline import denoise_chunk
from dsa_core.scheduler import FlowMatchScheduler
from dsa_core.schedules import Proxy, RandomExits, make_schedule

CHUNKS = 7


class ScriptedModel:
    """Stands in for the DiT: confidences come from a script, x0 is a fixed target.

    `conf[k][j]` is chunk k's head confidence at its step j (a context pass reads past the
    end and gets 0.5).  The flow is chosen so that x0 = x − σ·v equals `x0_target`.
    """

    def __init__(self, conf: list[list[float]], x0_target: float = 0.3) -> None:
        self.conf = conf
        self.calls: dict[int, int] = {}
        self.x0_target = x0_target

    def __call__(self, x, t, text, *, cache, start_frame):
        k = start_frame // 3
        j = self.calls.get(k, 0)
        self.calls[k] = j + 1
        c = self.conf[k][j] if j < len(self.conf[k]) else 0.5
        sigma = t[0, 0].item() / 1000
        flow = (x - self.x0_target) / sigma if sigma > 0 else torch.zeros_like(x)
        return ModelOutput(flow=flow, conf_logits=torch.full((1, 1), math.log(c / (1 - c))))


def run(schedule, conf):
    model = ScriptedModel(conf)
    schedule.reset()
    cache = KVCache(num_blocks=1, frame_tokens=1, window_frames=21, sink_frames=3)
    g = torch.Generator().manual_seed(0)
    steps, nfe = [], 0
    for k in range(len(conf)):
        noise = torch.randn(1, 2, 3, 2, 2, generator=g)
        r = denoise_chunk(model, FlowMatchScheduler(), schedule, None, cache, noise, k, 3 * k, g)
        steps.append(len(r.timesteps))
        nfe += r.nfe
        assert r.timesteps == schedule.timesteps(k)[: len(r.timesteps)]
    return steps, nfe


FLAT = [[0.5] * 4] * CHUNKS
# Adaptive script: chunk 0 ends at 0.8; chunk 1 reaches ref − margin at once; chunk 2 stalls
# (|Δ| < tol) at step 3; chunk 3 never satisfies the rule; chunk 4 matches chunk 3's 0.4.
ADAPTIVE = [
    [0.5, 0.6, 0.7, 0.8],
    [0.79, 0.9, 0.9, 0.9],
    [0.5, 0.7, 0.705, 0.9],
    [0.1, 0.2, 0.3, 0.4],
    [0.39, 0.5, 0.6, 0.7],
    [0.2, 0.6, 0.9, 0.9],
    [0.1, 0.3, 0.5, 0.7],
]

TABLE = [
    # name, params, script, expected steps per chunk, expected NFE
    ("fixed", {"steps": 4}, FLAT, [4] * 7, 35),
    ("fixed", {"steps": 2}, FLAT, [2] * 7, 21),
    ("fixed", {"steps": 1}, FLAT, [1] * 7, 14),
    ("ffe", {"steps": 1}, FLAT, [4, 1, 1, 1, 1, 1, 1], 17),
    ("ffe", {"steps": 2}, FLAT, [4, 2, 2, 2, 2, 2, 2], 23),
    ("diagonal", {"counts": (4, 3, 2)}, FLAT, [4, 3, 2, 2, 2, 2, 2], 17),
    ("diagonal", {"counts": "4,3,2", "context_pass": True}, FLAT, [4, 3, 2, 2, 2, 2, 2], 24),
    ("diagonal", {"counts": "4222"}, FLAT, [4, 2, 2, 2, 2, 2, 2], 16),
    ("diagonal", {"counts": 4131, "context_pass": True}, FLAT, [4, 1, 3, 1, 1, 1, 1], 19),  # bench --row digits
    ("adaptive", {}, ADAPTIVE, [4, 1, 3, 4, 1, 2, 4], 19 + 7),
    ("adaptive", {"min_steps": 2}, ADAPTIVE, [4, 2, 3, 4, 2, 2, 4], 21 + 7),
    ("adaptive", {"first_chunk_steps": 2}, ADAPTIVE, [2, 1, 3, 4, 1, 2, 4], 17 + 7),
    ("adaptive", {"max_steps": 3}, ADAPTIVE, [3, 1, 3, 3, 1, 2, 3], 16 + 7),
    ("adaptive", {"margin": 0.0, "tol": 0.0}, ADAPTIVE, [4, 2, 4, 4, 2, 2, 4], 22 + 7),
]


@pytest.mark.parametrize("name,params,script,expected,nfe", TABLE)
def test_step_counts_and_nfe(name, params, script, expected, nfe):
    schedule = make_schedule(name, TINY, **params)
    assert run(schedule, script) == (expected, nfe)


def test_random_exits_end_chunks_at_different_depths_reproducibly():
    """The DMD stage's `exit_per_chunk` rollouts: each chunk its own exit list, drawn from the
    generator, so a seed replays the same depths."""
    exits = [[1000.0 * (1 - i / 4) for i in range(n)] for n in (1, 2, 3, 4)]
    counts = [run(RandomExits(exits, torch.Generator().manual_seed(seed)), FLAT)[0] for seed in (0, 0, 1)]
    assert counts[0] == counts[1] != counts[2]
    assert len(set(counts[0])) > 1 and set(counts[0]) <= {1, 2, 3, 4}


def test_diagonal_beyond_the_trained_list_is_refused():
    with pytest.raises(ValueError, match=r"diagonal counts entry=5 is outside the allowed range 1\.\.4"):
        make_schedule("diagonal", TINY, counts="5,4,3,2")


def test_adaptive_state_resets_between_videos():
    schedule = make_schedule("adaptive", TINY)
    first = run(schedule, ADAPTIVE)
    assert run(schedule, ADAPTIVE) == first


def test_proxy_confidence_is_x0_agreement():
    p = Proxy(TINY)
    a = torch.tensor([1.0, 2.0, 3.0])
    assert p.confidence(0.9, a, None) == 0.0
    assert p.confidence(0.9, a, 2 * a) == pytest.approx(1.0)
    assert p.confidence(0.9, a, torch.tensor([3.0, 0.0, -1.0])) == 0.0  # orthogonal
    assert p.confidence(0.9, a, -a) == 0.0  # opposite, clipped


def test_proxy_stops_once_x0_settles():
    # The scripted model's x0 never changes, so from step 2 on the proxy confidence is 1:
    # chunk 0 runs all 4 steps, later chunks stop at min_steps = 2.
    steps, nfe = run(make_schedule("proxy", TINY), FLAT)
    assert steps == [4, 2, 2, 2, 2, 2, 2]
    assert nfe == 4 + 6 * 2 + 7


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("warp", {}, r"schedule='warp' is unknown; allowed: adaptive, ffe, diagonal, fixed, proxy"),
        ("fixed", {"steps": 0}, r"steps=0 is outside the allowed range 1\.\.4"),
        ("fixed", {"steps": 5}, r"steps=5 is outside the allowed range 1\.\.4"),
        ("fixed", {"steps": 2.5}, r"steps=2\.5 is outside the allowed range 1\.\.4"),
        ("ffe", {"steps": 9}, r"steps=9 is outside the allowed range 1\.\.4"),
        ("diagonal", {"counts": "4,0,2"}, r"diagonal counts entry=0 is outside the allowed range 1\.\.4"),
        ("diagonal", {"counts": "4,-1"}, r"diagonal counts entry=-1 is outside the allowed range 1\.\.4"),
        ("diagonal", {"counts": "four,3"}, r"diagonal counts 'four,3' must be integers in 1\.\.4"),
        ("diagonal", {"counts": ""}, r"diagonal counts must list at least one step count in 1\.\.4"),
        ("adaptive", {"margin": 2.0}, r"margin=2\.0 is outside the allowed range 0\.\.1"),
        ("adaptive", {"tol": float("nan")}, r"tol=nan is outside the allowed range 0\.\.1"),
        ("adaptive", {"min_steps": 5}, r"min_steps=5 is outside the allowed range 1\.\.4"),
        ("adaptive", {"steps": 2}, r"schedule 'adaptive' takes no parameter 'steps'"),
    ],
)
def test_bad_schedule_parameters(name, params, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(name, TINY, **params)
