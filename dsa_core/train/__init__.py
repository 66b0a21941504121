"""`python -m dsa_core.train <stage>`: the recipe that reproduces every weight of the tiny model.

Stages, in order: `vae` → `vae-decoder` (its decoder refined alone, the encoder frozen) →
`text` (umT5 encoder pretrained to read captions into attribute slots) → `teacher`
(bidirectional teacher, trained jointly with that encoder) → `ode` (CausVid init of the
causal student) → `dmd` (Self-Forcing DMD + DSA confidence loss) → `confidence-head` (the DSA
head alone refined on the frozen DMD student; for `--model wan-1.3b`, trained on the public
Self-Forcing generator) → `evalnet` (the attribute classifier of `dsa_core.eval`) → `export`
(assemble `weights/tiny` with its MANIFEST).
`asd` and `diagonal` continue from `dmd` with the training recipes of FFE (adversarial
self-distillation) and of diagonal denoising (diagonal forcing + motion matching).  `forcing`
continues from `dmd` with teacher forcing on real clips, so that a motion shown is carried on;
it is not in the shipped recipe yet.  Each stage resumes from its last checkpoint with
`--resume` and runs unchanged under `torchrun --nproc_per_node N`.
"""

from .asd import AsdStage
from .common import Stage
from .diagonal import DiagonalStage
from .dmd import DmdStage
from .evalnet import EvalnetStage
from .forcing import ForcingStage
from .head import HeadStage
from .ode import OdeStage
from .teacher import TeacherStage
from .text import TextStage
from .vae import VaeDecoderStage, VaeStage

STAGES: dict[str, type[Stage]] = {
    s.name: s
    for s in (VaeStage, VaeDecoderStage, TextStage, TeacherStage, OdeStage, DmdStage, HeadStage, AsdStage,
              DiagonalStage, ForcingStage, EvalnetStage)
}

__all__ = ["STAGES", "Stage"]
