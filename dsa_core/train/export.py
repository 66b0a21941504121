"""`python -m dsa_core.train export`: assemble the trained stages into a shippable weights folder."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from ..weights import REPO_ROOT, write_manifest
from .common import Stage, load_config
from .dmd import DmdConfig

# Then asd / diagonal, for the students they ship.
RECIPE = ("vae", "vae-decoder", "text", "teacher", "ode", "dmd", "confidence-head", "evalnet")
# The students a weights folder may ship, by the stage that trains each, and their files.
STUDENTS = {"dmd": "transformer.safetensors", "asd": "transformer_asd.safetensors",
            "diagonal": "transformer_diagonal.safetensors"}


def save_half(source: Path, target: Path, replace: Path | None = None) -> None:
    """Half precision keeps the folder small; the models run in fp32 from it (a 5e-4 relative rounding).
    `replace`: a file of some of the tensors (the refined confidence head), taken instead of the source's."""
    tensors = load_file(str(source))
    if replace is not None:
        new = load_file(str(replace))
        wrong = [k for k, v in new.items() if k not in tensors or tensors[k].shape != v.shape]
        if wrong:
            raise ValueError(f"{replace}: {wrong[0]!r} is not a tensor of {source.name} with that shape")
        tensors.update(new)
    save_file({k: v.half().contiguous() for k, v in tensors.items()}, str(target))


def default_export_dir() -> Path:
    """`weights/tiny` of the source tree.  An installed package has none, and its own copy of
    the weights is not the place for a new model (an upgrade would overwrite it, or the
    shipped files would be lost), so there `--dest` is required."""
    weights = REPO_ROOT / "weights"
    if not weights.is_dir():
        raise ValueError("export needs --dest DIR here: dsa_core runs from an installed package, which has no "
                         "weights/ folder of a source tree to export into")
    return weights / "tiny"


def export(config: str | None, dest: str | None) -> Path:
    """Copy the students (EMA), VAE, text encoder, teacher and evaluation classifier into `dest`
    and hash them.  The DMD student, with the `confidence-head` stage's head, is required; the
    ASD and diagonal students ship when trained."""
    cfg = load_config(DmdConfig, config)
    dest = Path(dest) if dest else default_export_dir()
    sources = {
        "student": Stage.final_dir(cfg, "dmd") / "student.safetensors",
        "confidence head": Stage.final_dir(cfg, "confidence-head") / "confidence_head.safetensors",
        "teacher": Stage.final_dir(cfg, "teacher") / "teacher.safetensors",
        "text_encoder": Stage.final_dir(cfg, "teacher") / "text_encoder",
        "vae": Stage.final_dir(cfg, "vae-decoder"),  # the `vae` stage's encoder, the refined decoder
        "evalnet": Stage.final_dir(cfg, "evalnet"),
    }
    for name, path in sources.items():
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: train the {name} first (stages: {', '.join(RECIPE)})")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    students = {}
    for stage, file in STUDENTS.items():
        trained = Stage.final_dir(cfg, stage) / "student.safetensors"
        if trained.is_file():
            save_half(trained, tmp / file, sources["confidence head"] if stage == "dmd" else None)
            students[stage] = file
    save_half(sources["teacher"], tmp / "teacher.safetensors")  # serves calibration checks only
    shutil.copytree(sources["text_encoder"], tmp / "text_encoder")
    shutil.copytree(sources["vae"], tmp / "vae")
    shutil.copytree(sources["evalnet"], tmp / "evalnet")
    preset = cfg.preset()
    config = {"model": dataclasses.asdict(preset.model), "height": cfg.height, "width": cfg.width,
              "shift": preset.sampling.shift, "students": students}
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    stages = [*RECIPE, *(s for s in students if s != "dmd"), "export"]
    write_manifest(tmp, " && ".join(f"python -m dsa_core.train {s}" for s in stages))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    print(f"exported to {dest}")
    return dest
