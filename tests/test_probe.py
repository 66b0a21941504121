"""The caption probe: a swap's share tells which caption words a denoiser reads."""

import json

import pytest
import torch

from dsa_core import probe
from dsa_core.config import TINY
from dsa_core.probe import CAPTION_PROBE_SIGMAS, SWAPS, caption_shares, probe_clips
from dsa_core.vae import make_vae
from dsa_core.world import COLORS, MOTIONS, SYNONYMS


@pytest.fixture(scope="module")
def clips():
    torch.manual_seed(0)
    return probe_clips(make_vae(TINY.vae), 4, 32, 32, 21)


def reads(attribute: str, names):
    """A fake denoiser whose x0 prediction is x_t shifted by an amount set by the `attribute`
    values the caption names (by meaning, not wording): it reads those words and nothing else."""
    def predict_x0(x_t, sigma, captions):
        out = x_t.clone()
        for i, caption in enumerate(captions):
            out[i] += 0.01 * sum(2 ** j for j, k in enumerate(names)
                                 if any(w in caption.lower() for w in SYNONYMS[attribute][k]))
        return out
    return predict_x0


def test_a_swap_moves_only_the_predictions_of_a_model_that_reads_that_word(clips):
    x0, captions = clips
    assert set(captions) == {"caption", "empty", *SWAPS} and all(len(v) == 4 for v in captions.values())
    for attribute, names, swap in (("motion", list(MOTIONS), "motion"), ("color", list(COLORS), "colour")):
        report = caption_shares(reads(attribute, names), x0, captions)
        assert report["clips"] == 4 and set(report["sigmas"]) == {str(s) for s in CAPTION_PROBE_SIGMAS}
        for row in report["sigmas"].values():
            assert row["caption_effect"] > 0
            assert row[swap] > 0.1, (attribute, row)
            assert all(row[k] == 0 for k in SWAPS if k != swap), (attribute, row)  # paraphrases mean the same


def test_a_model_that_ignores_its_caption_shares_nothing(clips):
    x0, captions = clips
    report = caption_shares(lambda x_t, sigma, caps: x_t * (1 - sigma), x0, captions)
    assert all(v == 0 for row in report["sigmas"].values() for v in row.values())


def test_probe_clips_are_one_object_held_out_clips_in_range():
    with pytest.raises(ValueError, match=r"clips=0 is outside the allowed range 1..64"):
        probe_clips(None, 0)


@pytest.mark.slow
def test_cli_probes_the_shipped_teacher(tmp_path, capsys):
    assert probe.main(["--clips", "2", "--json", str(tmp_path / "probe.json")]) == 0
    report = json.loads((tmp_path / "probe.json").read_text())["shipped"]
    effects = [report["sigmas"][str(s)]["caption_effect"] for s in CAPTION_PROBE_SIGMAS]
    # The noisier the clip, the more the caption must supply.
    assert effects == sorted(effects) and effects[0] > 0
    # The shipped teacher draws the caption's colours (the bench's adherence): their swap moves
    # its prediction well past rewording alone.
    mid = report["sigmas"]["0.85"]
    assert mid["colour"] > 2 * mid["paraphrase"], mid
    assert "| shipped | 0.85 |" in capsys.readouterr().out
