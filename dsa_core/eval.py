"""Video quality on the procedural world: prompt adherence, temporal consistency, sharpness,
fidelity, and a 0–100 total score.

Every prompt the benchmark uses is a world caption, so what a video *should* show is known
exactly (the caption's attribute dictionary).  The metrics:

- **adherence** (per attribute and overall): the share of windows in which the attribute
  classifier (`dsa_core.evalnet`) reads from the video exactly what the caption says —
  background kind and colours, object count, and the sets of object colours, shapes and
  motions.  Windows follow the caption's scenes, so a cut is expected where it says.
  Beside it, **blind adherence** (`blind_adherence`): what a prompt-blind generator with the
  same outputs would score, the level above which an attribute's adherence is evidence.
- **temporal**: half frame-to-frame similarity of the classifier's per-frame features
  (relative to real clips, capped at 1), half flicker — the mean absolute second temporal
  difference of the pixels, which smooth motion keeps small — as real/generated, capped at 1.
- **sharpness**: the variance of the frames' Laplacian against real clips', as
  min(r, 1/r): blur and noise both lose.
- **fidelity**: exp(−FD / fd_scale), FD the Fréchet distance between the classifier's window
  features of the generated videos and of real held-out clips (a separate set from any prompt).

total = 100 × Σ weight · sub-score with `EvalConfig.weights` (adherence 0.5, temporal 0.15,
sharpness 0.15, fidelity 0.2): prompt adherence is what a text-to-video model is for, the rest
says whether it looks like the world.  Real clips score 84–90 (the fewer, the lower: a small
set's sharpness and Fréchet distance stray from the reference set's); noise scores near 0.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from torch.nn import functional as F

from .config import EVAL, EvalConfig
from .evalnet import ATTRIBUTES, AttributeNet, exact_match, predictions, to_input, window_frames, window_labels, windows
from .world import DEFAULT_CONFIG, WorldConfig, heldout_seed, render_clip, sample_clip

# Attributes a video should keep after its caption's clip has played (objects may leave,
# stop or turn, but nothing should change colour or shape): what long-video drift is judged on.
APPEARANCE = ("background", "bg_colors", "colors", "shapes")
REFERENCE_SEED0 = 100_000  # real reference clips: heldout_seed(REFERENCE_SEED0 + i), never a bench prompt

LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]


def flicker(video: np.ndarray) -> float:
    """Mean |x(t+1) − 2x(t) + x(t−1)| over pixels, in [0, 1] units."""
    x = torch.from_numpy(video).float() / 255.0
    return float((x[2:] - 2 * x[1:-1] + x[:-2]).abs().mean()) if len(x) >= 3 else 0.0


def sharpness(video: np.ndarray) -> float:
    """Mean over frames of the variance of the grey image's Laplacian."""
    grey = torch.from_numpy(video).float().mean(-1, keepdim=True).permute(0, 3, 1, 2) / 255.0
    return float(F.conv2d(grey, LAPLACIAN).var(dim=(1, 2, 3)).mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D]."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def caption_attributes(indices: range | tuple[int, ...], world: WorldConfig = DEFAULT_CONFIG) -> dict[str, dict]:
    """Captions of held-out world clips and what each one says (no rendering needed)."""
    clips = [sample_clip(heldout_seed(i), world) for i in indices]
    return {c.caption: c.attributes for c in clips}


def continuation(attributes: dict, num_frames: int) -> dict:
    """Attributes for a segment after the caption's clip: its last scene, held for `num_frames`."""
    last = attributes["scenes"][-1]
    objects = [{**o, "enter": None, "turn": None} for o in last["objects"]]
    scene = {**last, "start": 0, "end": num_frames, "objects": objects, "num_objects": len(objects)}
    return {**attributes, "scenes": [scene], "num_scenes": 1, "events": [], "num_frames": num_frames}


def blind_adherence(preds: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], permutations: int = 200,
                    seed: int = 0) -> dict[str, float]:
    """Per attribute, the adherence of these same classifier outputs against the windows'
    labels shuffled among them, averaged over `permutations` shuffles.

    Adherence alone overstates a generator that ignores part of the prompt: one that draws the
    same round blob for every shape scores the share of circles, not zero.  Its blind level is
    that share; only adherence above it says the prompt was followed.  It takes several
    prompts: windows of one prompt share its labels, and shuffling them changes nothing.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(next(iter(labels.values())))
    # Every shuffle at once: the outputs repeated, the labels gathered in each shuffle's order.
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(permutations)])
    hits = exact_match({k: v.repeat(permutations, *[1] * (v.dim() - 1)) for k, v in preds.items()},
                       {k: v[order] for k, v in labels.items()})
    return {k: float(hit.mean()) for k, hit in hits.items()}


class Evaluator:
    """Scores videos against their captions' attributes and against real clips."""

    def __init__(self, net: AttributeNet, cfg: EvalConfig = EVAL, reference_clips: int = 64,
                 batch: int = 64) -> None:
        self.net, self.cfg, self.batch = net.eval(), cfg, batch
        clips = [render_clip(heldout_seed(REFERENCE_SEED0 + i)) for i in range(reference_clips)]
        real = self.measure([c.frames for c in clips], [c.attributes for c in clips])
        self.reference = {k: real[k] for k in ("similarity", "flicker", "sharpness")}
        self.reference_features = real["features"]

    @torch.no_grad()
    def _windows(self, videos: list[np.ndarray], attributes: list[dict]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], np.ndarray]:
        """Classifier outputs for every window of every video, with the labels it should give."""
        items = [(v, w, window_labels(a, *w)) for v, a in zip(videos, attributes) for w in windows(a, self.cfg)
                 if w[0] + w[1] <= len(v)]
        if not items:
            raise ValueError("no window fits the videos: each must be at least as long as its caption's clip")
        preds, feats = {k: [] for k in ATTRIBUTES}, []
        for s in range(0, len(items), self.batch):
            part = items[s : s + self.batch]
            x = to_input(np.stack([window_frames(v, *w, self.cfg) for v, w, _ in part]))
            out = self.net(x)
            for k, p in predictions(out.logits).items():
                preds[k].append(p)
            feats.append(out.feature)
        labels = {k: torch.tensor([lab[k] for _, _, lab in items]) for k in ATTRIBUTES}
        return {k: torch.cat(v) for k, v in preds.items()}, labels, torch.cat(feats).numpy()

    @torch.no_grad()
    def _similarity(self, video: np.ndarray) -> float:
        """Mean cosine similarity of successive frames' classifier features."""
        f = self.net.frame_features(to_input(video)[None]).mean(dim=(3, 4))[0].T  # [T, C]
        return float(F.cosine_similarity(f[1:], f[:-1], dim=1).mean())

    def measure(self, videos: list[np.ndarray], attributes: list[dict]) -> dict:
        """Raw measurements: per-attribute adherence (and its blind level), similarity,
        flicker, sharpness, features."""
        preds, labels, feats = self._windows(videos, attributes)
        adherence = {k: float(hit.mean()) for k, hit in exact_match(preds, labels).items()}
        return {
            "adherence": adherence,
            "blind": blind_adherence(preds, labels),
            "similarity": float(np.mean([self._similarity(v) for v in videos])),
            "flicker": float(np.mean([flicker(v) for v in videos])),
            "sharpness": float(np.mean([sharpness(v) for v in videos])),
            "features": feats,
        }

    def score(self, videos: list[np.ndarray], attributes: list[dict], judged: tuple[str, ...] = ATTRIBUTES) -> dict:
        """Sub-scores in [0, 1], the 0–100 total, and the raw measurements behind them;
        adherence averages the `judged` attributes."""
        m, ref = self.measure(videos, attributes), self.reference
        fd = frechet_distance(m["features"], self.reference_features)
        r = m["sharpness"] / ref["sharpness"]
        subs = {
            "adherence": float(np.mean([m["adherence"][k] for k in judged])),
            "temporal": 0.5 * min(1.0, max(0.0, m["similarity"]) / ref["similarity"])
            + 0.5 * min(1.0, ref["flicker"] / max(m["flicker"], 1e-9)),
            "sharpness": min(r, 1 / r) if r > 0 else 0.0,
            "fidelity": float(np.exp(-fd / self.cfg.fd_scale)),
        }
        total = 100 * sum(w * subs[k] for k, w in self.cfg.weights)
        return {
            "total_score": total,
            **subs,
            "adherence_by_attribute": m["adherence"],
            "blind_by_attribute": m["blind"],
            "fd": fd,
            "flicker": m["flicker"],
            "similarity": m["similarity"],
            "sharpness_raw": m["sharpness"],
            "videos": len(videos),
        }

    def score_continuation(self, videos: list[np.ndarray], attributes: list[dict]) -> dict:
        """`score` for segments played after the caption's clip (long videos): the caption's
        last scene's appearance is what they are judged on."""
        return self.score(videos, [continuation(a, len(v)) for a, v in zip(attributes, videos)], APPEARANCE)
