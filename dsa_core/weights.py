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
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .config import Preset, get_preset
from .model import CausalWanModel
from .text import TextEncoder, make_tiny_text_encoder
from .vae import make_vae

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "MANIFEST"


def default_weights_dir(name: str) -> Path:
    return REPO_ROOT / "weights" / name


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


def load_transformer(preset: Preset, path: Path) -> CausalWanModel:
    model = CausalWanModel(preset.model)
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        kind = "missing" if missing else "unexpected"
        raise ValueError(f"{path}: {kind} key {first!r} ({len(missing)} missing, {len(unexpected)} unexpected)")
    return model


def check_config(preset: Preset, path: Path) -> None:
    """The shipped weights were trained for exactly this preset's architecture and resolution."""
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
):
    """Build a `StreamingPipeline` for preset `name` from verified local weights, or random ones."""
    from .pipeline import StreamingPipeline

    preset = get_preset(name)
    preset.validate()
    dev = pick_device(device)
    if name != "tiny":
        raise ValueError(f"model={name!r}: only the embedded 'tiny' model can be loaded by this version")
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
        check_config(preset, folder / "config.json")
        model = load_transformer(preset, folder / "transformer.safetensors")
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan.from_pretrained(folder / "vae", use_safetensors=True)
        text = TextEncoder.from_pretrained(
            folder / "text_encoder", text_len=preset.model.text_len, dtype=torch.float32, local_files_only=True
        )
    for module in (model, vae, text):
        module.to(dev).eval().requires_grad_(False)
    return StreamingPipeline(preset, model, vae, text, device=dev, dtype=torch.float32, random_init=random_init)
