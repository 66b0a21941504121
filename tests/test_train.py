"""Training stages on a toy config: 2 steps each, exact resume, distributed ranks, bad configs."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from safetensors.torch import load_file

from dsa_core.probe import CAPTION_PROBE_SIGMAS, SWAPS
from dsa_core.train import STAGES
from dsa_core.train.__main__ import main as train_main
from dsa_core.train.common import Run, load_config, run_stage, set_lr
from dsa_core.train.dmd import DmdStage
from dsa_core.train.export import export
from dsa_core.train.teacher import OBJECT_PROBE_SIGMAS, object_cell_errors
from dsa_core.weights import verify_manifest

TOY_MODEL = {"dim": 32, "num_heads": 2, "ffn_dim": 64, "num_layers": 2, "freq_dim": 32, "conf_hidden": 16}
TOY = {
    # The long-clip phase starts at step 1, so the resumed step is a long-clip one.
    "vae": {"clip_frames": 5, "long_clip_frames": 9, "long_from_step": 1, "stats_clips": 4, "batch_size": 2},
    # No warmup: the resume check runs it for one step, and a warmup must end inside the run.
    "vae-decoder": {"clip_frames": 5, "long_clip_frames": 9, "long_from_step": 1, "warmup_steps": 0},
    "text": {"captions": 300, "heldout_captions": 20},
    # Eager here: compiling costs more than the toy steps (test_compiled_teacher_matches_eager).
    "teacher": {"dataset_clips": 4, "short_dataset_clips": 4, "long_from_step": 1, "compile": False},
    "ode": {"trajectories": 4, "teacher_steps": 4},
    "dmd": {"critic_steps": 1, "captions": 50},
    "asd": {"critic_steps": 1, "captions": 50},
    "diagonal": {"critic_steps": 1, "captions": 50},
    # Step 0 is teacher forcing alone, step 1 DMD beside it: the resumed step crosses the phases.
    "forcing": {"critic_steps": 1, "captions": 50, "dataset_clips": 4, "simple_clips": 2, "forcing_steps": 1,
                "forcing_batch": 2},
    "confidence-head": {"captions": 50},
    "evalnet": {"clips": 4, "heldout_clips": 2, "channels": 8},
}


def toy_config(tmp_path, stage, **extra):
    data = {"out_dir": str(tmp_path / "run"), "height": 32, "width": 32, "latent_frames": 6, "steps": 2,
            "batch_size": 2, "ckpt_every": 1, "log_every": 1, "model": TOY_MODEL, **TOY[stage], **extra}
    path = tmp_path / f"{stage}.json"
    path.write_text(json.dumps(data))
    return path


def train(tmp_path, stage, resume=False, **extra):
    cfg = load_config(STAGES[stage].Config, toy_config(tmp_path, stage, **extra))
    return run_stage(STAGES[stage](cfg, Run()), resume=resume)


@pytest.mark.slow
def test_every_stage_trains_and_resumes_exactly(tmp_path, monkeypatch):
    stages = ("vae", "vae-decoder", "text", "teacher", "ode", "dmd", "asd", "diagonal", "forcing", "confidence-head",
              "evalnet")
    for stage in stages:
        uninterrupted = train(tmp_path, stage)
        assert [r["step"] for r in uninterrupted] == [0, 1]
        assert all(torch.isfinite(torch.tensor(v)) for r in uninterrupted for k, v in r.items())
        folder = tmp_path / "run" / stage
        assert (folder / "losses.png").stat().st_size > 0 and (folder / "final").is_dir()
        if stage == "teacher":
            # Step 0 trained on 9-frame clips (at the whole clips' speeds, the default), step 1 on
            # the full 21 frames: a cache for each.
            assert sorted(p.name.split("_", 1)[1] for p in (tmp_path / "run" / "latents").iterdir()) == [
                "4_21_attributes.pt", "4_9_speed81_attributes.pt"]
            # Held-out clips and the teacher's samples of their captions, row by row.
            shown = len(range(0, 1 + 4 * (6 - 1), 8))  # every 8th of the 21 frames of 6 latent frames
            cell = 2 * 32 + 2  # 32 px at scale 2, and the gap
            assert Image.open(folder / "samples.png").size == (2 + shown * cell, 2 + 2 * 4 * cell)
            probe = json.loads((folder / "object_errors.json").read_text())
            assert 0 < probe["object_cell_share"] < 1 and probe["no_objects"] > 0
            assert set(probe["sigmas"]) == {str(s) for s in OBJECT_PROBE_SIGMAS}
            # Which caption words the teacher reads (dsa_core.probe), per σ.
            words = json.loads((folder / "caption_probe.json").read_text())
            assert words["clips"] == 16 and set(words["sigmas"]) == {str(s) for s in CAPTION_PROBE_SIGMAS}
            assert all(set(row) == {"caption_effect", *SWAPS} and row["caption_effect"] > 0
                       for row in words["sigmas"].values())
        if stage == "forcing":
            # Teacher forcing alone, then DMD beside it, on full-world and one-object clips.
            assert set(uninterrupted[0]) == {"step", "forcing"} and {"dmd", "forcing"} <= set(uninterrupted[1])
            names = sorted(p.name.split("_", 1)[1] for p in (tmp_path / "run" / "latents").iterdir())
            assert "2_21_simple_attributes.pt" in names and "4_21_attributes.pt" in names
            # At the phase change DMD starts from the forcing phase's EMA with a fresh optimiser.
            forcing = STAGES[stage](load_config(STAGES[stage].Config, toy_config(tmp_path, stage)), Run())
            g = torch.Generator().manual_seed(0)
            forcing.train_step(0, g)
            seen = {}

            def dmd_step(self, step, g, seen=seen):
                pairs = zip(self.student.state_dict().values(), self.ema.state_dict().values())
                seen.update(student_is_ema=all(torch.equal(a, b) for a, b in pairs), adam_state=len(self.opt.state))
                return {}

            with monkeypatch.context() as m:
                m.setattr(DmdStage, "train_step", dmd_step)
                forcing.train_step(1, g)
            assert seen == {"student_is_ema": True, "adam_state": 0}
        if stage == "text":
            accuracy = json.loads((folder / "final" / "slot_accuracy.json").read_text())["heldout_slot_accuracy"]
            assert 0.0 <= accuracy <= 1.0
        # Again from scratch, stopped after one step, then resumed: the next loss is identical.
        shutil.rmtree(folder)
        train(tmp_path, stage, steps=1)
        resumed = train(tmp_path, stage, resume=True)
        assert resumed == uninterrupted[1:], stage
        logged = [json.loads(line)["step"] for line in (folder / "losses.jsonl").read_text().splitlines()]
        assert logged == [0, 1]
    # The head stage trains the head alone and exports only its weights.
    head = load_file(str(tmp_path / "run" / "confidence-head" / "final" / "confidence_head.safetensors"))
    student = load_file(str(tmp_path / "run" / "dmd" / "final" / "student.safetensors"))
    assert head and all(k.startswith("confidence_head.") for k in head)
    assert any(not torch.equal(v, student[k]) for k, v in head.items())
    # Export ships the DMD student with that head, every student in half precision, hash-listed.
    dest = export(str(toy_config(tmp_path, "dmd")), str(tmp_path / "weights"))
    verify_manifest(dest)
    shipped = load_file(str(dest / "transformer.safetensors"))
    assert set(shipped) == set(student)
    assert all(torch.equal(shipped[k], head.get(k, v).half()) for k, v in student.items())
    config = json.loads((dest / "config.json").read_text())
    assert config["students"] == {"dmd": "transformer.safetensors", "asd": "transformer_asd.safetensors",
                                  "diagonal": "transformer_diagonal.safetensors"}
    assert "train confidence-head && " in (dest / "MANIFEST").read_text().splitlines()[0]


@pytest.mark.slow
def test_rollout_and_distance_options_train_and_resume_exactly(tmp_path):
    """DMD's `exit_per_chunk` (each chunk ends at its own drawn depth) and the head stage's
    `fixed_distance = false` (d at one random level per sample) draw from the step's own
    randomness, so a resumed run gives the uninterrupted run's next loss; out-of-place uses are refused."""
    for stage in ("vae", "vae-decoder", "text", "teacher", "ode"):
        train(tmp_path, stage)
    for stage, option in (("dmd", {"exit_per_chunk": True}), ("confidence-head", {"fixed_distance": False})):
        uninterrupted = train(tmp_path, stage, **option)
        assert all(torch.isfinite(torch.tensor(v)) for r in uninterrupted for v in r.values())
        shutil.rmtree(tmp_path / "run" / stage)
        train(tmp_path, stage, steps=1, **option)
        assert train(tmp_path, stage, resume=True, **option) == uninterrupted[1:], stage
    with pytest.raises(ValueError, match="exit_per_chunk applies to the dmd stage only"):
        load_config(STAGES["asd"].Config, toy_config(tmp_path, "asd", exit_per_chunk=True))
    with pytest.raises(ValueError, match=r"config key 'fixed_distance' must be of type bool, got 'yes'"):
        load_config(STAGES["confidence-head"].Config, toy_config(tmp_path, "confidence-head", fixed_distance="yes"))


def test_forcing_config_names_its_allowed_ranges(tmp_path):
    config = STAGES["forcing"].Config
    with pytest.raises(ValueError, match=r"forcing_steps=3 must be in 0\.\.steps=2"):
        load_config(config, toy_config(tmp_path, "forcing", forcing_steps=3))
    with pytest.raises(ValueError, match="forcing_weight=-1.0 must be >= 0"):
        load_config(config, toy_config(tmp_path, "forcing", forcing_weight=-1.0))
    with pytest.raises(ValueError, match="forcing_batch=0 must be >= 1"):
        load_config(config, toy_config(tmp_path, "forcing", forcing_batch=0))
    assert load_config(config, toy_config(tmp_path, "forcing", forcing_steps=2)).forcing_steps == 2


@pytest.mark.slow
def test_compiled_teacher_matches_eager(tmp_path):
    """The recipe compiles the teacher's forward: an eager run's checkpoint, resumed compiled,
    gives the eager run's next loss and final weights."""
    train(tmp_path, "vae")
    train(tmp_path, "text")
    eager = train(tmp_path, "teacher")
    final = tmp_path / "run" / "teacher" / "final" / "teacher.safetensors"
    eager_weights = load_file(str(final))
    shutil.rmtree(tmp_path / "run" / "teacher")
    compiled = train(tmp_path, "teacher", steps=1)
    compiled += train(tmp_path, "teacher", compile=True, resume=True)
    assert [r["step"] for r in compiled] == [0, 1]
    for a, b in zip(eager, compiled):
        assert b["flow"] == pytest.approx(a["flow"], rel=1e-4)
    for k, v in load_file(str(final)).items():
        torch.testing.assert_close(v, eager_weights[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_teacher_warmup_reaches_its_optimizer(tmp_path):
    """`warmup_steps` scales the rates the teacher's first steps train with (the checkpoint
    after step 0 holds them): half the base rates at step 0 of a 2-step warmup."""
    train(tmp_path, "vae")
    train(tmp_path, "text")
    train(tmp_path, "teacher", steps=1, long_from_step=3, warmup_steps=2, lr=1e-3, text_lr=4e-4)
    state = torch.load(tmp_path / "run" / "teacher" / "checkpoint.pt", weights_only=True)
    rates = [g["lr"] for g in state["optimizers"]["adamw"]["param_groups"]]
    assert rates == pytest.approx([5e-4, 2e-4])


def test_existing_checkpoint_is_never_overwritten_without_resume(tmp_path):
    train(tmp_path, "vae", steps=1)
    before = (tmp_path / "run" / "vae" / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match="pass --resume"):
        train(tmp_path, "vae")
    assert (tmp_path / "run" / "vae" / "checkpoint.pt").read_bytes() == before


def test_resume_keeps_a_final_folder_that_has_no_checkpoint(tmp_path):
    """Copying finished weights into a stage's final folder and resuming the recipe must not
    train that stage again; without --resume it trains from scratch as asked."""
    train(tmp_path, "vae", steps=1)
    folder = tmp_path / "run" / "vae"
    (folder / "checkpoint.pt").unlink()
    before = {f.name: f.read_bytes() for f in (folder / "final").iterdir()}
    assert train(tmp_path, "vae", resume=True) == []
    assert {f.name: f.read_bytes() for f in (folder / "final").iterdir()} == before
    assert [r["step"] for r in train(tmp_path, "vae")] == [0, 1]


def test_resume_refuses_another_recipe_but_not_a_key_added_since(tmp_path):
    train(tmp_path, "vae", steps=1)
    ckpt = tmp_path / "run" / "vae" / "checkpoint.pt"
    with pytest.raises(ValueError, match="differs in: lr"):
        train(tmp_path, "vae", resume=True, lr=5e-4)
    state = torch.load(ckpt, weights_only=True)
    del state["config"]["kl_weight"]  # as if written before the key existed
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="differs in: kl_weight"):  # the default is the old behaviour
        train(tmp_path, "vae", resume=True, kl_weight=1e-3)
    assert [r["step"] for r in train(tmp_path, "vae", resume=True)] == [1]


def test_stage_needs_its_predecessor(tmp_path):
    for stage in ("vae-decoder", "teacher"):
        with pytest.raises(FileNotFoundError, match="run `python -m dsa_core.train vae` first"):
            train(tmp_path, stage)
    (tmp_path / "run" / "vae" / "final").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="run `python -m dsa_core.train text` first"):
        train(tmp_path, "teacher")


def test_decoder_stage_refines_the_decoder_alone(tmp_path):
    """`vae-decoder` keeps the encoder (and so every latent later stages learned on) bit for bit,
    with the latent statistics the DiT normalises by; it changes the decoder."""
    train(tmp_path, "vae")
    train(tmp_path, "vae-decoder", lr=1e-2)
    before = tmp_path / "run" / "vae" / "final"
    after = tmp_path / "run" / "vae-decoder" / "final"
    old = load_file(str(before / "diffusion_pytorch_model.safetensors"))
    new = load_file(str(after / "diffusion_pytorch_model.safetensors"))
    assert set(old) == set(new)
    frozen = [k for k in old if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(old[k], new[k]) for k in frozen)
    assert all(not torch.equal(old[k], new[k]) for k in new if k.startswith("decoder.") and k.endswith("weight"))
    old_config, new_config = (json.loads((f / "config.json").read_text()) for f in (before, after))
    for key in ("latents_mean", "latents_std"):
        assert new_config[key] == old_config[key]


def test_a_chain_trains_on_the_vae_its_config_names(tmp_path):
    """A config's `vae` overrides (AutoencoderKLWan arguments) reach every stage: the `vae`
    stage builds and exports that architecture, and a later stage given other settings refuses
    its folder by name instead of handing the DiT latents of the wrong size."""
    fine = {"dim_mult": [1, 2, 2], "temperal_downsample": [True, True]}
    train(tmp_path, "vae", vae=fine)
    cfg = load_config(STAGES["vae"].Config, toy_config(tmp_path, "vae", vae=fine))
    assert cfg.preset().vae_scale == 4 and cfg.preset().latent_size() == (8, 8)
    exported = json.loads((tmp_path / "run" / "vae" / "final" / "config.json").read_text())
    assert exported["dim_mult"] == [1, 2, 2] and exported["scale_factor_spatial"] == 4
    with pytest.raises(ValueError, match="downsamples frames 4×.*computes its latents at 8×"):
        train(tmp_path, "vae-decoder")
    train(tmp_path, "vae-decoder", vae=fine)
    # JSON has no tuples: a listed patch size is the tuple the model and the checks compare.
    patched = toy_config(tmp_path, "vae", model={**TOY_MODEL, "patch_size": [1, 4, 4]})
    patched = load_config(STAGES["vae"].Config, patched)
    assert patched.preset().model.patch_size == (1, 4, 4)


def test_cpu_decoder_config_keeps_the_recipe_shape():
    """`configs/vae-decoder-cpu.json` (the recipe on this CPU alone, README) loads, and like the
    default its cosine tail spans exactly the whole-clip phase, after its warmup."""
    root = Path(__file__).resolve().parent.parent
    default = STAGES["vae-decoder"].Config()
    cpu = load_config(STAGES["vae-decoder"].Config, str(root / "configs" / "vae-decoder-cpu.json"))
    for cfg in (default, cpu):
        assert round(cfg.decay_fraction * cfg.steps) == cfg.steps - cfg.long_from_step
        assert cfg.warmup_steps < cfg.long_from_step
    assert cpu.batch_size * 4 == default.batch_size and cpu.steps < default.steps


@pytest.mark.parametrize(
    "extra,match",
    [
        ({"hieght": 64}, "config key 'hieght' is unknown"),
        ({"steps": "ten"}, "config key 'steps' must be of type int"),
        ({"lr": True}, "config key 'lr' must be of type float"),
        ({"height": 40}, "height=40, width=32 must be multiples of 16 \\(the VAE downsamples 8×"),
        ({"height": 16}, "height=16, width=32: each must be at least 32"),
        ({"latent_frames": 7}, "latent_frames=7 must be a positive multiple of chunk_frames=3"),
        ({"model": {"dims": 3}}, "model.dims is not a ModelConfig field"),
        ({"vae": {"dim_mults": [1, 2]}}, "vae.dim_mults is not an AutoencoderKLWan argument"),
        ({"vae": {"dim_mult": [1, 2, 2], "temperal_downsample": [True, True]}, "height": 36},
         "height=36, width=32 must be multiples of 8 \\(the VAE downsamples 4×"),
        ({"model": {**TOY_MODEL, "num_heads": 5}}, "dim=32 must be divisible by num_heads=5"),
        ({"clip_frames": 6}, "clip_frames=6 must be 1 \\+ 4k"),
        ({"long_clip_frames": 3}, "long_clip_frames=3 must be 1 \\+ 4k"),
        ({"decay_fraction": 1.5}, "decay_fraction=1.5 must be in \\[0, 1\\]"),
        ({"long_batch_size": 0}, "long_batch_size=0 must be >= 1"),
        ({"long_lr": -1.0}, "long_lr=-1.0 must be a positive number"),
        ({"warmup_steps": 2}, "warmup_steps=2 must be in \\[0, 2\\)"),
    ],
)
def test_bad_config_is_refused_before_any_work(tmp_path, capsys, extra, match):
    rc = train_main(["vae", "--config", str(toy_config(tmp_path, "vae", **extra))])
    assert rc == 2
    assert re.search(match, capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"decay_fraction": 1.5}, "decay_fraction=1.5 must be in [0, 1]"),
        ({"short_decay_fraction": -0.1}, "short_decay_fraction=-0.1 must be in [0, 1]"),
        ({"short_latent_frames": 4}, "short_latent_frames=4 must be a positive multiple of chunk_frames=3"),
        ({"long_from_step": -1}, "long_from_step=-1 must be >= 0"),
        ({"short_dataset_clips": 0}, "short_dataset_clips=0 must be >= 1"),
        ({"object_weight": 0.5}, "object_weight=0.5 must be a number >= 1"),
        ({"short_object_weight": float("nan")}, "short_object_weight=nan must be a number >= 1"),
        ({"short_speed_frames": 1}, "short_speed_frames=1 must be 0 (the clip's own length) or >= 2"),
        ({"warmup_steps": 1}, "warmup_steps=1 must be in [0, 1) (the first phase's steps)"),
        ({"warmup_steps": -1, "long_from_step": 0}, "warmup_steps=-1 must be in [0, 2) (the first phase's steps)"),
    ],
)
def test_bad_teacher_curriculum_is_refused(tmp_path, capsys, extra, message):
    rc = train_main(["teacher", "--config", str(toy_config(tmp_path, "teacher", **extra))])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_learning_rate_is_stable_then_decays_to_zero():
    opt = torch.optim.SGD([{"params": [torch.zeros(1)]}, {"params": [torch.zeros(1)]}], lr=1.0)

    def rates(step, steps, fraction):
        set_lr(opt, [2e-4, 1e-3], step, steps, fraction)
        return [g["lr"] for g in opt.param_groups]

    assert rates(0, 6400, 0.35) == rates(4159, 6400, 0.35) == [2e-4, 1e-3]  # the stable phase
    mid = rates(4160 + 1120, 6400, 0.35)
    assert mid == pytest.approx([1e-4, 5e-4])  # half-way down the cosine
    assert rates(6399, 6400, 0.35)[0] < 1e-9
    # A longer run is the same run until its own tail starts.
    assert rates(3000, 6400, 0.35) == rates(3000, 10000, 0.35)
    assert rates(0, 100, 1.0) == [2e-4, 1e-3] and rates(50, 100, 1.0) == pytest.approx([1e-4, 5e-4])


def test_warmup_rises_linearly_then_leaves_the_schedule_as_it_was():
    opt = torch.optim.SGD([{"params": [torch.zeros(1)]}], lr=1.0)

    def rate(step, warmup, steps=1000, fraction=0.2):
        set_lr(opt, [2e-3], step, steps, fraction, warmup)
        return opt.param_groups[0]["lr"]

    assert rate(0, 200) == pytest.approx(1e-5) and rate(99, 200) == pytest.approx(1e-3)
    assert [rate(s, 200) for s in range(200)] == sorted(rate(s, 200) for s in range(200))  # rising
    for step in (199, 500, 850, 999):  # from its last step on, the schedule without warmup
        assert rate(step, 200) == rate(step, 0)
    # A warmup longer than the stable phase multiplies into the decay, never above it.
    assert 0 < rate(900, 950, fraction=0.5) < rate(900, 0, fraction=0.5)


def test_unknown_stage_and_missing_config_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["distill"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'distill'" in capsys.readouterr().err
    assert train_main(["vae", "--config", str(tmp_path / "nope.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _ddp_worker(rank: int, world: int, port: int, config: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    stage_cls = STAGES["vae"]
    run = Run.from_env()
    stage = stage_cls(load_config(stage_cls.Config, config), run)
    rows = run_stage(stage)
    flat = torch.cat([p.detach().reshape(-1) for p in stage.vae.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    torch.distributed.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"same": all(torch.equal(gathered[0], g) for g in gathered[1:]),
                    "moved": not torch.equal(gathered[0], torch.zeros_like(flat))}, out)
    with open(f"{out}.loss{rank}", "w") as f:
        json.dump(rows, f)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_cpu_ranks_hold_identical_weights(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_worker, args=(2, port, str(toy_config(tmp_path, "vae")), out), nprocs=2, join=True)
    result = torch.load(out, weights_only=True)
    assert result["same"] and result["moved"]
    losses = [json.loads(Path(f"{out}.loss{r}").read_text()) for r in range(2)]
    assert losses[0][0]["loss"] != losses[1][0]["loss"]  # each rank trained on its own clips


def test_caption_slots_follow_the_caption_word_order():
    """The text stage's targets: object k of scene s is the k-th noun phrase of that scene."""
    from dsa_core.train.text import BACKGROUND_FIELDS, MAX_OBJECTS, OBJECT_FIELDS, caption_slots, slot_classes
    from dsa_core.world import SYNONYMS, sample_clip
    from dsa_core.world.vocab import COLOR_NAMES, SHAPES, SIZES

    def alternation(table):
        return "|".join(re.escape(w) for ws in table.values() for w in sorted(ws, key=len, reverse=True))

    phrase = re.compile(rf"\b({alternation(SYNONYMS['size'])}) ({alternation(SYNONYMS['color'])}) "
                        rf"({alternation(SYNONYMS['shape'])})\b", re.IGNORECASE)
    canonical = {kind: {w.lower(): k for k, ws in SYNONYMS[kind].items() for w in ws} for kind in SYNONYMS}
    per_scene = len(BACKGROUND_FIELDS) + len(OBJECT_FIELDS) * MAX_OBJECTS
    assert len(slot_classes()) == 2 * per_scene
    for seed in range(300):
        spec = sample_clip(seed)
        slots = caption_slots(spec.attributes)
        assert len(slots) == len(slot_classes()) and all(0 <= s < n for s, n in zip(slots, slot_classes()))
        for s, text in enumerate(re.split(r"cuts to", spec.caption)):
            named = [(canonical["size"][a.lower()], canonical["color"][b.lower()], canonical["shape"][c.lower()])
                     for a, b, c in phrase.findall(text)]
            scene = slots[s * per_scene:(s + 1) * per_scene]
            objects = [scene[len(BACKGROUND_FIELDS) + 4 * k: len(BACKGROUND_FIELDS) + 4 * k + 4] for k in range(3)]
            expect = [(SIZES[sz], COLOR_NAMES[c], SHAPES[sh]) for c, sh, sz, _ in objects if c < len(COLOR_NAMES)]
            assert named == expect, spec.caption
            assert COLOR_NAMES[scene[1]] == spec.attributes["scenes"][s]["background"]["color"]
        assert len(spec.attributes["scenes"]) == 2 or slots[per_scene + 1] == len(COLOR_NAMES)  # no 2nd scene


@pytest.mark.slow
def test_text_stage_learns_to_read_captions(tmp_path):
    rows = train(tmp_path, "text", steps=40, batch_size=16, captions=200, log_every=10, ckpt_every=40)
    first, last = rows[0]["slots"], sum(r["slots"] for r in rows[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_object_probe_tells_a_denoiser_that_keeps_objects_from_one_that_drops_them():
    x0 = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(1))  # not the probe's noise seed
    mask = torch.zeros(2, 1, 3, 4, 4)
    mask[..., 1:3, 1:3] = 1.0
    x_empty = x0 * (1 - mask)  # the same clips with the object cells blanked

    def oracle(x_t, sigma):
        return x0

    def drops_objects(x_t, sigma):
        return x_empty

    def identity(x_t, sigma):  # predicts x0 = x_t: its error grows with the noise
        return x_t

    perfect = object_cell_errors(oracle, x0, x_empty, mask)
    assert perfect["object_cell_share"] == pytest.approx(0.25)
    assert all(v["objects"] == 0 and v["background"] == 0 for v in perfect["sigmas"].values())
    dropped = object_cell_errors(drops_objects, x0, x_empty, mask)
    assert all(v["objects"] == pytest.approx(dropped["no_objects"]) and v["background"] == 0
               for v in dropped["sigmas"].values())
    assert dropped["no_objects"] == pytest.approx(float((x0 ** 2 * mask).sum() / (4 * mask.sum())))
    noisy = [v["objects"] for v in object_cell_errors(identity, x0, x_empty, mask)["sigmas"].values()]
    assert noisy == sorted(noisy) and noisy[0] > 0


def test_object_probe_marks_the_cells_the_training_caches_mark():
    """The probe's mask is `data.object_cells`: a cell counts where any pixel frame its latent
    frame encodes shows an object, as the latent caches (and `object_weight`) count it."""
    from dsa_core.config import TINY
    from dsa_core.train.data import object_cells, world_config
    from dsa_core.train.teacher import object_probe_clips
    from dsa_core.vae import make_vae
    from dsa_core.world import heldout_seed, object_map, sample_clip

    torch.manual_seed(0)
    world = world_config(32, 32, 13)
    x0, x_empty, mask, captions = object_probe_clips(make_vae(TINY.vae), world, 3)
    assert mask.shape == (3, 1, *x0.shape[2:]) and x_empty.shape == x0.shape and len(captions) == 3
    specs = [sample_clip(heldout_seed(i), world) for i in range(3)]
    assert torch.equal(mask.bool()[:, 0], torch.from_numpy(np.stack([object_cells(s, TINY.vae_scale) for s in specs])))
    for spec, m in zip(specs, mask[:, 0].bool().numpy()):  # every pixel frame's objects are inside the mask
        for f in range(13):
            assert not ((object_map(spec, f, TINY.vae_scale) >= 0) & ~m[(f + 3) // 4]).any()
    assert 0 < float(mask.mean()) < 1


def test_latent_cache_is_the_same_whatever_the_worker_count(tmp_path):
    """Clips render in a process pool; the cache must still be a function of the seeds alone."""
    from dsa_core.config import TINY
    from dsa_core.train.data import LatentCache, world_config
    from dsa_core.vae import encode, make_vae, to_video_tensor
    from dsa_core.world import render_clip, train_seed

    torch.manual_seed(0)
    vae = make_vae(TINY.vae)
    world = world_config(32, 32, 5)
    side = 32 // TINY.vae_scale  # latent cells along each side
    for workers in (1, 2):
        LatentCache.build(tmp_path / f"{workers}.pt", vae, 11, world, workers=workers)  # 11: a partial last batch
    one, two = LatentCache.load(tmp_path / "1.pt"), LatentCache.load(tmp_path / "2.pt")
    assert one.captions == two.captions == [render_clip(train_seed(i), world).caption for i in range(11)]
    assert torch.equal(one.latents, two.latents) and one.latents.shape == (11, 16, 2, side, side)
    clip = to_video_tensor([render_clip(train_seed(10), world).frames])
    # Encoded in a batch of three there and alone here: batch-size-dependent CPU kernels may
    # round the float16 latents one last bit apart (seen on an AMD EPYC host), no more.
    torch.testing.assert_close(one.latents[10:].float(), encode(vae, clip).half().float(), rtol=2e-3, atol=1e-4)
    assert torch.equal(one.objects, two.objects) and one.objects.shape == (11, 1, 2, side, side)
    assert one.objects.any() and not one.objects.all()
    x0, captions, objects, attributes = one.batch(torch.Generator().manual_seed(0), 3)
    index = [one.captions.index(c) for c in captions]  # the batch's cells belong to its clips
    assert torch.equal(objects, one.objects[index]) and torch.equal(x0, one.latents[index].float())
    assert torch.equal(one.attributes, two.attributes) and one.attributes.shape == (11, 3, 2, side, side)
    assert torch.equal(attributes, one.attributes[index].long())
    # A cell named by an attribute shows an object: the middle frame's cells lie inside the union's.
    assert not ((one.attributes[:, 0] > 0) & ~one.objects[:, 0]).any() and (one.attributes > 0).any()


def test_object_cells_cover_every_frame_a_latent_frame_encodes():
    """Latent frame 0 encodes pixel frame 0, latent frame k the frames 4k−3 .. 4k: a cell shows
    an object if the object is there in any of them."""
    from dsa_core.train.data import object_cells, world_config
    from dsa_core.world import object_map, sample_clip, train_seed

    world = world_config(64, 64, 13)
    moved = 0
    for seed in range(6):
        spec = sample_clip(train_seed(seed), world)
        cells = object_cells(spec, 8)
        maps = [object_map(spec, f, 8) >= 0 for f in range(13)]
        assert cells.shape == (4, 8, 8) and cells.dtype == bool
        assert (cells[0] == maps[0]).all()
        for k in range(1, 4):
            group = maps[4 * k - 3: 4 * k + 1]
            assert (cells[k] == np.any(group, axis=0)).all()
            moved += any((m != group[-1]).any() for m in group)  # where the union differs from one frame
    assert moved > 0


def test_attribute_cells_name_the_object_each_cell_shows():
    """At the middle pixel frame a latent frame encodes, a cell's classes are those of the
    object `world.object_map` finds there, as the clip's attributes say (a turned object's new
    motion from its turn on), and 0 where it finds none."""
    from dsa_core.train.data import CELL_ATTRIBUTES, attribute_cells, world_config
    from dsa_core.world import object_map, sample_clip, scene_at, train_seed

    world = world_config(64, 64, 81)
    turned = 0
    for seed in range(40):
        spec = sample_clip(train_seed(seed), world)
        cells = attribute_cells(spec, 8)
        assert cells.shape == (3, 21, 8, 8) and cells.dtype == np.uint8
        for k, frame in enumerate([0] + [4 * k - 1 for k in range(1, 21)]):
            index = object_map(spec, frame, 8)
            assert ((cells[:, k] == 0) == (index < 0)).all()
            objects = scene_at(spec.attributes, frame)["objects"]
            for i in set(index[index >= 0].tolist()):
                o = objects[i]
                after_turn = o["turn"] is not None and frame >= o["turn"]["frame"]
                turned += after_turn
                names = (o["color"], o["shape"], o["turn"]["to"] if after_turn else o["motion"])
                expected = [1 + values.index(v) for values, v in zip(CELL_ATTRIBUTES.values(), names)]
                assert (cells[:, k][:, index == i] == np.array(expected)[:, None]).all()
    assert turned > 0


def test_attribute_readout_maps_each_token_to_the_cells_of_its_patch():
    """The readout lays a token's outputs over its patch's latent cells as the DiT's head lays
    out its flow (Wan's "fhwpqrc -> cfphqwr"), split into one block of classes per attribute."""
    from dsa_core.train.teacher import AttributeReadout

    readout = AttributeReadout(8, (1, 2, 2))
    classes = sum(readout.classes)
    readout.proj = torch.nn.Identity()  # the token's own values are its outputs
    frames, height, width = 3, 4, 6  # 3 × 2 × 3 tokens
    token = torch.arange(frames * 2 * 3).view(1, -1, 1)
    cell = torch.arange(4).view(1, 1, 4, 1)  # (row, column) within the patch: 2·row + column
    klass = torch.arange(classes).view(1, 1, 1, -1)
    tokens = (10000 * token[..., None] + 100 * cell + klass).float().flatten(2)
    logits = torch.cat(readout(tokens, frames, height, width), dim=1)
    assert [lg.shape[1] for lg in readout(tokens, frames, height, width)] == readout.classes
    f, y, x = torch.meshgrid(torch.arange(frames), torch.arange(height), torch.arange(width), indexing="ij")
    expected_token = (f * 2 + y // 2) * 3 + x // 2
    expected = 10000 * expected_token + 100 * (2 * (y % 2) + x % 2)
    for k in range(classes):
        assert torch.equal(logits[0, k], (expected + k).float())


def test_attribute_loss_falls_as_the_teacher_learns_a_batch(tmp_path):
    """The readout's cross-entropy trains the teacher: repeated on one batch (one step's
    clips, captions and noise), it falls; with `attribute_weight = 0` there is no readout."""
    from dsa_core.train.common import step_generator
    from dsa_core.train.teacher import TeacherConfig, TeacherStage

    train(tmp_path, "vae", steps=1)
    train(tmp_path, "text", steps=1)
    cfg = load_config(TeacherConfig, toy_config(tmp_path, "teacher", lr=3e-3))
    stage = TeacherStage(cfg, Run())
    losses = [stage.train_step(0, step_generator(cfg.seed, 0, 0))["attributes"] for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    off = TeacherStage(load_config(TeacherConfig, toy_config(tmp_path, "teacher", attribute_weight=0.0)), Run())
    assert "readout" not in off.modules() and set(off.train_step(0, step_generator(cfg.seed, 0, 0))) == {"flow"}
    with pytest.raises(ValueError, match=r"attribute_weight=-1.0 must be a number >= 0 \(0: off\)"):
        load_config(TeacherConfig, toy_config(tmp_path, "teacher", attribute_weight=-1.0))


def test_each_teacher_phase_weighs_objects_by_its_own_weight(tmp_path):
    from dsa_core.train.common import step_generator
    from dsa_core.train.teacher import TeacherConfig, TeacherStage

    train(tmp_path, "vae", steps=1)
    train(tmp_path, "text", steps=1)

    def first_losses(step, **extra):  # a fresh teacher's losses at `step`: 0 is a 9-frame step, 1 a whole-clip one
        cfg = load_config(TeacherConfig, toy_config(tmp_path, "teacher", **extra))
        return TeacherStage(cfg, Run()).train_step(step, step_generator(cfg.seed, step, 0))

    short, long = first_losses(0), first_losses(1)
    assert set(short) == set(long) == {"flow", "attributes"}
    assert first_losses(0, object_weight=4.0) == short
    assert first_losses(1, short_object_weight=4.0) == long
    for step, name, plain in ((0, "short_object_weight", short), (1, "object_weight", long)):
        weighted = first_losses(step, **{name: 4.0})
        # The same first step: the plain loss is logged as before, the weighted one beside it.
        assert weighted["flow"] == pytest.approx(plain["flow"]) and weighted["weighted_flow"] != weighted["flow"]


def test_short_speed_frames_slow_the_short_clips_alone(tmp_path):
    """`short_speed_frames` renders the 9-frame phase's clips at a longer clip's speeds: the
    same clips and captions, other latents, in a cache of their own; the whole clips are untouched."""
    from dsa_core.train.teacher import TeacherConfig, TeacherStage

    train(tmp_path, "vae", steps=1)
    train(tmp_path, "text", steps=1)
    own, slow = (TeacherStage(load_config(TeacherConfig, toy_config(tmp_path, "teacher", **extra)), Run()).data
                 for extra in ({"short_speed_frames": 0}, {"short_speed_frames": 81}))
    assert own["short"].captions == slow["short"].captions
    assert not torch.equal(own["short"].latents, slow["short"].latents)
    assert torch.equal(own["long"].latents, slow["long"].latents)
    assert len(list((tmp_path / "run" / "latents").glob("*_speed81_attributes.pt"))) == 1


def test_teacher_sample_from_a_noised_clip_starts_on_the_grid_and_keeps_what_the_model_keeps():
    from types import SimpleNamespace

    from dsa_core.scheduler import FlowMatchScheduler
    from dsa_core.train.teacher import grid_sigmas, grid_start, teacher_sample

    scheduler, steps = FlowMatchScheduler(2.0), 24
    x0 = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    calls = []

    def oracle(x_t, t, text, causal):  # the exact flow towards x0: (x_t − x0) / σ
        sigma = t[0, 0].item() / scheduler.num_train_timesteps
        calls.append(sigma)
        return SimpleNamespace(flow=(x_t - x0) / sigma)

    assert grid_start(scheduler, steps, 0.7) == max(s for s in grid_sigmas(scheduler, steps) if s <= 0.7)
    out, _ = teacher_sample(oracle, None, None, noise, scheduler, steps, 3.0, x0=x0, start_sigma=0.7)
    torch.testing.assert_close(out, x0)  # an exact model restores the clip from any level
    starts = [s for s in grid_sigmas(scheduler, steps)[:-1] if s <= 0.7]
    assert calls == pytest.approx([s for s in starts for _ in "cu"])  # two forwards (CFG) per step from there on
    plain, _ = teacher_sample(oracle, None, None, noise, scheduler, steps, 3.0)
    from_one, _ = teacher_sample(oracle, None, None, noise, scheduler, steps, 3.0, x0=x0, start_sigma=1.0)
    assert torch.equal(plain, from_one)
    with pytest.raises(ValueError, match="pass its latents as x0"):
        teacher_sample(oracle, None, None, noise, scheduler, steps, 3.0, start_sigma=0.5)
    with pytest.raises(ValueError, match=r"start_sigma=0 must be in \(0, 1\]"):
        teacher_sample(oracle, None, None, noise, scheduler, steps, 3.0, x0=x0, start_sigma=0)


def test_weighted_flow_loss_is_the_weighted_mean_of_the_squared_errors():
    from types import SimpleNamespace

    from dsa_core.scheduler import FlowMatchScheduler
    from dsa_core.train.teacher import add_random_noise, flow_loss

    scheduler = FlowMatchScheduler(2.0)
    x0 = torch.randn(2, 4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    predicts_zero = lambda x_t, t, text, causal, return_taps: SimpleNamespace(flow=torch.zeros_like(x_t))  # noqa: E731
    _, _, _, noise = add_random_noise(x0, torch.Generator().manual_seed(5), scheduler)
    err = scheduler.flow_target(x0, noise) ** 2
    mask = torch.zeros(2, 1, 3, 4, 4)
    mask[..., 1:3, 1:3] = 1.0

    def loss(weight):
        return flow_loss(predicts_zero, None, x0, torch.Generator().manual_seed(5), scheduler, weight=weight).item()

    assert loss(None) == pytest.approx(err.mean().item()) == pytest.approx(loss(torch.ones(1, 1, 1, 1, 1)))
    assert loss(mask) == pytest.approx(((err * mask).sum() / (mask.sum() * 4)).item())  # object cells alone
    weight = 1 + 3 * mask
    assert loss(weight) == pytest.approx(((err * weight).sum() / (weight.sum() * 4)).item())
    assert loss(mask) != pytest.approx(loss(None))


def test_ema_update_moves_each_parameter_towards_the_model_by_one_minus_decay():
    from dsa_core.train.common import ema_update

    torch.manual_seed(0)
    model, ema = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4)
    before = [p.detach().clone() for p in ema.parameters()]
    ema_update(ema, model, 0.9)
    for e, b, p in zip(ema.parameters(), before, model.parameters()):
        assert torch.equal(e, b.lerp(p.detach(), 0.1))
        assert torch.allclose(e, 0.9 * b + 0.1 * p.detach())


def test_ode_trajectories_killed_mid_way_continue_from_their_last_batch(tmp_path, monkeypatch):
    from dsa_core.train import ode

    for stage in ("vae", "text", "teacher"):
        train(tmp_path, stage, steps=1)
    cfg = load_config(ode.OdeConfig, toy_config(tmp_path, "ode", trajectories=20))  # batches of 8, 8 and 4
    real, calls = ode.teacher_sample, []

    def killed_at_the_third_batch(*args, **kwargs):
        calls.append(args[3].shape[0])
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ode, "teacher_sample", killed_at_the_third_batch)
    with pytest.raises(RuntimeError, match="killed"):
        ode.OdeStage(cfg, Run())
    folder = tmp_path / "run" / "ode_pairs"
    (partial,) = folder.glob("*.partial")
    assert [torch.load(partial / f"{n}.pt", weights_only=True)["states"].shape[0] for n in (0, 1)] == [8, 8]
    assert not (partial / "2.pt").exists()

    calls.clear()
    monkeypatch.setattr(ode, "teacher_sample", lambda *a, **k: (calls.append(a[3].shape[0]), real(*a, **k))[1])
    ode.OdeStage(cfg, Run())
    assert calls == [4] and not partial.exists()  # only the batch the kill lost
    (path,) = folder.glob("*.pt")
    resumed = torch.load(path, weights_only=True)
    path.unlink()
    ode.OdeStage(cfg, Run())  # uninterrupted
    fresh = torch.load(path, weights_only=True)
    assert resumed["captions"] == fresh["captions"] and len(fresh["captions"]) == 20
    assert torch.equal(resumed["states"], fresh["states"]) and torch.equal(resumed["x0"], fresh["x0"])


SIDE_BY_SIDE = Path(__file__).resolve().parents[1] / "scripts" / "teachers_side_by_side.sh"


def side_by_side(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SIDE_BY_SIDE), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable})


@pytest.mark.slow
def test_teachers_side_by_side_share_one_vae_text_encoder_and_cache(tmp_path):
    train(tmp_path, "vae")
    train(tmp_path, "text")
    base = tmp_path / "run"
    for d in "ab":
        (tmp_path / d).mkdir()
    slow = toy_config(tmp_path / "b", "teacher", out_dir=str(tmp_path / "b"), short_speed_frames=81)
    configs = [toy_config(tmp_path / "a", "teacher", out_dir=str(tmp_path / "a"), short_speed_frames=0), slow]
    done = side_by_side(base, *configs)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / d / "teacher" / "final") for d in "ab"]
    for d in "ab":
        assert (tmp_path / d / "teacher" / "final" / "teacher.safetensors").is_file()
        assert all((tmp_path / d / link).resolve() == base / link for link in ("vae", "text", "latents"))
        losses = (tmp_path / d / "teacher" / "losses.jsonl").read_text().splitlines()
        assert [json.loads(row)["step"] for row in losses] == [0, 1]
    # Built once: the whole clips and the 9-frame ones, and the slow run's own 9-frame clips.
    assert sorted(p.name.split("_", 1)[1] for p in (base / "latents").iterdir()) == [
        "4_21_attributes.pt", "4_9_attributes.pt", "4_9_speed81_attributes.pt"]
    # Run again: each run resumes from its checkpoint (no steps left) instead of refusing it.
    assert side_by_side(base, *configs).returncode == 0


def test_teachers_side_by_side_refuse_a_shared_out_dir_before_any_work(tmp_path):
    for stage in ("vae", "text"):
        (tmp_path / "run" / stage / "final").mkdir(parents=True)
    twice = toy_config(tmp_path, "teacher", out_dir=str(tmp_path / "a"))
    refused = side_by_side(tmp_path / "run", twice, twice)
    assert refused.returncode == 2 and "each run needs its own" in refused.stderr
    assert not (tmp_path / "a" / "teacher").exists()
    missing = side_by_side(tmp_path / "nothing", twice)
    assert missing.returncode == 2 and "vae/final is missing" in missing.stderr


MAPPINGS = """
import torch
from dsa_core.train.common import keep_freed_memory

def big_mappings():  # anonymous mappings of 64 MB or more, the heap aside (it grows in place)
    spans = [line.split()[0].split("-") for line in open("/proc/self/maps") if "[heap]" not in line]
    return {(a, b) for a, b in spans if int(b, 16) - int(a, 16) >= 2**26}

before = big_mappings()
x = torch.empty(2**24)
print(len(big_mappings() - before))
del x
print(keep_freed_memory())
before = big_mappings()
x = torch.empty(2**24)
print(len(big_mappings() - before))
"""


def test_training_keeps_freed_memory_instead_of_mapping_each_large_tensor():
    """By default glibc maps a 64 MB tensor on its own (and unmaps it when freed, so the next
    step faults its pages in again); after `keep_freed_memory` it comes from the reused heap."""
    assert sys.platform.startswith("linux"), "this project's training hosts are Linux with glibc"
    out = subprocess.run([sys.executable, "-c", MAPPINGS], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["1", "True", "0"], out.stdout
