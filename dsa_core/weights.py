"""Where a model family's weights come from, and proof that they are the files we shipped.

A local weights folder holds `transformer.safetensors`, `vae/` (diffusers format),
`text_encoder/` (transformers format, tokenizer included) and a `MANIFEST`: one
`sha256  relative/path` line per file and a `# command:` line saying what produced them.
Every file is hash-checked before anything is deserialised; only safetensors is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .config import Preset, get_preset
from .cpu import fit_threads
from .model import CausalWanModel
from .text import TextEncoder, make_tiny_text_encoder
from .vae import load_vae, make_vae

if TYPE_CHECKING:
    from .pipeline import StreamingPipeline

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "MANIFEST"
# The public checkpoints the wan-1.3b preset streams with.
SELF_FORCING_REPO, SELF_FORCING_FILE = "gdhe17/Self-Forcing", "checkpoints/self_forcing_dmd.pt"
WAN_DIFFUSERS_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
WAN_PARTS = ("text_encoder/*", "tokenizer/*", "vae/*")


def default_weights_dir(name: str) -> Path:
    """`weights/<name>` of the source tree, or the copy an installed package carries."""
    source = REPO_ROOT / "weights" / name
    packaged = Path(__file__).resolve().parent / "_weights" / name
    return packaged if not source.is_dir() and packaged.is_dir() else source


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path, command: str) -> Path:
    """Hash every file under `folder` (the manifest itself excepted)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    lines = [f"# command: {command}"] + [f"{sha256(p)}  {p.relative_to(folder).as_posix()}" for p in files]
    out = folder / MANIFEST
    out.write_text("\n".join(lines) + "\n")
    return out


def verify_manifest(folder: Path) -> list[Path]:
    """Check every listed file against its hash; return the files.  Raises naming the bad file."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} is missing: no verified weights in {folder}")
    files = []
    for line in manifest.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, rel = line.partition("  ")
        path = folder / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in {manifest} but missing")
        if sha256(path) != digest:
            raise ValueError(f"{path} does not match its sha256 in {manifest}: the file is corrupted or was changed")
        files.append(path)
    return files


def load_transformer(preset: Preset, path: Path, head_optional: bool = False) -> CausalWanModel:
    """A DiT from a safetensors file in Wan's names; `head_optional` for checkpoints without a
    confidence head (Wan's own teacher)."""
    model = CausalWanModel(preset.model)
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if head_optional:
        missing = [k for k in missing if not k.startswith("confidence_head.")]
    if missing or unexpected:
        first = (missing or unexpected)[0]
        kind = "missing" if missing else "unexpected"
        raise ValueError(f"{path}: {kind} key {first!r} ({len(missing)} missing, {len(unexpected)} unexpected)")
    return model


def shipped_students(folder: Path) -> dict[str, str]:
    """Student name → transformer file, as the folder's config.json lists them."""
    return json.loads((Path(folder) / "config.json").read_text()).get("students", {"dmd": "transformer.safetensors"})


def shipped_preset(preset: Preset, path: Path) -> Preset:
    """`preset` as the weights in `path` (their config.json) were trained: the architecture and
    resolution must match exactly; the sampling shift is the weights' own, as diffusers keeps
    a scheduler config beside each checkpoint, so a folder trained at another shift still
    samples on its own grid."""
    shipped = json.loads(path.read_text())
    expected = json.loads(json.dumps({
        "model": dataclasses.asdict(preset.model), "height": preset.sampling.height, "width": preset.sampling.width,
    }))
    for key in ("height", "width"):
        if shipped.get(key) != expected[key]:
            raise ValueError(f"{path}: {key}={shipped.get(key)} but preset {preset.name!r} has {expected[key]}")
    for key, value in expected["model"].items():
        if shipped["model"].get(key) != value:
            raise ValueError(
                f"{path}: model.{key}={shipped['model'].get(key)!r} but preset {preset.name!r} has {value!r}"
            )
    shift = shipped.get("shift")
    if not (isinstance(shift, (int, float)) and not isinstance(shift, bool) and shift > 0):
        raise ValueError(f"{path}: shift={shift!r} must be a positive number (the grid the weights were trained on)")
    return dataclasses.replace(preset, sampling=dataclasses.replace(preset.sampling, shift=float(shift)))


@dataclass
class WanSource:
    """Where the wan-1.3b files are on disk."""

    transformer: Path  # Self-Forcing's .pt (a dict with `generator_ema`, keys prefixed `model.`)
    diffusers: Path  # the Wan2.1 Diffusers repo: text_encoder/, tokenizer/, vae/


def resolve_wan(local_dir: str | Path | None = None, cache_dir: str | None = None,
                revision: str | None = None) -> WanSource:
    """Find the wan-1.3b files: in `local_dir` (laid out as `<repo id>/<file>`, e.g. after
    `huggingface-cli download REPO --local-dir DIR/REPO`), else through the Hub cache.
    `HF_HUB_OFFLINE=1` is honoured by huggingface_hub: only cached files are used."""
    if local_dir is not None:
        root = Path(local_dir)
        return WanSource(root / SELF_FORCING_REPO / SELF_FORCING_FILE, root / WAN_DIFFUSERS_REPO)
    from huggingface_hub import hf_hub_download, snapshot_download

    # `revision` pins the Self-Forcing checkpoint, the one file of the two that is re-released.
    pt = hf_hub_download(SELF_FORCING_REPO, SELF_FORCING_FILE, cache_dir=cache_dir, revision=revision)
    diffusers = snapshot_download(WAN_DIFFUSERS_REPO, allow_patterns=list(WAN_PARTS), cache_dir=cache_dir)
    return WanSource(Path(pt), Path(diffusers))


def load_self_forcing(preset: Preset, path: Path) -> tuple[CausalWanModel, bool]:
    """The causal generator from a Self-Forcing checkpoint; also says whether it has a DSA head.

    The file is a pickle container, so only `torch.load(weights_only=True)` reads it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (expected {SELF_FORCING_REPO}/{SELF_FORCING_FILE})")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "generator_ema" not in ckpt:
        entries = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: no 'generator_ema' entry (found {entries})")
    raw = ckpt["generator_ema"]
    unprefixed = [k for k in raw if not k.startswith("model.")]
    if unprefixed:
        raise ValueError(f"{path}: key {unprefixed[0]!r} lacks the 'model.' prefix of Self-Forcing checkpoints")
    state = {k.removeprefix("model."): v for k, v in raw.items()}
    model = CausalWanModel(preset.model)
    expected = model.state_dict()
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise ValueError(f"{path}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected in all)")
    missing = [k for k in expected if k not in state and not k.startswith("confidence_head.")]
    if missing:
        raise ValueError(f"{path}: missing key {missing[0]!r} ({len(missing)} missing in all)")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            want = tuple(expected[k].shape)
            raise ValueError(f"{path}: key {k!r} has shape {tuple(v.shape)}, the model expects {want}")
    model.load_state_dict(state, strict=False)
    return model, any(k.startswith("confidence_head.") for k in state)


def load_wan(preset: Preset, source: WanSource, device: torch.device, dtype: torch.dtype,
             low_memory: bool = False, head: Path | None = None) -> StreamingPipeline:
    """A `StreamingPipeline` on the public Self-Forcing generator, Wan's umT5 and Wan's VAE.

    `head`: a `confidence_head.safetensors` from `python -m dsa_core.train confidence-head
    --model wan-1.3b` (default: `weights/wan-1.3b/` when it exists) makes `adaptive` real.
    """
    from .pipeline import StreamingPipeline

    model, trained_head = load_self_forcing(preset, source.transformer)
    head = head if head is not None else default_weights_dir("wan-1.3b") / "confidence_head.safetensors"
    if head.is_file():
        model.load_state_dict(load_file(str(head)), strict=False)
        trained_head = True
    vae_dir = source.diffusers / "vae"
    if not vae_dir.is_dir():
        raise FileNotFoundError(f"{vae_dir} is missing (expected {WAN_DIFFUSERS_REPO}/vae)")
    vae = load_vae(vae_dir, preset, torch_dtype=torch.float32)
    text = TextEncoder.from_pretrained(source.diffusers, text_len=preset.model.text_len,
                                       dtype=dtype if device.type == "cuda" else torch.float32,
                                       local_files_only=True)
    model.to(device, dtype)
    vae.to(device)
    text.to("cpu" if low_memory else device)
    for module in (model, vae, text):
        module.eval().requires_grad_(False)
    return StreamingPipeline(preset, model, vae, text, device=device, dtype=dtype, trained_head=trained_head,
                             low_memory=low_memory)


def pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_components(
    name: str,
    *,
    weights_dir: str | Path | None = None,
    random_init: bool = False,
    device: str | torch.device | None = None,
    seed: int = 0,
    low_memory: bool = False,
    hub_cache_dir: str | None = None,
    hub_revision: str | None = None,
    student: str = "dmd",
) -> StreamingPipeline:
    """Build a `StreamingPipeline` for preset `name` from verified local weights, or random ones.

    For `wan-1.3b`, `weights_dir` is a local mirror of the Hub repos (else the Hub cache).
    `student` picks one of the trained students the folder ships (`shipped_students`).
    """
    from .pipeline import StreamingPipeline

    preset = get_preset(name)
    preset.validate()
    dev = pick_device(device)
    fit_threads()
    if name == "wan-1.3b":
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
        source = resolve_wan(weights_dir, cache_dir=hub_cache_dir, revision=hub_revision)
        return load_wan(preset, source, dev, dtype, low_memory=low_memory)
    if random_init:
        torch.manual_seed(seed)
        model = CausalWanModel(preset.model)
        vae = make_vae(preset.vae)
        text = make_tiny_text_encoder(preset.text_encoder, preset.model.text_len)
    else:
        folder = Path(weights_dir) if weights_dir is not None else default_weights_dir(name)
        try:
            verify_manifest(folder)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"{err}. Train the weights with `python -m dsa_core.train`, or pass --random-init "
                "to run the architecture with random weights."
            ) from None
        preset = shipped_preset(preset, folder / "config.json")
        students = shipped_students(folder)
        if student not in students:
            raise ValueError(f"student={student!r} is not shipped in {folder}; allowed: {', '.join(students)}")
        model = load_transformer(preset, folder / students[student])
        vae = load_vae(folder / "vae", preset, use_safetensors=True)
        text = TextEncoder.from_pretrained(
            folder / "text_encoder", text_len=preset.model.text_len, dtype=torch.float32, local_files_only=True
        )
    for module in (model, vae, text):
        module.to(dev).eval().requires_grad_(False)
    return StreamingPipeline(preset, model, vae, text, device=dev, dtype=torch.float32, random_init=random_init,
                             weights_dir=None if random_init else folder, student=student,
                             student_files={} if random_init else students)
