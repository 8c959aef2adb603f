"""A small 3-D nnU-Net-style patch segmenter (MONAI ``DynUNet``, CPU), multi-class.

Recipe, after nnU-Net (Isensee et al., *Nat Methods* 2021) scaled down to a CPU budget:

* **resampling** of every case to one target spacing (``target_spacing_mm``): shrinking axes by
  the mean over each target voxel's footprint, growing axes trilinear; labels as one-hot
  fractions resampled the same way — a voxel is foreground when its foreground fraction reaches ``label_fraction``
  (default 5 %, so calcium smaller than a target voxel survives downsampling);
* **CT normalisation**: clip to ``clip_hu`` then z-score with the mean / SD of the clipped
  training voxels; both are stored with the model and reapplied at inference;
* **patches** of ``patch_size_vox``, a fraction ``foreground_probability`` of them centred (with
  jitter) on a voxel of a foreground class drawn uniformly among the classes present (nnU-Net's
  oversampling, raised from 0.33 because calcium is ~0.05 % of a heart crop);
* **loss**: batch soft Dice over the foreground classes + cross-entropy (:func:`dice_ce_loss`),
  optionally class-weighted (``ce_class_weights``); foreground labels may be grown by
  ``label_dilation_vox`` voxels so that objects of a few voxels still give a gradient, and the
  loss may be restricted to voxels at or above ``loss_region_hu`` (plus that halo) — an assigner
  is only asked about candidate voxels;
* **network**: ``monai.networks.nets.DynUNet``, 3-D, instance norm, leaky ReLU, stride-2 stages;
* **inference**: ``monai.inferers.sliding_window_inference`` with Gaussian blending, softmax,
  resampled back to the input grid;
* **optimiser**: Adam (nnU-Net uses SGD + Nesterov over 250 000 steps; a few hundred CPU steps
  need Adam's faster start);
* **augmentation**: intensity scale/shift only — no flips, because mirroring swaps the right and
  left coronary territories;
* **determinism**: numpy and torch seeds, ``torch.use_deterministic_algorithms``.

A model folder (``model.json`` + ``weights.pt``) follows the conventions of
:mod:`vascalc.learn.store` (state dict loaded with ``weights_only=True``; no file or case names).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np
from scipy import ndimage as ndi

from vascalc.errors import InputError
from vascalc.learn._deps import deterministic, require_monai, require_torch
from vascalc.learn.metrics import dice
from vascalc.learn.models import JsonSpec
from vascalc.learn.split import kfold_slices
from vascalc.learn.store import load_weights, new_model_folder, software_versions

FORMAT = "vascalc-seg3d"
FORMAT_VERSION = 1
METADATA_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
#: label of voxels left out of the loss (outside ``loss_region_hu``)
IGNORE_LABEL = 255


@dataclass(frozen=True)
class Seg3DNetworkSpec(JsonSpec):
    """``monai.networks.nets.DynUNet`` (3-D): one stage per entry of ``filters``, the first at
    stride 1 and the others at stride 2, 3×3×3 kernels, instance norm. A patch side must divide
    by 2^(len(filters) − 1)."""

    INT_TUPLES: ClassVar[tuple[str, ...]] = ("filters",)

    architecture: str = "monai.DynUNet"
    in_channels: int = 1
    out_channels: int = 2
    filters: tuple[int, ...] = (16, 32, 64, 128)

    @property
    def divisor_vox(self) -> int:
        return 2 ** (len(self.filters) - 1)


def build_network_3d(spec: Seg3DNetworkSpec):
    """A freshly initialised 3-D ``DynUNet`` (seed torch first to fix it)."""
    if spec.architecture != "monai.DynUNet":
        raise InputError(f"unknown 3-D architecture {spec.architecture!r}; this vascalc builds 'monai.DynUNet'")
    if len(spec.filters) < 3:
        raise InputError("a 3-D DynUNet needs at least three stages (filters)")
    require_monai()
    from monai.networks.nets import DynUNet

    n = len(spec.filters)
    strides = [1] + [2] * (n - 1)
    return DynUNet(spatial_dims=3, in_channels=spec.in_channels, out_channels=spec.out_channels,
                   kernel_size=[3] * n, strides=strides, upsample_kernel_size=strides[1:],
                   filters=list(spec.filters), norm_name=("INSTANCE", {"affine": True}), deep_supervision=False)


@dataclass(frozen=True)
class Seg3DConfig:
    """Training settings (module docstring). Spacings and patch sizes are (z, y, x); ``iterations``
    is the number of optimiser steps, ``time_budget_s`` an optional wall-clock cap on them;
    ``n_folds`` ≥ 2 holds out fold ``validation_fold`` of a by-case split
    (:func:`vascalc.learn.split.kfold_slices`) for reporting Dice, 0 trains on every case."""

    class_names: tuple[str, ...] = ("background", "foreground")
    target_spacing_mm: tuple[float, float, float] = (2.5, 2.0, 2.0)
    patch_size_vox: tuple[int, int, int] = (32, 64, 64)
    clip_hu: tuple[float, float] = (-250.0, 1250.0)
    label_fraction: float = 0.05
    label_dilation_vox: int = 0
    ce_class_weights: tuple[float, ...] | None = None
    loss_region_hu: float | None = None
    batch_size: int = 2
    iterations: int = 300
    learning_rate: float = 3e-3
    foreground_probability: float = 0.5
    intensity_augment: bool = True
    seed: int = 0
    n_folds: int = 0
    validation_fold: int = 0
    filters: tuple[int, ...] = (16, 32, 64, 128)
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        if len(self.class_names) < 2:
            raise InputError("a segmentation model needs a background and at least one foreground class")
        if len(self.filters) < 3:
            raise InputError(f"a 3-D DynUNet needs at least three stages (filters), got {self.filters}")
        div = self.network.divisor_vox
        if any(p < div or p % div for p in self.patch_size_vox):
            raise InputError(f"every patch side must be a multiple of {div} voxels, got {self.patch_size_vox}")
        if not self.clip_hu[1] > self.clip_hu[0]:
            raise InputError(f"clip_hu needs lo < hi, got {self.clip_hu}")
        if min(self.target_spacing_mm) <= 0:
            raise InputError("the target spacing must be positive (mm)")
        if self.iterations < 1 or self.batch_size < 1:
            raise InputError("iterations and batch size must be ≥ 1")
        if self.ce_class_weights is not None and (len(self.ce_class_weights) != len(self.class_names)
                                                  or min(self.ce_class_weights) <= 0):
            raise InputError("ce_class_weights needs one positive weight per class")
        if self.label_dilation_vox < 0:
            raise InputError("label_dilation_vox must be ≥ 0")
        if self.n_folds == 1 or self.n_folds < 0 or (self.n_folds and not 0 <= self.validation_fold < self.n_folds):
            raise InputError("n_folds is 0 (no validation) or ≥ 2, with 0 ≤ validation_fold < n_folds")

    @property
    def network(self) -> Seg3DNetworkSpec:
        return Seg3DNetworkSpec(out_channels=len(self.class_names), filters=self.filters)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "Seg3DConfig":
        known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in cls.__dataclass_fields__}
        if isinstance(known.get("clip_hu"), tuple):
            known["clip_hu"] = tuple(float(v) for v in known["clip_hu"])
        return cls(**known)


@dataclass(frozen=True)
class Normalisation:
    """CT normalisation: HU clipped to [``clip_low_hu``, ``clip_high_hu``], then (HU − mean) / SD."""

    clip_low_hu: float
    clip_high_hu: float
    mean_hu: float
    sd_hu: float

    def apply(self, hu: np.ndarray) -> np.ndarray:
        return ((np.clip(hu.astype(np.float32), self.clip_low_hu, self.clip_high_hu) - self.mean_hu)
                / self.sd_hu).astype(np.float32)

    @property
    def floor(self) -> float:
        """The normalised value of the lowest HU: padding outside the image."""
        return float((self.clip_low_hu - self.mean_hu) / self.sd_hu)


def fit_normalisation(images_hu: Sequence[np.ndarray], clip_hu: tuple[float, float]) -> Normalisation:
    """Mean and SD (HU) of all clipped training voxels (float64 sums, so the order of cases does not matter)."""
    total = count = square = 0.0
    for hu in images_hu:
        v = np.clip(hu.astype(np.float64), *clip_hu)
        total += v.sum()
        square += (v * v).sum()
        count += v.size
    if count == 0:
        raise InputError("no image voxels to fit the intensity normalisation on")
    mean = total / count
    sd = float(np.sqrt(max(square / count - mean * mean, 0.0)))
    return Normalisation(float(clip_hu[0]), float(clip_hu[1]), float(mean), max(sd, 1.0))


@dataclass(frozen=True, eq=False)
class Seg3DCase:
    """One training or evaluation volume: HU ``(z, y, x)``, integer labels (same shape, class
    indices of the config) or ``None``, voxel spacing (mm), and a group id for the split (never
    written to a model)."""

    image_hu: np.ndarray
    labels: np.ndarray | None
    spacing_mm: tuple[float, float, float]
    group: str = ""


def target_shape(shape: tuple[int, ...], spacing_mm: Sequence[float], target_mm: Sequence[float]) -> tuple[int, int, int]:
    """Voxel counts covering the same extent at the target spacing (at least 1 per axis)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing_mm, target_mm))


def _resize(array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Resize ``(C, z, y, x)`` to ``(C, *shape)``. Axes that shrink are averaged over each target
    voxel's footprint first (``adaptive_avg_pool3d``: exact area weights, so a label fraction is the
    share of the footprint it covers and noise averages as in a larger voxel); axes that grow are
    then interpolated trilinearly with voxel centres aligned (``align_corners=False``)."""
    torch = require_torch()
    if tuple(array.shape[1:]) == tuple(shape):
        return array.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    shrunk = tuple(min(n, m) for n, m in zip(array.shape[1:], shape))
    if shrunk != tuple(array.shape[1:]):
        t = torch.nn.functional.adaptive_avg_pool3d(t, shrunk)
    if shrunk != tuple(shape):
        t = torch.nn.functional.interpolate(t, size=tuple(shape), mode="trilinear", align_corners=False)
    return t[0].numpy()


def resample_labels(labels: np.ndarray, shape: tuple[int, int, int], n_classes: int, fraction: float) -> np.ndarray:
    """Labels → ``shape`` through one-hot fractions (:func:`_resize`): foreground where the
    foreground classes together cover at least ``fraction`` of the voxel, then the largest of them."""
    onehot = (labels[None] == np.arange(1, n_classes, dtype=labels.dtype)[:, None, None, None]).astype(np.float32)
    frac = _resize(onehot, shape)
    fg = frac.sum(axis=0) >= fraction
    return np.where(fg, 1 + np.argmax(frac, axis=0), 0).astype(np.uint8)


def prepare_case(case: Seg3DCase, config: Seg3DConfig, norm: Normalisation) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalised image ``(1, Z, Y, X)`` and labels ``(Z, Y, X)`` at the target spacing."""
    shape = target_shape(case.image_hu.shape, case.spacing_mm, config.target_spacing_mm)
    image = _resize(norm.apply(case.image_hu)[None], shape)
    labels = None if case.labels is None else resample_labels(case.labels, shape, len(config.class_names),
                                                              config.label_fraction)
    if labels is not None and config.label_dilation_vox > 0:
        # a halo around each foreground object: targets of a few voxels give Dice almost no gradient,
        # and a network that must label a calcification's surroundings learns where it lies
        grown = ndi.grey_dilation(labels, size=(2 * config.label_dilation_vox + 1,) * 3)
        labels = np.where(labels > 0, labels, grown).astype(np.uint8)
    if labels is not None and config.loss_region_hu is not None:
        # the loss only where the image reaches the threshold (plus the halo): an assigner is asked
        # about candidate voxels only, and the rest of the crop would drown them
        bright = _resize((case.image_hu >= config.loss_region_hu).astype(np.float32)[None], shape)[0] > 0
        if config.label_dilation_vox > 0:
            bright = ndi.binary_dilation(bright, iterations=config.label_dilation_vox)
        labels = np.where(bright | (labels > 0), labels, IGNORE_LABEL).astype(np.uint8)
    return image, labels


def _pad_to(image: np.ndarray, labels: np.ndarray, patch: Sequence[int], floor: float) -> tuple[np.ndarray, np.ndarray]:
    pad = [(0, max(0, p - n)) for p, n in zip(patch, labels.shape)]
    if not any(after for _, after in pad):
        return image, labels
    return (np.pad(image, [(0, 0), *pad], constant_values=floor), np.pad(labels, pad, constant_values=0))


def patch_start(shape: Sequence[int], patch: Sequence[int], rng: np.random.Generator, centre: np.ndarray | None) -> tuple[int, ...]:
    """Corner of a patch inside ``shape``: random, or containing ``centre`` at a random offset
    (nnU-Net places the chosen foreground voxel anywhere in the patch, not only at its middle)."""
    hi = np.array(shape) - np.array(patch)
    if centre is None:
        return tuple(int(rng.integers(0, h + 1)) for h in hi)
    offset = np.array([rng.integers(0, p) for p in patch])
    return tuple(int(v) for v in np.clip(centre - offset, 0, hi))


class _PatchSampler:
    """Foreground-biased patches from prepared cases (one index of each class's voxels per case)."""

    def __init__(self, prepared: list[tuple[np.ndarray, np.ndarray]], config: Seg3DConfig, floor: float, seed: int):
        self.items = [_pad_to(img, lab, config.patch_size_vox, floor) for img, lab in prepared]
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.where = [{k: np.flatnonzero(lab == k) for k in np.unique(lab) if 0 < k < IGNORE_LABEL}
                      for _, lab in self.items]

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        cfg, rng = self.config, self.rng
        xs, ys = [], []
        for _ in range(cfg.batch_size):
            i = int(rng.integers(len(self.items)))
            image, labels = self.items[i]
            centre = None
            if self.where[i] and rng.random() < cfg.foreground_probability:
                classes = sorted(self.where[i])
                voxels = self.where[i][classes[int(rng.integers(len(classes)))]]
                centre = np.array(np.unravel_index(voxels[int(rng.integers(voxels.size))], labels.shape))
            s = patch_start(labels.shape, cfg.patch_size_vox, rng, centre)
            sl = tuple(slice(a, a + p) for a, p in zip(s, cfg.patch_size_vox))
            x = image[(slice(None), *sl)]
            if cfg.intensity_augment:
                # ±10 % contrast and ±0.1 SD brightness: scanners and kernels differ by about that
                x = x * np.float32(rng.uniform(0.9, 1.1)) + np.float32(rng.uniform(-0.1, 0.1))
            xs.append(x)
            ys.append(labels[sl])
        return np.stack(xs).astype(np.float32), np.stack(ys)[:, None].astype(np.int64)


@dataclass(frozen=True, eq=False)
class Seg3DModel:
    """A trained (or loaded) 3-D segmenter: network in eval mode, config, normalisation, metadata."""

    network: object
    config: Seg3DConfig
    normalisation: Normalisation
    metadata: dict = field(default_factory=dict)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names


def dice_ce_loss(logits, target, weight=None, eps: float = 1e-5):
    """Batch soft Dice loss over the foreground classes (nnU-Net's batch Dice: intersections and
    sums pooled over the batch, so a patch without foreground still counts) + cross-entropy
    (optionally class-weighted). Voxels labelled :data:`IGNORE_LABEL` are left out of both; written
    here because MONAI's ``DiceLoss`` has no ignore label."""
    torch = require_torch()
    keep = target != IGNORE_LABEL
    safe = torch.where(keep, target, torch.zeros_like(target))
    prob = torch.softmax(logits, dim=1) * keep[:, None]
    onehot = torch.nn.functional.one_hot(safe, logits.shape[1]).movedim(-1, 1).to(prob.dtype) * keep[:, None]
    dims = (0, 2, 3, 4)
    inter = (prob * onehot).sum(dims)[1:]
    total = prob.sum(dims)[1:] + onehot.sum(dims)[1:]
    dice = 1.0 - ((2.0 * inter + eps) / (total + eps)).mean()
    ce = torch.nn.functional.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_LABEL)
    return dice + ce


def train_network_3d(prepared: list[tuple[np.ndarray, np.ndarray]], config: Seg3DConfig, floor: float,
                     on_progress: Callable[[str], None] | None = None) -> tuple[object, list[float], int]:
    """Train a fresh network on prepared cases; returns (network in eval mode, mean loss of each
    block of 10 steps, steps run)."""
    torch = require_torch()
    require_monai()
    start = time.monotonic()
    with deterministic(config.seed):
        network = build_network_3d(config.network)
        sampler = _PatchSampler(prepared, config, floor, config.seed)
        weight = None if config.ce_class_weights is None else torch.tensor(config.ce_class_weights, dtype=torch.float32)

        def loss_fn(logits, target):
            return dice_ce_loss(logits, target[:, 0], weight)
        optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
        network.train()
        losses, block, steps = [], [], 0
        for step in range(config.iterations):
            x, y = sampler.batch()
            optimiser.zero_grad()
            loss = loss_fn(network(torch.from_numpy(x)), torch.from_numpy(y))
            loss.backward()
            optimiser.step()
            block.append(float(loss.detach()))
            steps = step + 1
            if len(block) == 10 or steps == config.iterations:
                losses.append(float(np.mean(block)))
                block = []
                if on_progress is not None:
                    on_progress(f"step {steps}/{config.iterations}: loss {losses[-1]:.3f} "
                                f"({time.monotonic() - start:.0f} s)")
            if config.time_budget_s is not None and time.monotonic() - start > config.time_budget_s:
                break
        if block:
            losses.append(float(np.mean(block)))
        network.eval()
    return network, losses, steps


def predict_probabilities(model: Seg3DModel, image_hu: np.ndarray, spacing_mm: Sequence[float],
                          overlap: float = 0.25) -> np.ndarray:
    """Softmax ``(C, z, y, x)`` (float32, classes of the model) on the grid of ``image_hu``:
    normalise, resample to the model's spacing, sliding-window inference with Gaussian blending
    (padding = the clipped HU floor), softmax, trilinear back to the input grid."""
    torch = require_torch()
    require_monai()
    from monai.inferers import sliding_window_inference

    cfg = model.config
    shape = target_shape(image_hu.shape, spacing_mm, cfg.target_spacing_mm)
    x = _resize(model.normalisation.apply(image_hu)[None], shape)
    with torch.no_grad():
        logits = sliding_window_inference(torch.from_numpy(x)[None], roi_size=cfg.patch_size_vox, sw_batch_size=1,
                                          predictor=model.network, overlap=overlap, mode="gaussian",
                                          padding_mode="constant", cval=model.normalisation.floor)
        prob = torch.softmax(logits.as_subclass(torch.Tensor), dim=1)[0].numpy()
    prob = _resize(prob, tuple(image_hu.shape))
    # trilinear resizing keeps the sum at 1 up to rounding; renormalise so probabilities stay exact
    return (prob / np.maximum(prob.sum(axis=0, keepdims=True), 1e-6)).astype(np.float32)


def class_dice(prediction: np.ndarray, reference: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Dice per foreground class (1.0 when a class is absent from both)."""
    return {name: dice(prediction == k, reference == k) for k, name in enumerate(class_names) if k > 0}


def train_seg3d(cases: Sequence[Seg3DCase], config: Seg3DConfig = Seg3DConfig(), *,
                on_progress: Callable[[str], None] | None = None) -> tuple[Seg3DModel, dict]:
    """Fit normalisation and network on ``cases`` (minus the validation fold when ``n_folds`` ≥ 2).

    Returns (model, report): the report holds the loss curve (mean of each 10 steps), steps run,
    seconds, training counts and, with a validation fold, foreground Dice per class on its cases
    at their own resolution (on the voxels reaching ``loss_region_hu`` when that is set).
    """
    if not cases or any(c.labels is None for c in cases):
        raise InputError("training needs at least one case, each with labels")
    for c in cases:
        if c.labels.shape != c.image_hu.shape:
            raise InputError(f"labels {c.labels.shape} and image {c.image_hu.shape} differ in shape")
        if int(c.labels.max()) >= len(config.class_names):
            raise InputError(f"a label {int(c.labels.max())} exceeds the {len(config.class_names)} classes "
                             f"{', '.join(config.class_names)}")
    train_idx, val_idx = list(range(len(cases))), []
    if config.n_folds >= 2:
        groups = [c.group or str(i) for i, c in enumerate(cases)]
        folds = kfold_slices(groups, np.zeros(len(cases), dtype=int), config.n_folds, seed=config.seed)
        fold = folds[config.validation_fold]
        train_idx, val_idx = fold.train.tolist(), fold.validation.tolist()
    t0 = time.monotonic()
    train = [cases[i] for i in train_idx]
    norm = fit_normalisation([c.image_hu for c in train], config.clip_hu)
    prepared = [prepare_case(c, config, norm) for c in train]
    network, losses, steps = train_network_3d(prepared, config, norm.floor, on_progress)
    seconds = time.monotonic() - t0
    model = Seg3DModel(network=network, config=config, normalisation=norm)
    counts = np.bincount(np.concatenate([lab[lab < IGNORE_LABEL] for _, lab in prepared]),
                         minlength=len(config.class_names))
    report: dict = {
        "n_training_cases": len(train), "n_validation_cases": len(val_idx), "steps_run": steps,
        "train_seconds": seconds, "loss_per_10_steps": losses,
        "training_voxels_per_class": {n: int(v) for n, v in zip(config.class_names, counts)},
    }
    if val_idx:
        per_case = []
        for i in val_idx:
            prob = predict_probabilities(model, cases[i].image_hu, cases[i].spacing_mm)
            # a model trained on the loss region only is scored there too
            sel = np.ones(cases[i].labels.shape, bool) if config.loss_region_hu is None else \
                cases[i].image_hu >= config.loss_region_hu
            per_case.append(class_dice(np.argmax(prob, axis=0)[sel], cases[i].labels[sel], config.class_names))
        report["validation_dice"] = {name: float(np.mean([d[name] for d in per_case])) for name in per_case[0]}
    return Seg3DModel(network=network, config=config, normalisation=norm, metadata={"report": report}), report


def save_seg3d(model: Seg3DModel, model_dir: str | Path, *, description: str = "", extra: dict | None = None) -> Path:
    """Write ``weights.pt`` (state dict) and ``model.json`` into a new or empty ``model_dir``."""
    torch = require_torch()
    model_dir = new_model_folder(model_dir)
    torch.save({k: v.detach().cpu() for k, v in model.network.state_dict().items()}, model_dir / WEIGHTS_FILE)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "weights_file": WEIGHTS_FILE,
        "network": model.config.network.to_dict(), "config": model.config.to_dict(),
        "normalisation": asdict(model.normalisation), "class_names": list(model.config.class_names),
        "description": description, "report": model.metadata.get("report"), **(extra or {}),
        "software": software_versions(),
    }
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return model_dir


def read_seg3d_metadata(model_dir: str | Path) -> dict:
    """``model.json`` of a 3-D model folder; :class:`InputError` when missing or of another kind."""
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise InputError(f"{model_dir}: not a vascalc 3-D model folder (no {METADATA_FILE}); train one with "
                         "'vascalc train coronary-seg3d'")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: unreadable model metadata ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT or \
            int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        kind = metadata.get("format") if isinstance(metadata, dict) else None
        raise InputError(f"{path}: a {kind!r} model, not a vascalc 3-D segmentation model ({FORMAT} "
                         f"v{FORMAT_VERSION}); train one with 'vascalc train coronary-seg3d'")
    return metadata


def load_seg3d(model_dir: str | Path) -> Seg3DModel:
    """Load a model folder written by :func:`save_seg3d` (CPU, eval mode)."""

    metadata = read_seg3d_metadata(model_dir)
    try:
        config = Seg3DConfig.from_dict(metadata["config"])
        norm = Normalisation(**metadata["normalisation"])
    except (KeyError, TypeError) as error:
        raise InputError(f"{model_dir}: model.json lacks a valid config or normalisation ({error})") from None
    network = load_weights(build_network_3d(config.network), Path(model_dir) / metadata.get("weights_file", WEIGHTS_FILE))
    return Seg3DModel(network=network, config=config, normalisation=norm, metadata=metadata)
