"""Optional 3-D segmentation backend for coronary artery assignment (issue 8, item 3).

A 3-D U-Net (:mod:`vascalc.learn.seg3d`) labels every voxel of the heart crop as background,
RCA, LAD (with the left main) or LCX calcium. It is trained on chest phantoms whose labels are the
coronary calcium visible in the *noise-free image* of the same phantom
(:func:`vascalc.coronary.training.visible_calcium`, the benchmark's reference), cropped to the heart
region exactly as :func:`vascalc.workflows.coronary.score_coronary` crops it (built-in heart +
``search_margin_mm`` + 2 mm).

As an assigner (``score_coronary(..., model="seg3d:PATH")``, ``vascalc coronary score --model
seg3d:PATH``) it takes the candidate clusters of the scorer and gives each one by a vote of its
voxels' predicted classes (:func:`assign_from_probabilities`): coronary when at least
``min_coronary_fraction`` of its voxels are predicted as some artery, then the artery with most
predicted voxels; otherwise "not coronary". Its confidence is the mean softmax of the chosen class
over the lesion's voxels. PyTorch and MONAI are needed (``vascalc[learn]``); this module imports them
only inside the functions that run the network.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vascalc.coronary.heart import heart_crop_box
from vascalc.coronary.training import make_case, visible_calcium
from vascalc.errors import InputError
from vascalc.learn.seg3d import Seg3DCase, Seg3DConfig, Seg3DModel

#: classes of the network, in channel order (0 background, then the arteries as in ``coronary.assign.CLASSES``)
CLASS_NAMES = ("background", "rca", "lad", "lcx")
#: prefix of the ``model`` argument / ``--model`` option that selects this backend
MODEL_PREFIX = "seg3d:"


def coronary_seg3d_config(**overrides) -> Seg3DConfig:
    """Defaults for the heart crop [T]: 2.5 mm voxels (a 130 × 130 × 160 mm crop is ~52 × 52 × 64
    voxels), 16 × 48 × 48 patches (40 × 120 × 120 mm), five DynUNet stages of 8–128 filters,
    Adam at 1e-2; calcium labels grown by one voxel and weighted 10 × in the cross-entropy, and the
    loss restricted to voxels reaching 130 HU (plus that halo): the coronary calcium of a phantom is
    a few dozen voxels of a quarter million at this spacing, and an assigner is only asked about
    candidate voxels, so the network learns which artery — or bone, valve, noise — a bright voxel
    belongs to rather than where calcium is. Its output elsewhere is not a segmentation."""
    base = dict(class_names=CLASS_NAMES, target_spacing_mm=(2.5, 2.5, 2.5), patch_size_vox=(16, 48, 48),
                filters=(8, 16, 32, 64, 128), iterations=5000, learning_rate=1e-2, foreground_probability=0.5,
                batch_size=2, label_dilation_vox=1, ce_class_weights=(1.0, 10.0, 10.0, 10.0), loss_region_hu=130.0)
    base.update(overrides)
    return Seg3DConfig(**base)


def case_from_phantom(phantom, noise_free_hu: np.ndarray, heart_mask: np.ndarray | None = None,
                      margin_mm: float = 10.0, group: str = "") -> Seg3DCase:
    """A training case from a chest phantom and its noise-free image: the heart crop (HU) and labels
    0 background, 1 RCA, 2 LAD, 3 LCX = coronary calcium of the noise-free image
    (:func:`visible_calcium`). ``heart_mask`` ``None``: the built-in heart, as at inference."""
    grid = phantom.volume.grid
    spacing = tuple(float(s) for s in grid.spacing_mm)
    if heart_mask is None:
        from vascalc.coronary.heart import find_heart

        heart_mask = find_heart(phantom.volume, None, segmenter="builtin").mask
    box = heart_crop_box(heart_mask, spacing, margin_mm)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    pad, code, _, _ = visible_calcium(phantom, noise_free_hu)
    if pad is not None:
        labels[pad] = code
    return Seg3DCase(image_hu=phantom.volume.hu[box].astype(np.float32), labels=labels[box], spacing_mm=spacing,
                     group=group)


def phantom_case(seed: int, margin_mm: float = 10.0) -> Seg3DCase:
    """:func:`case_from_phantom` for the cohort phantom of ``seed`` (:func:`make_case`)."""
    clean = make_case(seed, noise_free=True)
    return case_from_phantom(make_case(seed), clean.volume.hu, None, margin_mm, str(seed))


def phantom_cases(seeds: Sequence[int], progress: Callable[[str], None] | None = None) -> list[Seg3DCase]:
    """:func:`phantom_case` for every seed."""
    out = []
    for i, seed in enumerate(seeds):
        if progress is not None:
            progress(f"phantom {i + 1}/{len(seeds)} (seed {seed})")
        out.append(phantom_case(int(seed)))
    return out


def train_coronary_seg3d(seeds: Sequence[int], model_dir: str | Path, config: Seg3DConfig | None = None, *,
                         description: str = "", progress: Callable[[str], None] | None = None,
                         cases: Sequence[Seg3DCase] | None = None) -> dict:
    """Train the 3-D segmenter on the chest phantoms ``seeds`` (or on given ``cases``) and save it
    to ``model_dir``. Returns the training report (loss curve, seconds, voxel counts; validation
    Dice when ``config.n_folds`` ≥ 2)."""
    from vascalc.learn.seg3d import save_seg3d, train_seg3d

    config = config or coronary_seg3d_config()
    if tuple(config.class_names) != CLASS_NAMES:
        raise InputError(f"the coronary backend needs the classes {', '.join(CLASS_NAMES)}")
    t0 = time.monotonic()
    cases = list(cases) if cases is not None else phantom_cases(seeds, progress)
    data_seconds = time.monotonic() - t0
    model, report = train_seg3d(cases, config, on_progress=progress)
    report["data_seconds"] = data_seconds
    seeds = [int(s) for s in seeds]
    extra = {"kind": "coronary-seg3d", "crop": "built-in heart region + 12 mm (score_coronary's crop)",
             "labels": "coronary calcium of the noise-free phantom image, by artery",
             "training_seeds": [min(seeds), max(seeds)] if seeds else None, "n_training_phantoms": len(seeds)}
    save_seg3d(model, model_dir, description=description, extra=extra)
    return report


def assign_from_probabilities(prob: np.ndarray, clusters: np.ndarray, n: int, min_coronary_fraction: float = 0.5
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster 1…n of ``clusters`` (same grid as ``prob``, ``(4, z, y, x)`` softmax):
    (mean probability per class ``(n, 4)``, class 0 none / 1 RCA / 2 LAD / 3 LCX, confidence).

    Each voxel votes for its most probable class. A cluster is coronary when the artery votes reach
    ``min_coronary_fraction`` of its voxels, and then goes to the artery with most votes (ties: the
    higher mean probability); confidence = mean probability of the chosen class (of background when
    rejected) over the cluster's voxels.
    """
    if not 0.0 < min_coronary_fraction <= 1.0:
        raise InputError("min_coronary_fraction must lie in (0, 1]")
    z, y, x = np.nonzero(clusters)
    c = clusters[z, y, x].astype(np.int64)
    k = prob.shape[0]
    p = prob[:, z, y, x].astype(np.float64)
    size = np.maximum(np.bincount(c, minlength=n + 1)[1:], 1).astype(np.float64)
    mean = np.stack([np.bincount(c, weights=p[j], minlength=n + 1)[1:] for j in range(k)], axis=1) / size[:, None]
    votes = np.zeros((n + 1, k))
    np.add.at(votes, (c, np.argmax(p, axis=0)), 1.0)
    votes = votes[1:]
    # the small mean-probability term only breaks ties between equal vote counts
    artery = 1 + np.argmax(votes[:, 1:] + 1e-6 * mean[:, 1:], axis=1)
    coronary = votes[:, 1:].sum(axis=1) >= min_coronary_fraction * size
    cls = np.where(coronary, artery, 0).astype(np.int64)
    conf = mean[np.arange(n), cls]
    return mean, cls, conf


@dataclass(frozen=True, eq=False)
class Seg3DAssigner:
    """The 3-D backend as a lesion assigner for :func:`score_coronary` (``method = "seg3d"``)."""

    model: Seg3DModel
    min_coronary_fraction: float = 0.5

    method = "seg3d"

    @property
    def info(self) -> dict:
        """What ``result.json`` records under ``method.model`` (no case or file names)."""
        meta = self.model.metadata
        report = meta.get("report") or {}
        return {"kind": "seg3d (MONAI DynUNet, 3-D)", "description": meta.get("description", ""),
                "training_seeds": meta.get("training_seeds"), "n_training_phantoms": meta.get("n_training_phantoms"),
                "steps_run": report.get("steps_run"), "target_spacing_mm": list(self.model.config.target_spacing_mm),
                "min_coronary_fraction": self.min_coronary_fraction,
                "rule": "coronary when ≥ min_coronary_fraction of the lesion's voxels are predicted as an artery; "
                        "artery with most predicted voxels; confidence = mean softmax of that class"}

    def probabilities(self, hu_crop: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
        """Softmax ``(4, z, y, x)`` on the crop."""
        from vascalc.learn.seg3d import predict_probabilities

        return predict_probabilities(self.model, hu_crop, spacing_mm)

    def assign(self, hu_crop: np.ndarray, spacing_mm: Sequence[float], clusters: np.ndarray, n: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean class probabilities ``(n, 4)``, class, confidence) of clusters 1…n on the crop."""
        if n == 0:
            return np.zeros((0, len(CLASS_NAMES))), np.zeros(0, dtype=np.int64), np.zeros(0)
        # the whole heart crop, as in training: the artery is read from the lesion's place in the heart
        prob = self.probabilities(hu_crop, spacing_mm)
        return assign_from_probabilities(prob, clusters, n, self.min_coronary_fraction)


def load_seg3d_assigner(path: str | Path, min_coronary_fraction: float = 0.5) -> Seg3DAssigner:
    """Load a model folder from ``vascalc train coronary-seg3d`` (``path`` may carry the ``seg3d:``
    prefix); :class:`InputError` when it is missing or not such a model."""
    from vascalc.learn.seg3d import load_seg3d

    text = str(path)
    if text.startswith(MODEL_PREFIX):
        text = text[len(MODEL_PREFIX):]
    if not text or not Path(text).is_dir():
        raise InputError(f"3-D coronary model folder not found: {text or '(empty)'}; give seg3d:FOLDER written by "
                         "'vascalc train coronary-seg3d'")
    model = load_seg3d(text)
    if tuple(model.class_names) != CLASS_NAMES:
        raise InputError(f"{text}: a 3-D model of classes {', '.join(model.class_names)}, not the coronary "
                         f"arteries ({', '.join(CLASS_NAMES)})")
    return Seg3DAssigner(model=model, min_coronary_fraction=min_coronary_fraction)
