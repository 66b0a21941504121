"""wan-1.3b loading code on tiny artifacts in the exact public on-disk formats.

The test writes a Self-Forcing-style `.pt` (a dict with `generator` and `generator_ema`,
Wan names prefixed `model.`), a diffusers-format `AutoencoderKLWan` folder and a
transformers-format umT5 `text_encoder/` + `tokenizer/`, laid out as the two Hub repos, and
loads them offline through the same functions the real preset uses.
"""

import dataclasses
import shutil
from contextlib import nullcontext

import pytest
import torch
from safetensors.torch import load_file, save_file

from dsa_core.config import TINY, WAN_1_3B
from dsa_core.model import CausalWanModel
from dsa_core.schedules import SCHEDULES
from dsa_core.text import make_tiny_text_encoder
from dsa_core.train import head as head_stage
from dsa_core.train.common import Run, run_stage
from dsa_core.train.head import WAN_TEACHER_FILE, WAN_TEACHER_REPO, HeadConfig, HeadStage
from dsa_core.vae import make_vae
from dsa_core.weights import SELF_FORCING_FILE, SELF_FORCING_REPO, WAN_DIFFUSERS_REPO, load_wan, resolve_wan

# The wan-1.3b preset's conventions at the tiny model's size.
SMALL = dataclasses.replace(WAN_1_3B, model=TINY.model, sampling=TINY.sampling, vae=TINY.vae)


def self_forcing_state(model: CausalWanModel) -> dict:
    return {f"model.{k}": v for k, v in model.state_dict().items() if not k.startswith("confidence_head.")}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    generator = CausalWanModel(SMALL.model)
    pt = root / SELF_FORCING_REPO / SELF_FORCING_FILE
    pt.parent.mkdir(parents=True)
    torch.save({"generator": self_forcing_state(CausalWanModel(SMALL.model)),
                "generator_ema": self_forcing_state(generator)}, pt)
    repo = root / WAN_DIFFUSERS_REPO
    make_vae(SMALL.vae).save_pretrained(repo / "vae")
    text = make_tiny_text_encoder(TINY.text_encoder, SMALL.model.text_len)
    text.model.save_pretrained(repo / "text_encoder")
    text.tokenizer.save_pretrained(repo / "tokenizer")
    return root, generator


def load(root):
    return load_wan(SMALL, resolve_wan(root), torch.device("cpu"), torch.float32)


def test_loads_the_ema_generator_and_streams_every_schedule(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, generator = hub
    pipe = load(root)
    for k, v in pipe.model.state_dict().items():
        if not k.startswith("confidence_head."):
            assert torch.equal(v, generator.state_dict()[k]), k
    assert not pipe.trained_head
    for name in SCHEDULES:
        with pytest.warns(UserWarning, match="runs as 'proxy'") if name == "adaptive" else nullcontext():
            gen = pipe.generate("a red ball", name, seconds=1, seed=0)
        events = list(gen)
        assert len(events) == 2 and events[0].frames.shape == (9, 64, 64, 3)
        assert gen.schedule.name == ("proxy" if name == "adaptive" else name)


def corrupt(root, tmp_path, edit):
    """A copy of the artifacts whose .pt has been changed by `edit(ckpt)`."""
    copy = tmp_path / "hub"
    shutil.copytree(root, copy)
    pt = copy / SELF_FORCING_REPO / SELF_FORCING_FILE
    ckpt = torch.load(pt, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, pt)
    return copy


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda c: c.pop("generator_ema"), r"self_forcing_dmd\.pt: no 'generator_ema' entry \(found \['generator'\]\)"),
        (lambda c: c["generator_ema"].update({"model.blocks.0.extra": torch.zeros(1)}),
         r"self_forcing_dmd\.pt: unexpected key 'blocks\.0\.extra'"),
        (lambda c: c["generator_ema"].pop("model.head.head.weight"),
         r"self_forcing_dmd\.pt: missing key 'head\.head\.weight'"),
        (lambda c: c["generator_ema"].update({"model.head.head.bias": torch.zeros(3)}),
         r"self_forcing_dmd\.pt: key 'head\.head\.bias' has shape \(3,\), the model expects \(64,\)"),
        (lambda c: c["generator_ema"].update({"head.head.bias": torch.zeros(64)}),
         r"self_forcing_dmd\.pt: key 'head\.head\.bias' lacks the 'model\.' prefix"),
    ],
)
def test_bad_checkpoint_names_the_file_and_first_key(hub, tmp_path, edit, match):
    with pytest.raises(ValueError, match=match):
        load(corrupt(hub[0], tmp_path, edit))


def test_missing_files_are_named(hub, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"self_forcing_dmd\.pt is missing"):
        load(tmp_path)
    copy = corrupt(hub[0], tmp_path, lambda c: None)
    shutil.rmtree(copy / WAN_DIFFUSERS_REPO / "vae")
    with pytest.raises(FileNotFoundError, match=r"Wan2\.1-T2V-1\.3B-Diffusers/vae is missing"):
        load(copy)


def test_a_trained_head_file_makes_adaptive_real(hub, tmp_path):
    torch.manual_seed(3)
    head = {f"confidence_head.{k}": v for k, v in CausalWanModel(SMALL.model).confidence_head.state_dict().items()}
    path = tmp_path / "confidence_head.safetensors"
    save_file(head, str(path))
    pipe = load_wan(SMALL, resolve_wan(hub[0]), torch.device("cpu"), torch.float32, head=path)
    assert pipe.trained_head
    assert torch.equal(pipe.model.confidence_head.value, head["confidence_head.value"])
    assert pipe.generate("a red ball", "adaptive", seconds=1, seed=0).schedule.name == "adaptive"


@pytest.mark.slow
def test_confidence_head_stage_trains_a_head_for_the_self_forcing_generator(hub, tmp_path, monkeypatch):
    """`python -m dsa_core.train confidence-head --model wan-1.3b` on the same artifacts plus a
    Wan-AI teacher file: only the head learns, and it lands in its own run folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(head_stage, "WAN_1_3B", SMALL)
    root = tmp_path / "hub"
    shutil.copytree(hub[0], root)
    torch.manual_seed(1)
    teacher = CausalWanModel(SMALL.model).state_dict()  # Wan's names, no head, as Wan-AI publishes it
    (root / WAN_TEACHER_REPO).mkdir(parents=True)
    save_file({k: v for k, v in teacher.items() if not k.startswith("confidence_head.")},
              str(root / WAN_TEACHER_REPO / WAN_TEACHER_FILE))
    assert HeadConfig(base="wan-1.3b").out_dir == "runs/wan-1.3b"
    cfg = HeadConfig(base="wan-1.3b", hub_dir=str(root), steps=2, batch_size=1, latent_frames=6, captions=20,
                     lr=1e-2, out_dir=str(tmp_path / "run"))
    cfg.validate()
    stage = HeadStage(cfg, Run())
    before = {k: v.clone() for k, v in stage.generator.state_dict().items()}
    run_stage(stage, resume=False)
    after = stage.generator.state_dict()
    for k, v in before.items():
        if not k.startswith("confidence_head."):
            assert torch.equal(after[k], v), f"{k} changed: the generator must stay frozen"
    head_file = tmp_path / "run" / "confidence-head" / "final" / "confidence_head.safetensors"
    exported = load_file(str(head_file))
    assert set(exported) == {k for k in before if k.startswith("confidence_head.")}
    assert any(not torch.equal(exported[k], before[k]) for k in exported), "the head did not learn"
    pipe = load_wan(SMALL, resolve_wan(root), torch.device("cpu"), torch.float32, head=head_file)
    assert pipe.trained_head
