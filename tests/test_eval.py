"""The quality metric separates good from bad: real clips above wrong prompts, noise lowest."""

import numpy as np
import pytest
import torch

from dsa_core.eval import Evaluator, blind_adherence, flicker, frechet_distance, sharpness
from dsa_core.evalnet import (
    ATTRIBUTES,
    BG_SET,
    SETS,
    SINGLE,
    AttributeNet,
    Outputs,
    attribute_loss,
    dense_labels,
    exact_match,
    window_labels,
    windows,
)
from dsa_core.world import heldout_seed, render_clip, sample_clip


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator(AttributeNet.shipped(), reference_clips=64)


@pytest.fixture(scope="module")
def real():
    return [render_clip(heldout_seed(200 + i)) for i in range(48)]


def test_windows_stay_inside_one_scene_and_follow_turns():
    clip = render_clip(heldout_seed(3))  # a cut at frame 41
    ws = windows(clip.attributes)
    cut = clip.attributes["events"][0]["frame"]
    assert all(s + n <= cut or s >= cut for s, n in ws) and any(s >= cut for s, _ in ws)
    turning = next(c for c in (render_clip(heldout_seed(i)) for i in range(40))
                   if any(e["type"] == "turn" for e in c.attributes["events"]))
    turn = next(e for e in turning.attributes["events"] if e["type"] == "turn")
    before = window_labels(turning.attributes, max(0, turn["frame"] - 30), 24)["motions"]
    after = window_labels(turning.attributes, turn["frame"], 24)["motions"]
    assert before != after


def test_background_colours_are_an_unordered_set():
    """A pattern's two colours are both named, in either order; a solid background's one."""
    seen = set()
    for i in range(40):
        attributes = sample_clip(heldout_seed(i)).attributes
        sc = attributes["scenes"][0]
        bg = sc["background"]
        labels = window_labels(attributes, sc["start"], 24)["bg_colors"]
        named = {c for c, on in zip(BG_SET["bg_colors"], labels) if on}
        assert named == {bg["color"], bg["color2"]} - {None}, (i, bg)
        swapped = {**attributes, "scenes": [{**sc, "background": {**bg, "color": bg["color2"], "color2": bg["color"]}}]}
        if bg["color2"] is not None:
            assert window_labels(swapped, sc["start"], 24)["bg_colors"] == labels
        seen.add(len(named))
    assert seen == {1, 2}


def test_dense_maps_agree_with_the_window_sets():
    """The dense targets name only what the window's sets hold, and nearly always all of it
    (an object still mostly outside the frame may cover no cell)."""
    same = total = 0
    for i in range(30):
        spec = sample_clip(heldout_seed(i))
        for start, length in windows(spec.attributes):
            labels, maps = window_labels(spec.attributes, start, length), dense_labels(spec, start, length)
            for k in SETS:
                seen = {int(v) - 1 for v in np.unique(maps[k]) if v > 0}
                wanted = {j for j, on in enumerate(labels[k]) if on}
                assert seen <= wanted, (i, start, k)
                same += seen == wanted
                total += 1
    assert same / total > 0.95, same / total


def test_one_object_cell_weighs_as_much_as_all_empty_ones():
    """A wrong object cell costs half its cross-entropy whatever the map's size."""
    def loss(size: int) -> float:
        logits = {k: torch.tensor([[20.0] + [0.0] * (len(v) - 1)]) for k, v in SINGLE.items()}
        labels = {k: torch.tensor([0]) for k in SINGLE}
        for k, v in BG_SET.items():  # every background colour surely absent, rightly
            logits[k], labels[k] = torch.full((1, len(v)), -20.0), torch.zeros(1, len(v), dtype=torch.long)
        dense, maps = {}, {}
        for k, v in SETS.items():
            d = torch.zeros(1, 1 + len(v), size, size)
            d[:, 0] = 20.0  # every cell says "no object", sure of it
            maps[k] = torch.zeros(1, size, size, dtype=torch.long)
            maps[k][0, 0, 0] = 1  # ...but one cell holds an object
            dense[k] = d
        return float(attribute_loss(Outputs(logits, torch.zeros(1, 1), torch.zeros(1, 1, 1), dense), labels, maps))

    assert loss(4) == pytest.approx(loss(16), rel=1e-4)
    assert loss(4) == pytest.approx(0.5 * 20.0 * len(SETS), rel=1e-3)  # CE of a confident miss ≈ 20


def test_metric_helpers_rank_the_obvious():
    rng = np.random.default_rng(0)
    still = np.full((20, 32, 32, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    assert flicker(still) == 0 and flicker(noise) > 0.2
    assert sharpness(still) == 0 and sharpness(noise) > sharpness(render_clip(heldout_seed(0)).frames)
    a = rng.normal(size=(300, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + 3) == pytest.approx(36, rel=0.05)


def test_blind_adherence_is_what_ignoring_the_prompt_scores():
    """One output for every window scores its blind level exactly; outputs that follow the
    labels score far above it."""
    g = torch.Generator().manual_seed(0)
    n = 60
    labels = {k: torch.randint(0, 4, (n,), generator=g) if k in SINGLE else (torch.rand(n, 6, generator=g) < 0.3).long()
              for k in ATTRIBUTES}
    constant = {k: v[:1].expand_as(v) for k, v in labels.items()}
    hits = exact_match(constant, labels)
    for k, blind in blind_adherence(constant, labels).items():
        assert blind == pytest.approx(float(hits[k].mean()), abs=1e-6), k
    for k, blind in blind_adherence(labels, labels).items():
        assert blind < 0.6, k


@pytest.mark.slow
def test_real_clips_beat_shuffled_prompts_and_noise(evaluator, real):
    """Real clips read right (≥ 95% of windows, averaged over attributes), and the ordering
    the metric must give."""
    rng = np.random.default_rng(0)
    attributes = [c.attributes for c in real]
    noise = [rng.integers(0, 256, c.frames.shape, dtype=np.uint8) for c in real]
    truth = evaluator.score([c.frames for c in real], attributes)
    shuffled = evaluator.score([c.frames for c in real], attributes[1:] + attributes[:1])
    noisy = evaluator.score(noise, attributes)
    print(truth["total_score"], shuffled["total_score"], noisy["total_score"])
    assert truth["adherence"] >= 0.95, truth["adherence_by_attribute"]
    assert noisy["total_score"] < 20
    assert shuffled["adherence"] < truth["adherence"] - 0.25
    blind, by = truth["blind_by_attribute"], truth["adherence_by_attribute"]
    assert all(blind[k] < by[k] for k in by), (blind, by)
    assert blind["shapes"] < by["shapes"] - 0.5
    assert shuffled["total_score"] < truth["total_score"] - 10 and noisy["total_score"] < shuffled["total_score"]
