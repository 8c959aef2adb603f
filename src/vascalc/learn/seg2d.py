"""Train, cross-validate and ensemble a 2-D segmentation U-Net (ResNet encoder), as in S4.

S4 (SCORING.md, study list): axial CTA slices, U-Net with a ResNet-34 encoder, loss
BCE + Jaccard (``BCE + (1 − soft IoU)``, D.1), Adam, k-fold cross-validation; Dice per slice
averaged over slices = 83.4 % in S4. Here:

* inputs are padded to a square with 0 (air after normalisation) and resized to ``size_px``;
  predictions are resized back and scored at the original resolution;
* augmentation (MONAI): small affine (±10°, ±10 % scale, ±5 % shift), elastic-like smooth
  deformation, intensity scale/shift/gamma, blur and noise; left-right flips are off by default
  because they move the aorta to the wrong side of the spine;
* each fold keeps its last-epoch weights (no early stopping on the validation fold, which is used
  only for reporting), with BatchNorm statistics recomputed over its training slices at the end
  (precise BN); the ensemble is the mean of the fold models' probabilities;
* determinism: ``torch.manual_seed``, numpy and MONAI seeds per fold and
  ``torch.use_deterministic_algorithms`` — the same data, config and seed give the same weights
  on the same machine and thread count, unless ``time_budget_s`` cuts training short.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vascalc.errors import InputError
from vascalc.learn._deps import deterministic, require_monai, require_torch
from vascalc.learn.data import SliceSet
from vascalc.learn.metrics import DiceScores, dice_scores
from vascalc.learn.models import NetworkSpec, build_network
from vascalc.learn.split import Fold, kfold_slices

#: S4's reported Dice (per-slice mean over its test slices), the figure the CV report is set beside.
S4_DICE = 0.834


@dataclass(frozen=True)
class Seg2DConfig:
    """Training settings. ``size_px``: square network input (a multiple of 32); ``learning_rate``: Adam step size;
    ``gap_slices``: slices left out of training each side of a contiguous validation block;
    ``time_budget_s``: optional wall-clock cap for the whole cross-validation (split evenly across
    folds; a fold stops after the epoch that passes its share)."""

    size_px: int = 256
    epochs: int = 40
    batch_size: int = 4
    learning_rate: float = 1e-3
    n_folds: int = 4
    gap_slices: int = 2
    seed: int = 0
    augment: bool = True
    flip_lr: bool = False
    threshold: float = 0.5
    label_name: str = "aorta"
    network: NetworkSpec = field(default_factory=NetworkSpec)
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        # the ResNet encoder halves the size five times; the U-Net decoder needs it to divide evenly
        if self.size_px < 32 or self.size_px % 32:
            raise InputError(f"the network input size must be a multiple of 32 pixels (e.g. 128, 160, 256), got {self.size_px}")
        if self.n_folds < 2 or self.epochs < 1 or self.batch_size < 1:
            raise InputError("folds must be ≥ 2 and epochs and batch size ≥ 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InputError(f"the learning rate must be a positive number (e.g. 1e-3), got {self.learning_rate}")
        if self.gap_slices < 0:
            raise InputError(f"the gap must be 0 or more slices, got {self.gap_slices}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise InputError(f"the time budget must be a positive number of seconds, got {self.time_budget_s}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["network"] = self.network.to_dict()
        return data


@dataclass(frozen=True)
class FoldResult:
    """One trained fold. ``dice`` is on its validation slices at the original resolution;
    ``loss_per_epoch``: mean training loss (BCE + 1 − soft IoU) of each epoch."""

    fold: Fold
    dice: DiceScores
    loss_per_epoch: tuple[float, ...]
    epochs_run: int
    train_seconds: float


def bce_jaccard_loss(logits, target, eps: float = 1e-6):
    """BCE-with-logits + (1 − soft IoU), IoU pooled over the batch (S4; SCORING.md D.1)."""
    torch = require_torch()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    intersection = (prob * target).sum()
    union = prob.sum() + target.sum() - intersection
    return bce + (1.0 - (intersection + eps) / (union + eps))


def to_network_input(images: np.ndarray, size_px: int):
    """``(n, h, w)`` [0, 1] images → float tensor ``(n, 1, size, size)``: zero-padded to a square
    (centred) then area-resized."""
    torch = require_torch()
    n, h, w = images.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = np.zeros((n, side, side), dtype=np.float32)
    square[:, top : top + h, left : left + w] = images
    tensor = torch.from_numpy(square)[:, None]
    if side != size_px:
        mode = "area" if side > size_px else "bilinear"
        tensor = torch.nn.functional.interpolate(tensor, size=(size_px, size_px), mode=mode,
                                                 **({} if mode == "area" else {"align_corners": False}))
    return tensor.contiguous()


def from_network_output(prob, shape_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`to_network_input` for probabilities ``(n, 1, s, s)`` → ``(n, h, w)`` float32."""
    torch = require_torch()
    h, w = shape_hw
    side = max(h, w)
    if prob.shape[-1] != side:
        prob = torch.nn.functional.interpolate(prob, size=(side, side), mode="bilinear", align_corners=False)
    top, left = (side - h) // 2, (side - w) // 2
    return prob[:, 0, top : top + h, left : left + w].numpy().astype(np.float32)


def _augmenter(config: Seg2DConfig, seed: int):
    require_monai()
    from monai.transforms import (
        Compose, Rand2DElasticd, RandAdjustContrastd, RandAffined, RandFlipd, RandGaussianNoised,
        RandGaussianSmoothd, RandScaleIntensityd, RandShiftIntensityd,
    )

    keys, modes = ("image", "mask"), ("bilinear", "nearest")
    size = config.size_px
    transforms = [
        RandAffined(keys=keys, prob=0.7, rotate_range=(np.pi / 18,), scale_range=(0.1, 0.1),
                    translate_range=(0.05 * size, 0.05 * size), mode=modes, padding_mode="zeros"),
        Rand2DElasticd(keys=keys, prob=0.3, spacing=(size // 6, size // 6), magnitude_range=(0.0, 2.0),
                       mode=modes, padding_mode="zeros"),
        RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
        RandShiftIntensityd(keys="image", offsets=0.05, prob=0.5),
        RandAdjustContrastd(keys="image", gamma=(0.8, 1.25), prob=0.3),
        RandGaussianSmoothd(keys="image", sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), prob=0.2),
        RandGaussianNoised(keys="image", std=0.02, prob=0.3),
    ]
    if config.flip_lr:
        transforms.insert(0, RandFlipd(keys=keys, prob=0.5, spatial_axis=1))
    compose = Compose(transforms)
    compose.set_random_state(seed=seed)
    return compose


def _init_output_bias(network, foreground_fraction: float) -> None:
    """Start the output at the foreground prior (logit of its pixel fraction) instead of 0.5: vessels
    are ~0.3 % of a slice, and a 0.5 start spends the first epochs only learning 'mostly background'
    (Lin et al. 2017, focal-loss paper, §3.3 'initialization')."""
    torch = require_torch()
    head = getattr(network, "segmentation_head", None)
    conv = head[0] if head is not None else None
    if conv is None or getattr(conv, "bias", None) is None:
        return
    p = min(max(foreground_fraction, 1e-4), 0.5)
    with torch.no_grad():
        conv.bias.fill_(float(np.log(p / (1.0 - p))))


def train_network(
    images,
    masks,
    config: Seg2DConfig,
    *,
    seed: int,
    deadline: float | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
):
    """Train one network on tensors ``(n, 1, s, s)``; returns ``(network, loss_per_epoch)``.

    The network is left in eval mode with recalibrated BatchNorm statistics. ``deadline`` (``time.monotonic()`` value) stops after the
    epoch that passes it.
    """
    torch = require_torch()
    with deterministic(seed):
        network = build_network(config.network)
        _init_output_bias(network, float(masks.float().mean()))
        optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
        augment = _augmenter(config, seed) if config.augment else None
        rng = np.random.default_rng(seed)
        n = len(images)
        losses: list[float] = []
        network.train()
        for epoch in range(config.epochs):
            order = rng.permutation(n)
            # a final batch of one would make BatchNorm statistics meaningless: fold it into the previous
            starts = list(range(0, n, config.batch_size))
            if len(starts) > 1 and n - starts[-1] == 1:
                starts.pop()
            epoch_loss, seen = 0.0, 0
            for i, start in enumerate(starts):
                stop = starts[i + 1] if i + 1 < len(starts) else n
                batch = order[start:stop]
                x, y = images[batch], masks[batch]
                if augment is not None:
                    pairs = [augment({"image": x[j], "mask": y[j]}) for j in range(len(batch))]
                    x = torch.stack([torch.as_tensor(p["image"]).float() for p in pairs])
                    y = torch.stack([torch.as_tensor(p["mask"]).float() for p in pairs])
                optimiser.zero_grad()
                loss = bce_jaccard_loss(network(x.as_subclass(torch.Tensor)), y.as_subclass(torch.Tensor))
                loss.backward()
                optimiser.step()
                epoch_loss += float(loss.detach()) * len(batch)
                seen += len(batch)
            losses.append(epoch_loss / seen)
            if on_epoch is not None:
                on_epoch(epoch, losses[-1])
            if deadline is not None and time.monotonic() > deadline:
                break
        _recalibrate_batchnorm(network, images, config.batch_size)
    return network, losses


def _recalibrate_batchnorm(network, images, batch_size: int) -> None:
    """Replace BatchNorm running statistics by their exact average over the (unaugmented) training
    images with the final weights ("precise BN", Wu & Johnson 2021): with few optimiser steps the
    exponential running averages still lag the weights, and eval-mode output would be off.
    Leaves the network in eval mode."""
    torch = require_torch()
    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    network.train()
    with torch.no_grad():
        for start in range(0, len(images), max(batch_size, 2)):
            network(images[start : start + max(batch_size, 2)].as_subclass(torch.Tensor))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    network.eval()


def predict_probabilities(networks: list, images: np.ndarray, size_px: int, batch_size: int = 8) -> np.ndarray:
    """Ensemble probability ``(n, h, w)``: mean over ``networks`` of the sigmoid output, each slice
    of ``images`` (``(n, h, w)`` in [0, 1]) resized to the network input and back."""
    torch = require_torch()
    out = np.zeros(images.shape, dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            x = to_network_input(chunk, size_px)
            probs = [torch.sigmoid(net(x)) for net in networks]
            out[start : start + len(chunk)] = from_network_output(torch.stack(probs).mean(dim=0), chunk.shape[1:])
    return out


def member_probabilities(networks: list, images: np.ndarray, size_px: int, batch_size: int = 8) -> np.ndarray:
    """Probabilities of every ensemble member separately: ``(n_members, n, h, w)``."""
    return np.stack([predict_probabilities([net], images, size_px, batch_size) for net in networks])


def cross_validate(
    slices: SliceSet,
    config: Seg2DConfig,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[list, list[FoldResult], np.ndarray]:
    """k-fold cross-validation (folds from :func:`vascalc.learn.split.kfold_slices`).

    Returns ``(networks, results, oof_probability)``: the trained fold networks (the ensemble),
    one :class:`FoldResult` each, and the out-of-fold probability of every slice ``(n, h, w)``
    (each slice predicted by the one model that did not train on it).
    """
    require_monai()
    if len(slices) < config.n_folds:
        raise InputError(f"{len(slices)} slices are too few for {config.n_folds}-fold cross-validation")
    if not slices.masks.any():
        raise InputError(f"all {len(slices)} masks are empty: there is nothing to learn; check the masks "
                         "(foreground = pixels > 0) or --mask-labels")
    folds = kfold_slices(slices.case_ids, slices.slice_index, config.n_folds, gap_slices=config.gap_slices, seed=config.seed)
    thin = next((f for f in folds if len(f.train) < 2), None)
    if thin is not None:
        # BatchNorm cannot train on a batch of one slice (one value per channel at the bottleneck)
        raise InputError(f"fold {thin.index + 1} of {len(folds)} would train on {len(thin.train)} slice; "
                         "give more slices, fewer folds or a smaller --gap")
    x_all = to_network_input(slices.images, config.size_px)
    y_all = (to_network_input(slices.masks.astype(np.float32), config.size_px) >= 0.5).float()
    start = time.monotonic()
    networks, results = [], []
    oof = np.zeros(slices.images.shape, dtype=np.float32)
    for fold in folds:
        deadline = None
        if config.time_budget_s is not None:
            deadline = start + config.time_budget_s * (fold.index + 1) / len(folds)
        t0 = time.monotonic()
        network, losses = train_network(
            x_all[fold.train], y_all[fold.train], config, seed=config.seed * 1000 + fold.index, deadline=deadline
        )
        seconds = time.monotonic() - t0
        prob = predict_probabilities([network], slices.images[fold.validation], config.size_px)
        oof[fold.validation] = prob
        scores = dice_scores(prob >= config.threshold, slices.masks[fold.validation])
        networks.append(network)
        results.append(FoldResult(fold=fold, dice=scores, loss_per_epoch=tuple(losses), epochs_run=len(losses), train_seconds=seconds))
        if on_progress is not None:
            on_progress(
                f"fold {fold.index + 1}/{len(folds)}: {len(losses)} epochs in {seconds:.0f} s, loss "
                f"{losses[0]:.3f} → {losses[-1]:.3f}, Dice per-slice mean {scores.per_slice_mean_dice:.3f}, "
                f"global {scores.global_dice:.3f}"
            )
    return networks, results, oof


def train_seg2d(
    slices: SliceSet,
    model_dir: str | Path,
    config: Seg2DConfig = Seg2DConfig(),
    *,
    description: str = "",
    on_progress: Callable[[str], None] | None = None,
) -> dict:
    """Cross-validate on ``slices``, save the fold ensemble to ``model_dir`` and write
    ``cv_report.json`` / ``cv_report.md`` there. Returns the report (a dict, as written to JSON)."""
    from vascalc.learn.store import save_ensemble, write_cv_report

    t0 = time.monotonic()
    networks, results, oof = cross_validate(slices, config, on_progress=on_progress)
    oof_scores = dice_scores(oof >= config.threshold, slices.masks)
    report = build_cv_report(slices, config, results, oof_scores, time.monotonic() - t0, description)
    save_ensemble(model_dir, networks, config, slices, report)
    write_cv_report(model_dir, report)
    return report


def build_cv_report(
    slices: SliceSet, config: Seg2DConfig, results: list[FoldResult], oof: DiceScores, seconds: float, description: str
) -> dict:
    """The cross-validation report as plain data (JSON-ready; no file or case names)."""
    per_slice = [r.dice.per_slice_mean_dice for r in results]
    global_ = [r.dice.global_dice for r in results]
    return {
        "description": description,
        "training_data": slices.describe(),
        "config": config.to_dict(),
        "split": results[0].fold.rule if results else None,
        "folds": [
            {
                **r.fold.describe(slices.slice_index),
                **r.dice.to_dict(),
                "epochs_run": r.epochs_run,
                "train_seconds": round(r.train_seconds, 1),
                "loss_first_epoch": r.loss_per_epoch[0],
                "loss_last_epoch": r.loss_per_epoch[-1],
            }
            for r in results
        ],
        "mean_over_folds": {
            "per_slice_mean_dice": float(np.nanmean(per_slice)),
            "global_dice": float(np.mean(global_)),
        },
        "out_of_fold_pooled": oof.to_dict(),
        "reference": {"study": "S4 (Bagheri Rajeoni et al., Diagnostics 2023)", "dice": S4_DICE,
                      "aggregation": "per_slice_mean"},
        "seconds_total": round(seconds, 1),
    }


__all__ = [
    "FoldResult", "S4_DICE", "Seg2DConfig", "bce_jaccard_loss", "build_cv_report", "cross_validate",
    "member_probabilities", "predict_probabilities", "to_network_input", "from_network_output",
    "train_network", "train_seg2d",
]
