"""Learned AAC-24 graders for lateral radiographs, trained on projected phantoms (SCORING.md B).

Two models, both fed from the spine-aligned frame of :mod:`vascalc.radiograph.kauppila` (so that
tilt and facing direction are removed before the network sees the image):

* **per-segment ordinal grader** — for each of the 8 wall segments a patch is resampled on a
  (t, d) grid: t over the Kauppila level (``boundaries_mm[k] … [k+1]``), d = distance in front of
  the anterior vertebral border over ``band_mm``. Anterior-wall patches are mirrored along d, so the
  wall to grade always lies on the same side and one network serves both walls. A small MONAI
  ``ResNet`` (``pretrained=False``) gives one score g(x); a CORAL head (Cao, Mirjalili & Raschka
  2020, *Pattern Recognit. Lett.* 140:325) turns it into K−1 = 3 logits g(x) + b_k with one shared
  weight vector and biases kept ordered by construction (b_{k+1} = b_k − softplus(δ_k)), so
  P(grade > k) never increases with k (rank consistency). Grade = #{k : P(grade > k) > 0.5};
  AAC-24 = sum of the 8 grades (B.1). At inference P is averaged over the folds and, by default,
  over deterministic perturbations of each patch (test-time augmentation, :func:`tta_probabilities`,
  :data:`DEFAULT_TTA`, chosen on validation films by :func:`validate_grader_tta`).
* **whole-score regressor** — the straightened band over all four levels → AAC-24 in [0, 24]
  (sigmoid × 24), as study S1 regressed the total score.

Training films come from :func:`vascalc.phantoms.lateral_spine.make_lateral_spine` (analytic
projections of a varied 3-D lumbar scene, radiograph chain at 0.4–0.9 mm pixels); held-out sets
add settings never seen in training (0.15–0.3 mm pixels, the DXA-VFA chain, and the 3-D vascular
phantom's DRR, :func:`phantom_drr_case`). Folds split by image; the ensemble is the mean of the
fold models' probabilities (grader) or scores (regressor). Labelled folders of real films:
:mod:`vascalc.learn.aac_data`; the learned corner localiser: :mod:`vascalc.learn.aac_localiser`.
Synthetic films are not clinical radiographs: numbers measured here say the code learns the B.1
rule on simulated films, not how it performs on patients.

Determinism: the same seed, settings, machine and thread count give the same weights
(``torch.use_deterministic_algorithms``, seeded numpy generators).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from vascalc.errors import GeometryError, InputError, OutputError
from vascalc.learn._deps import deterministic, require_monai, require_torch
from vascalc.learn.store import load_weights
from vascalc.radiograph.kauppila import (
    LEVELS,
    SEGMENTS,
    SpineGeometry,
    anterior_border_at,
    spine_geometry,
    to_image_coords,
)

FORMAT = "vascalc-aac"
FORMAT_VERSION = 1
N_GRADES = 4  # Kauppila grades 0–3 (B.1)
#: Published figures the evaluation is set beside (SCORING.md study list).
STUDIES = {"S1": {"mae": 1.69, "icc": 0.913}, "S2": {"mae": 1.55, "icc": 0.916, "accuracy": 0.829}}
#: 3-class bands of the accuracy figure: 0–1 / 2–5 / ≥ 6 (B.4 ``low_moderate_high``).
BAND_LOWS = (0, 2, 6)
TEST_SEED_OFFSET = 1_000_000  # held-out phantoms never share a seed with training ones
#: Calibration films: seeds ``CALIBRATION_SEED_OFFSET + seed·10⁴ + i`` — disjoint from training
#: (``seed·10⁴ + i`` < 10⁶), from every held-out set (10⁶ … 1 999 999) and from the localiser's films.
CALIBRATION_SEED_OFFSET = 3_000_000
CALIBRATION_VERSION = 1
#: Grader losses: CORAL alone, or CORAL plus the rank-aware contrastive term (:func:`rank_contrastive_loss`).
LOSSES = ("coral", "coral+rank_contrastive")
#: Values of the settings added after format 1's first models, for folders whose model.json lacks them.
LEGACY_SETTINGS = {"context": 0.0, "coord_channels": False, "loss": "coral", "rank_weight": 0.1, "rank_margin": 0.5,
                   "regressor_patch_px": 0, "highpass_px": 0.0, "augment_blur_mm": 0.0, "augment_noise": 0.0}
#: Validation films for model selection: seeds ``VALIDATION_SEED_OFFSET + i`` — disjoint from training
#: (< 10⁶), held-out (10⁶ … 2·10⁶ − 1) and calibration (3·10⁶ …) films.
VALIDATION_SEED_OFFSET = 4_000_000


@dataclass(frozen=True)
class AacConfig:
    """Settings. ``patch_px``: samples along t per level; ``band_px`` samples along d over ``band_mm``
    (the d range in front of the anterior vertebral border; 0 → ``patch_px``); ``width``: channels of
    the first ResNet stage (doubling per stage, 4 stages of one basic block).

    Grader input (:func:`grader_inputs`): ``highpass_px`` — σ (samples) of the high-pass residual
    channel (:func:`highpass_residual`; 0 = off); ``coord_channels`` — add d / wall / level-mask
    maps; ``context`` — rows of the neighbouring levels above and below, as a fraction of
    ``patch_px``. ``loss`` — ``"coral"`` or ``"coral+rank_contrastive"`` (:func:`rank_contrastive_loss`
    with ``rank_weight``, ``rank_margin``). ``regressor_patch_px`` — rows per level of the regressor's
    band (0 → ``patch_px``). ``augment_blur_mm`` / ``augment_noise`` — synthetic training films get,
    with probability 1/2, extra blur FWHM U(0, max) mm and noise SD U(0, max) (:func:`augment_film`).
    The defaults are the demo model v2's settings, chosen on validation films (docs/radiograph.md);
    the bundled demo grader (v5 since round 18, v3 before) is the same with ``width=16`` (``vascalc train xray --width 16``);
    folders saved before a setting existed load it as :data:`LEGACY_SETTINGS` says."""

    patch_px: int = 16
    band_mm: tuple[float, float] = (0.0, 56.0)
    band_px: int = 32
    n_folds: int = 3
    epochs: int = 25
    batch_size: int = 64
    learning_rate: float = 3e-3
    width: int = 8
    regressor: bool = True
    seed: int = 0
    context: float = 0.0
    coord_channels: bool = False
    loss: str = "coral"
    rank_weight: float = 0.1
    rank_margin: float = 0.5
    regressor_patch_px: int = 0
    highpass_px: float = 1.0
    augment_blur_mm: float = 2.5
    augment_noise: float = 0.02

    def __post_init__(self) -> None:
        if self.patch_px < 8 or self.patch_px % 8 or self.band_px % 8:
            raise InputError(f"patch sizes must be multiples of 8 pixels ≥ 8, got {self.patch_px} × {self.band_px}")
        if self.n_folds < 2 or self.epochs < 1 or self.batch_size < 1 or self.width < 1:
            raise InputError("folds must be ≥ 2 and epochs, batch size and width ≥ 1")
        if not self.band_mm[1] > self.band_mm[0]:
            raise InputError(f"band_mm must be (near, far) with far > near, got {self.band_mm}")
        if not 0.0 <= self.context <= 1.0:
            raise InputError(f"context must be a fraction of the level height in [0, 1], got {self.context}")
        if self.loss not in LOSSES:
            raise InputError(f"unknown grader loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.rank_weight < 0 or self.rank_margin <= 0:
            raise InputError("rank_weight must be ≥ 0 and rank_margin > 0")
        if self.augment_blur_mm < 0 or self.augment_noise < 0:
            raise InputError("augment_blur_mm and augment_noise must be ≥ 0 (0 = off)")
        if self.highpass_px < 0:
            raise InputError(f"highpass_px must be ≥ 0 (0 = off), got {self.highpass_px}")
        if self.regressor_patch_px and (self.regressor_patch_px < 8 or self.regressor_patch_px % 8):
            raise InputError(f"regressor_patch_px must be 0 or a multiple of 8 ≥ 8, got {self.regressor_patch_px}")

    @property
    def context_px(self) -> int:
        """Rows of context added above and below each level's patch (same t step as the level)."""
        return int(round(self.context * self.patch_px))

    @property
    def in_channels(self) -> int:
        """Grader input channels: the film, its high-pass residual (``highpass_px``), then d, wall and
        in-level maps (``coord_channels``)."""
        return 1 + (self.highpass_px > 0) + 3 * self.coord_channels


@dataclass(frozen=True)
class SyntheticCase:
    """One training/test radiograph: display image [0, 1], L1–L4 landmarks, spacing and true grades."""

    image: np.ndarray
    vertebrae: tuple
    pixel_spacing_mm: tuple[float, float]
    grades: dict[str, int]
    aac24: int
    seed: int
    variation: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- patches (numpy)

def _geometry(vertebrae, spacing_mm) -> SpineGeometry:
    return vertebrae if isinstance(vertebrae, SpineGeometry) else spine_geometry(vertebrae, spacing_mm)


def _sample(image: np.ndarray, geometry: SpineGeometry, t: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Bilinear samples on the (t, d) grid, anti-aliased: when the image pixels are finer than the
    sample step, the cropped region is first smoothed by a Gaussian of 0.4 × step (so that 0.1-mm
    and 1-mm films give the same patch — the generator-independence of the spine frame)."""
    tt, dd = np.meshgrid(t, d, indexing="ij")
    rows, cols = to_image_coords(geometry, tt, anterior_border_at(geometry, tt) + dd)
    img = np.asarray(image, dtype=np.float32)
    step_mm = min(float(np.mean(np.diff(t))) if t.size > 1 else 1.0, float(np.mean(np.diff(d))) if d.size > 1 else 1.0)
    sigma_px = 0.4 * abs(step_mm) / np.asarray(geometry.spacing_mm)
    margin = int(np.ceil(3 * sigma_px.max())) + 2
    r0 = int(max(0, np.floor(rows.min()) - margin))
    r1 = int(min(img.shape[0], np.ceil(rows.max()) + margin + 1))
    c0 = int(max(0, np.floor(cols.min()) - margin))
    c1 = int(min(img.shape[1], np.ceil(cols.max()) + margin + 1))
    if r1 <= r0 or c1 <= c0:  # the band lies outside the film: constant patch
        return np.zeros(tt.shape, dtype=np.float32)
    crop = img[r0:r1, c0:c1]
    if sigma_px.max() > 0.5:
        crop = ndimage.gaussian_filter(crop, sigma_px, mode="nearest")
    return ndimage.map_coordinates(crop, [rows - r0, cols - c0], order=1, mode="nearest")


def _standardise(patches: np.ndarray) -> np.ndarray:
    """Zero mean, unit SD per patch (removes the display window and gamma offsets)."""
    axes = tuple(range(1, patches.ndim))
    mean = patches.mean(axis=axes, keepdims=True)
    sd = patches.std(axis=axes, keepdims=True)
    return ((patches - mean) / (sd + 1e-3)).astype(np.float32)


def segment_patches(image: np.ndarray, vertebrae, pixel_spacing_mm=None, *, patch_px: int = 32,
                    band_mm: tuple[float, float] = (0.0, 60.0), band_px: int | None = None,
                    context_px: int = 0) -> np.ndarray:
    """The 8 segment patches ``(8, patch_px + 2·context_px, band_px)`` in :data:`SEGMENTS` order, standardised.

    Rows run along the spinal axis over the level's height (T12/L1 … L4/L5 boundaries, B.2 step 2),
    plus ``context_px`` rows at the same step above and below (the neighbouring levels, so that the
    network sees where a wall's calcium continues); columns over ``band_mm`` in front of the anterior
    vertebral border; anterior-wall patches are mirrored along d.
    ``vertebrae``: L1–L4 landmarks (or a ready :class:`SpineGeometry`); lengths in mm.
    """
    geometry = _geometry(vertebrae, pixel_spacing_mm)
    b = geometry.boundaries_mm
    n_d = band_px or patch_px
    d = np.linspace(band_mm[0], band_mm[1], n_d)
    out = np.empty((len(SEGMENTS), patch_px + 2 * context_px, n_d), dtype=np.float32)
    for k in range(len(LEVELS)):
        # samples at cell centres, so that each covers an equal share of the level's height
        step = (b[k + 1] - b[k]) / patch_px
        edges = b[k] + step * np.arange(-context_px, patch_px + context_px + 1)
        level = _sample(image, geometry, 0.5 * (edges[:-1] + edges[1:]), d)
        out[2 * k] = level[:, ::-1]  # anterior wall: mirrored
        out[2 * k + 1] = level
    return _standardise(out)


def lumbar_crop(image: np.ndarray, vertebrae, pixel_spacing_mm=None, *, patch_px: int = 32,
                band_mm: tuple[float, float] = (0.0, 60.0), band_px: int | None = None) -> np.ndarray:
    """The straightened band over L1–L4 ``(4·patch_px, band_px)``, standardised (regressor input)."""
    geometry = _geometry(vertebrae, pixel_spacing_mm)
    b = geometry.boundaries_mm
    n = 4 * patch_px
    edges = np.linspace(b[0], b[-1], n + 1)
    crop = _sample(image, geometry, 0.5 * (edges[:-1] + edges[1:]), np.linspace(band_mm[0], band_mm[1], band_px or patch_px))
    return _standardise(crop[None])[0]


def _patch_kwargs(config: AacConfig) -> dict:
    return {"patch_px": config.patch_px, "band_mm": config.band_mm, "band_px": config.band_px or config.patch_px,
            "context_px": config.context_px}


def _crop_kwargs(config: AacConfig) -> dict:
    """The regressor's sampling: ``regressor_patch_px`` rows per level (0 → the grader's), and d
    scaled in proportion, so a finer grader need not make the whole-score regressor slower."""
    rows = config.regressor_patch_px or config.patch_px
    cols = (config.band_px or config.patch_px) * rows // config.patch_px
    return {"patch_px": rows, "band_mm": config.band_mm, "band_px": max(8, cols)}


def case_inputs(image: np.ndarray, vertebrae, pixel_spacing_mm, config: AacConfig) -> tuple[np.ndarray, np.ndarray]:
    """(segment patches, lumbar crop) of one film with ``config``'s sampling."""
    geometry = _geometry(vertebrae, pixel_spacing_mm)
    return (segment_patches(image, geometry, **_patch_kwargs(config)),
            lumbar_crop(image, geometry, **_crop_kwargs(config)))


def grader_inputs(patches: np.ndarray, config: AacConfig) -> np.ndarray:
    """Network input ``(n·8, C, h, w)`` from segment patches ``(n, 8, h, w)`` (:data:`SEGMENTS` order).

    C = 1 (the film) by default. With ``config.coord_channels`` three constant maps follow, because a
    ResNet with global pooling hardly knows where in the patch a deposit lies, while the wall it
    belongs to is decided by its distance from the spine: d (−1 at ``band_mm[0]`` … +1 at
    ``band_mm[1]``, in the film's own direction, so reversed in mirrored anterior patches), the wall
    (+1 anterior, −1 posterior) and the level mask (+1 inside the graded level, −1 context rows)."""
    p = np.asarray(patches, dtype=np.float32)
    if p.ndim != 4 or p.shape[1] != len(SEGMENTS):
        raise InputError(f"segment patches must be (films, {len(SEGMENTS)}, rows, cols), got shape {p.shape}")
    n, n_seg, h, w = p.shape
    channels = [p]
    if config.highpass_px > 0:
        channels.append(highpass_residual(p, config.highpass_px))
    if not config.coord_channels:
        return np.stack(channels, axis=2).reshape(n * n_seg, len(channels), h, w)
    maps = np.empty((n_seg, 3, h, w), dtype=np.float32)
    d = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    ctx = config.context_px
    level = np.full(h, -1.0, dtype=np.float32)
    level[ctx:h - ctx] = 1.0
    for j in range(n_seg):
        anterior = SEGMENTS[j].endswith("anterior")
        maps[j, 0] = (d[::-1] if anterior else d)[None, :]
        maps[j, 1] = 1.0 if anterior else -1.0
        maps[j, 2] = level[:, None]
    c = len(channels)
    out = np.empty((n, n_seg, c + 3, h, w), dtype=np.float32)
    for i, ch in enumerate(channels):
        out[:, :, i] = ch
    out[:, :, c:] = maps[None]
    return out.reshape(n * n_seg, c + 3, h, w)


def highpass_residual(patches: np.ndarray, sigma_px: float) -> np.ndarray:
    """Patch minus its Gaussian-smoothed self (σ = ``sigma_px`` samples), in units of the residual's
    robust noise (1.4826 × median |residual|), clipped to ±8: thin faint deposits stand out from the
    soft-tissue and bowel-gas gradients that dominate a standardised patch. ``patches`` (..., h, w)."""
    p = np.asarray(patches, dtype=np.float32)
    sigma = (0.0,) * (p.ndim - 2) + (float(sigma_px),) * 2
    res = p - ndimage.gaussian_filter(p, sigma, mode="nearest")
    scale = 1.4826 * np.median(np.abs(res), axis=(-2, -1), keepdims=True)
    return np.clip(res / (scale + 1e-3), -8.0, 8.0).astype(np.float32)


# ----------------------------------------------------------------------------- synthetic data

def augment_film(image: np.ndarray, pixel_spacing_mm, seed: int, *, max_blur_fwhm_mm: float,
                 max_noise: float) -> np.ndarray:
    """Training-chain augmentation of one display image [0, 1], drawn from ``seed`` (so a film is
    always augmented the same way): with probability 1/2 an extra Gaussian blur of FWHM
    U(0, ``max_blur_fwhm_mm``) mm and additive Gaussian noise of SD U(0, ``max_noise``) (display
    units), clipped to [0, 1]. It widens the sharpness/noise range of the training chain (detector
    blur 0.2–0.9 mm) without drawing from any held-out chain."""
    rng = np.random.default_rng([int(seed), 13])
    if rng.random() >= 0.5 or (max_blur_fwhm_mm <= 0 and max_noise <= 0):
        return image
    fwhm = rng.uniform(0.0, max_blur_fwhm_mm)
    sd = rng.uniform(0.0, max_noise)
    out = np.asarray(image, dtype=np.float32)
    if fwhm > 0:
        sigma_px = fwhm / (2 * np.sqrt(2 * np.log(2))) / np.asarray(pixel_spacing_mm, dtype=float)
        out = ndimage.gaussian_filter(out, sigma_px, mode="nearest")
    if sd > 0:
        out = out + rng.normal(0.0, sd, out.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _rotate(image: np.ndarray, vertebrae, angle_deg: float):
    """Rotate the image about its centre and move the landmarks with it (output(p) = input(c + R(p − c)))."""
    from vascalc.phantoms.types import VertebraLandmark

    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centre = (np.asarray(image.shape, dtype=float) - 1) / 2
    out = ndimage.affine_transform(image, rot, offset=centre - rot @ centre, order=1, mode="nearest")

    def move(p):
        q = rot.T @ (np.asarray(p, dtype=float) - centre) + centre
        return (float(q[0]), float(q[1]))

    moved = tuple(VertebraLandmark(name=v.name, corners_px=tuple(move(c) for c in v.corners_px),
                                   centre_px=move(v.centre_px)) for v in vertebrae)
    return out.astype(np.float32), moved


#: Test-set families of :func:`evaluate_aac`: the training chain at new seeds, then settings never
#: seen in training (fine detector pixels, the DXA-VFA chain, the 3-D vascular phantom's DRR).
TEST_SETS = ("radiograph", "radiograph_fine", "dxa", "phantom_drr")


def synthetic_case(seed: int, *, source: str = "radiograph", vary: bool = True,
                   detector_supersampling: int | None = None) -> SyntheticCase:
    """One labelled film. ``source``: ``"radiograph"`` — :func:`vascalc.phantoms.lateral_spine.make_lateral_spine`
    with the radiograph chain at the training resolution (0.4–0.9 mm pixels); ``"radiograph_fine"`` —
    the same chain at detector pixels of 0.15–0.3 mm; ``"dxa"`` — the DXA-VFA chain;
    ``"phantom_drr"`` — :func:`phantom_drr_case` (the 3-D vascular phantom's DRR, a different generator).
    ``detector_supersampling``: the lateral film's detector (default area-integrating since round 14;
    1 = point-sampled, for a same-draw comparison)."""
    if source == "phantom_drr":
        return phantom_drr_case(seed, vary=vary)
    from vascalc.phantoms.lateral_spine import make_lateral_spine

    chain = {"radiograph": "radiograph", "radiograph_fine": "radiograph", "dxa": "dxa"}.get(source)
    if chain is None:
        raise InputError(f"unknown synthetic source {source!r}; use one of {', '.join(TEST_SETS)}")
    film = make_lateral_spine(seed, chain=chain, pixel_spacing_mm=(0.15, 0.3) if source == "radiograph_fine" else None,
                              detector_supersampling=detector_supersampling)
    return SyntheticCase(image=film.image, vertebrae=film.vertebrae, pixel_spacing_mm=film.pixel_spacing_mm,
                         grades=dict(film.segment_grades), aac24=film.aac24, seed=seed,
                         variation={"source": source, "chain": asdict(film.chain), "anatomy": film.anatomy})


def phantom_drr_case(seed: int, *, vary: bool = True) -> SyntheticCase:
    """A lateral DRR of a seeded vascular phantom with true grades, varied from ``seed`` when ``vary``:
    plaque rate U(0.2, 3), photons 10^U(5.3, 6.5), blur FWHM U(0.4, 1.2) mm, rotation U(−4°, 4°),
    display gamma U(0.75, 1.35). Kept as an independent held-out generator (3.2-mm pixels)."""
    from vascalc.phantoms import make_vascular_phantom, project_lateral_radiograph

    rng = np.random.default_rng([seed, 7])
    var = {"plaque_rate": 1.0, "photons_per_pixel": 2.0e6, "blur_fwhm_mm": 0.6, "rotation_deg": 0.0, "gamma": 1.0}
    if vary:
        var = {"plaque_rate": float(rng.uniform(0.2, 3.0)), "photons_per_pixel": float(10 ** rng.uniform(5.3, 6.5)),
               "blur_fwhm_mm": float(rng.uniform(0.4, 1.2)), "rotation_deg": float(rng.uniform(-4, 4)),
               "gamma": float(rng.uniform(0.75, 1.35))}
    ph = make_vascular_phantom(seed=seed, plaque_rate=var["plaque_rate"])
    xr = project_lateral_radiograph(ph, photons_per_pixel=var["photons_per_pixel"],
                                    blur_fwhm_mm=var["blur_fwhm_mm"], seed=seed)
    image, vertebrae = xr.image ** var["gamma"], xr.vertebrae
    if var["rotation_deg"]:
        image, vertebrae = _rotate(image, vertebrae, var["rotation_deg"])
    return SyntheticCase(image=image.astype(np.float32), vertebrae=tuple(vertebrae),
                         pixel_spacing_mm=tuple(xr.pixel_spacing_mm), grades=dict(xr.segment_grades),
                         aac24=int(xr.aac24), seed=seed, variation={"source": "phantom_drr", **var})


# ----------------------------------------------------------------------------- networks (torch)

def coral_levels(grades, n_grades: int = N_GRADES) -> np.ndarray:
    """Ordinal targets ``(n, K−1)``: column k is 1 when grade > k (CORAL's extended binary labels)."""
    g = np.asarray(grades, dtype=int)
    return (g[:, None] > np.arange(n_grades - 1)[None, :]).astype(np.float32)


def coral_loss(logits, levels):
    """CORAL loss: binary cross-entropy summed over the K−1 tasks, mean over the batch (Cao et al. 2020, eq. 4)."""
    torch = require_torch()
    per_task = torch.nn.functional.binary_cross_entropy_with_logits(logits, levels, reduction="none")
    return per_task.sum(dim=1).mean()


def grades_from_probabilities(prob_gt: np.ndarray, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Grade = number of tasks k with P(grade > k) > τ_k: CORAL's rule with τ_k = 0.5 (default), or
    per-task thresholds fitted on a calibration set (:func:`fit_coral_thresholds`)."""
    tau = np.full(np.shape(prob_gt)[-1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=float)
    return (np.asarray(prob_gt) > tau).sum(axis=-1).astype(int)


#: Candidate thresholds τ_k searched by :func:`fit_coral_thresholds`.
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def fit_coral_thresholds(prob_gt: np.ndarray, grades: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """Per-task decision thresholds τ_k (k = 0, 1, 2) minimising the segment-grade absolute error.

    With rank-consistent probabilities, |grade − ĝ| = Σ_k |1[grade > k] − 1[P_k > τ_k]|, so each τ_k
    is fitted on its own: the grid value with the fewest errors on task k, ties broken towards 0.5
    (CORAL's default) then the lower value. ``prob_gt`` ``(n, K−1)``, ``grades`` ``(n,)``; pure and
    deterministic. Since the grade counts exceedances, any τ keeps ĝ non-decreasing in every P_k."""
    p = np.asarray(prob_gt, dtype=float).reshape(-1, np.shape(prob_gt)[-1])
    target = coral_levels(np.asarray(grades).ravel(), p.shape[1] + 1).astype(bool)
    if p.shape[0] != target.shape[0] or p.shape[0] == 0:
        raise InputError(f"need one grade per probability row, got {target.shape[0]} grades for {p.shape[0]} rows")
    # errors[j, k] = misclassified segments of task k at threshold grid[j]
    errors = ((p[None, :, :] > grid[:, None, None]) != target[None]).sum(axis=1)
    order = np.lexsort((grid, np.abs(grid - 0.5)))  # preference order for ties
    best = order[np.argmin(errors[order], axis=0)]
    return grid[best].astype(float)


def fit_total_thresholds(prob_gt: np.ndarray, grades: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """Thresholds τ = (τ_0, τ_1, τ_2) minimising the mean |AAC-24 − Σ ĝ| over films (the score the
    issue measures), searched jointly on ``grid`` (default 0.05…0.95 step 0.025); ties → fewer
    segment-grade errors, then closest to 0.5. ``prob_gt`` ``(films, 8, K−1)``, ``grades``
    ``(films, 8)``. Σ ĝ = Σ_k #{segments with P_k > τ_k}, so each task's count per film is computed
    once per grid value and all grid triples are combined by broadcasting (no loop over films)."""
    grid = np.round(np.arange(0.05, 0.951, 0.025), 3) if grid is None else np.asarray(grid, dtype=float)
    p, g = np.asarray(prob_gt, dtype=float), np.asarray(grades)
    if p.ndim != 3 or g.shape != p.shape[:2]:
        raise InputError(f"need probabilities (films, segments, K−1) and grades (films, segments), got {p.shape} and {g.shape}")
    above = p[None] > grid[:, None, None, None]                                  # (grid, films, segs, K−1)
    counts = above.sum(axis=2).astype(np.int32)                                  # (grid, films, K−1)
    target = coral_levels(g.ravel(), p.shape[2] + 1).reshape(p.shape).astype(bool)
    seg_err = (above != target[None]).sum(axis=(1, 2))                           # (grid, K−1)
    total = (counts[:, None, None, :, 0] + counts[None, :, None, :, 1] + counts[None, None, :, :, 2])
    mae = np.abs(total - g.sum(axis=1)).mean(axis=-1)                            # (grid, grid, grid)
    seg = seg_err[:, None, None, 0] + seg_err[None, :, None, 1] + seg_err[None, None, :, 2]
    dist = np.abs(grid - 0.5)
    closeness = dist[:, None, None] + dist[None, :, None] + dist[None, None, :]
    shape = mae.shape
    best = np.lexsort((closeness.ravel(), seg.ravel(), np.round(mae.ravel(), 9)))[0]
    return grid[list(np.unravel_index(best, shape))].astype(float)


def _backbone(width: int, n_out: int, in_channels: int = 1):
    require_monai()
    from monai.networks.nets import ResNet

    # 4 stages of one basic block, 3×3 stem without max-pool: 32-px patches keep a 4×4 map at the end
    return ResNet(block="basic", layers=[1, 1, 1, 1], block_inplanes=[width, 2 * width, 4 * width, 8 * width],
                  spatial_dims=2, n_input_channels=in_channels, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True,
                  num_classes=n_out)


def _pooled_features(backbone, x):
    """MONAI ``ResNet.forward`` up to the global average pool: the (n, 8·width) embedding before ``fc``."""
    x = backbone.act(backbone.bn1(backbone.conv1(x)))
    if not backbone.no_max_pool:
        x = backbone.maxpool(x)
    x = backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(x))))
    return backbone.avgpool(x).flatten(1)


def build_coral_network(width: int = 8, n_grades: int = N_GRADES, in_channels: int = 1):
    """ResNet → one score g(x); logits_k = g(x) + b_k with b ordered (b_{k+1} = b_k − softplus(δ_k)).
    ``forward(x, return_embedding=True)`` also returns the pooled features (the contrastive term's input)."""
    torch = require_torch()

    class CoralNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = _backbone(width, 1, in_channels)
            self.first_bias = torch.nn.Parameter(torch.zeros(1))
            self.bias_steps = torch.nn.Parameter(torch.zeros(n_grades - 2))

        def biases(self):
            steps = torch.nn.functional.softplus(self.bias_steps)
            return torch.cat([self.first_bias, self.first_bias - torch.cumsum(steps, 0)])

        def forward(self, x, return_embedding: bool = False):
            features = _pooled_features(self.backbone, x)
            logits = self.backbone.fc(features) + self.biases()[None, :]
            return (logits, features) if return_embedding else logits

    return CoralNet()


def rank_contrastive_loss(embeddings, grades, margin: float = 0.5):
    """Rank-aware contrastive term (the idea of S2's LVLCRNet, Zhang et al. 2025, BMC Med Imaging,
    10.1186/s12880-025-02072-7; the abstract gives no formula, so this is vascalc's definition).

    With unit-normalised embeddings z_i = e_i / ‖e_i‖ and Euclidean distances D_ij = ‖z_i − z_j‖,
    over all pairs i < j of the batch:

        L = [ Σ_{g_i = g_j} D_ij²  +  Σ_{g_i ≠ g_j} max(0, m·|g_i − g_j| − D_ij)² ] / #pairs

    — segments of equal grade are pulled together, segments of different grades pushed at least
    m·|Δgrade| apart, so the embedding's distances follow the ordinal scale (grade 0 and 3 farther
    apart than 1 and 2). Unit norm bounds D ≤ 2, so m ≤ 2/3 keeps the grade-0-vs-3 margin reachable."""
    torch = require_torch()
    z = torch.nn.functional.normalize(embeddings, dim=1)
    g = torch.as_tensor(grades, dtype=z.dtype, device=z.device).reshape(-1)
    n = z.shape[0]
    if n < 2:
        return z.sum() * 0.0
    i, j = torch.triu_indices(n, n, offset=1, device=z.device)
    dist = (z[i] - z[j]).pow(2).sum(dim=1).clamp_min(1e-12).sqrt()
    gap = (g[i] - g[j]).abs()
    pull = dist.pow(2)
    push = torch.clamp(margin * gap - dist, min=0.0).pow(2)
    return torch.where(gap == 0, pull, push).mean()


def build_regressor(width: int = 8):
    """ResNet → sigmoid × 24 = AAC-24."""
    torch = require_torch()

    class Regressor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = _backbone(width, 1)

        def forward(self, x):
            return 24.0 * torch.sigmoid(self.backbone(x)[:, 0])

    return Regressor()


def _augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip along t (reversing the axis leaves the covered fraction unchanged; the coordinate maps
    are symmetric in t) and add mild noise to the film channel. ``x`` (n, C, t, d)."""
    flip = rng.random(len(x)) < 0.5
    x = x.copy()
    x[flip] = x[flip, :, ::-1, :]
    x[:, 0] += rng.normal(0.0, 0.1, size=x[:, 0].shape).astype(np.float32)
    return x


def train_model(kind: str, inputs: np.ndarray, targets: np.ndarray, config: AacConfig, *, seed: int):
    """Train a CORAL grader (``kind="coral"``, targets = grades 0–3) or the regressor (``"regressor"``,
    targets = AAC-24) on ``inputs (n, h, w)`` or ``(n, C, h, w)``; returns ``(network in eval mode,
    loss per epoch)``. With ``config.loss = "coral+rank_contrastive"`` the grader's loss is
    CORAL + ``rank_weight`` × :func:`rank_contrastive_loss` of the batch's pooled embeddings."""
    torch = require_torch()
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim == 3:
        inputs = inputs[:, None]
    expected = config.in_channels if kind == "coral" else 1
    if inputs.shape[1] != expected:
        raise InputError(f"the {kind} inputs have {inputs.shape[1]} channel(s) but the settings expect {expected}; "
                         "build grader inputs with grader_inputs(patches, config)")
    contrastive = kind == "coral" and config.loss == "coral+rank_contrastive" and config.rank_weight > 0
    with deterministic(seed):
        if kind == "coral":
            net = build_coral_network(config.width, in_channels=inputs.shape[1])
            grade_t = torch.from_numpy(np.asarray(targets, dtype=np.float32))
            levels = coral_levels(targets)
            # start the biases at the prior log-odds of each threshold so early epochs learn the image
            prior = np.clip(levels.mean(axis=0), 0.02, 0.98)
            logit = np.log(prior / (1 - prior))
            with torch.no_grad():
                net.first_bias.fill_(float(logit[0]))
                steps = np.maximum(-np.diff(logit), 1e-2)
                net.bias_steps.copy_(torch.from_numpy(np.log(np.expm1(steps)).astype(np.float32)))
            y_all = torch.from_numpy(levels)
        elif kind == "regressor":
            net = build_regressor(config.width)
            y_all = torch.from_numpy(np.asarray(targets, dtype=np.float32))
        else:
            raise InputError(f"model kind must be 'coral' or 'regressor', got {kind!r}")
        optimiser = torch.optim.Adam(net.parameters(), lr=config.learning_rate, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
        rng = np.random.default_rng([seed, 11])
        losses = []
        n = len(inputs)
        for _ in range(config.epochs):
            net.train()
            order = rng.permutation(n)
            total = 0.0
            for start in range(0, n, config.batch_size):
                idx = order[start:start + config.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                x = torch.from_numpy(_augment(inputs[idx], rng))
                if contrastive:
                    out, emb = net(x, return_embedding=True)
                    loss = coral_loss(out, y_all[idx]) + config.rank_weight * rank_contrastive_loss(
                        emb, grade_t[idx], config.rank_margin)
                elif kind == "coral":
                    loss = coral_loss(net(x), y_all[idx])
                else:
                    loss = torch.nn.functional.smooth_l1_loss(net(x), y_all[idx])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(idx)
            schedule.step()
            losses.append(total / n)
        net.eval()
    return net, losses


def _run(net, inputs: np.ndarray, batch: int = 256) -> np.ndarray:
    torch = require_torch()
    with torch.no_grad():
        x = np.asarray(inputs, dtype=np.float32)
        x = x[:, None] if x.ndim == 3 else x
        outs = [net(torch.from_numpy(np.ascontiguousarray(x[i:i + batch]))) for i in range(0, len(x), batch)]
    return torch.cat(outs).numpy()


def coral_probabilities(net, patches: np.ndarray) -> np.ndarray:
    """P(grade > k) ``(n, K−1)`` of one CORAL network."""
    return 1.0 / (1.0 + np.exp(-_run(net, patches).astype(np.float64)))


# ----------------------------------------------------------------------------- test-time augmentation

@dataclass(frozen=True)
class PatchPerturbation:
    """One deterministic test-time perturbation of a standardised segment patch ``(…, t, d)``.

    ``shift_t_px`` / ``shift_d_px``: content moved by this many samples along the wall (t, rows) /
    across it (d, columns); ``scale``: zoom about the patch centre (> 1 magnifies); ``flip_t``: mirror
    along the wall's length (the grade counts the covered fraction of the level, which a reversal
    keeps — and training flipped t at random, :func:`_augment`); ``gamma``: display gamma applied to
    the patch rescaled to [0, 1] by its own min/max. Edges are extended (``mode="nearest"``)."""

    shift_t_px: float = 0.0
    shift_d_px: float = 0.0
    scale: float = 1.0
    flip_t: bool = False
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if not (self.scale > 0 and self.gamma > 0):
            raise InputError(f"a patch perturbation needs scale > 0 and gamma > 0, got {self.scale} and {self.gamma}")

    @property
    def geometric(self) -> bool:
        return bool(self.shift_t_px or self.shift_d_px or self.scale != 1.0)


#: Candidate sets of :func:`tta_probabilities`, compared on validation films (docs/radiograph.md,
#: *Grader test-time augmentation*). ``"none"`` is the plain ensemble.
TTA_SETS: dict[str, tuple[PatchPerturbation, ...]] = {
    "none": (PatchPerturbation(),),
    "flip": (PatchPerturbation(), PatchPerturbation(flip_t=True)),
    "flip_shift1": tuple(PatchPerturbation(shift_t_px=s, flip_t=f) for f in (False, True) for s in (-1.0, 0.0, 1.0)),
    "flip_shift05": tuple(PatchPerturbation(shift_t_px=s, flip_t=f) for f in (False, True) for s in (-0.5, 0.0, 0.5)),
    "flip_scale": tuple(PatchPerturbation(scale=z, flip_t=f) for f in (False, True) for z in (0.95, 1.0, 1.05)),
    "flip_shift_d": tuple(PatchPerturbation(shift_d_px=s, flip_t=f) for f in (False, True) for s in (-1.0, 0.0, 1.0)),
    "flip_gamma": tuple(PatchPerturbation(gamma=g, flip_t=f) for f in (False, True) for g in (0.8, 1.0, 1.25)),
    "flip_shift1_scale_gamma": tuple(PatchPerturbation(shift_t_px=s, scale=z, gamma=g, flip_t=f)
                                     for f in (False, True)
                                     for s, z, g in ((0.0, 1.0, 1.0), (-1.0, 1.0, 1.0), (1.0, 1.0, 1.0),
                                                     (0.0, 0.95, 1.0), (0.0, 1.05, 1.0), (0.0, 1.0, 0.8),
                                                     (0.0, 1.0, 1.25))),
    # whole-sample shifts only: a sub-sample shift interpolates, i.e. blurs the patch, and the high-pass
    # channel then under-grades (±0.5-sample d shifts: validation bias −0.36 → −0.64)
    "flip_shift_td": tuple(PatchPerturbation(shift_t_px=t, shift_d_px=d, flip_t=f) for f in (False, True)
                           for t, d in ((0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))),
}
#: The set used when a model folder does not switch TTA off (``model.json["inference"]["grader_tta"]``):
#: chosen on 300 validation films (seeds 4 000 000 … 4 000 199 radiograph chain, 4 010 000 … 4 010 099
#: DXA), true and learned landmarks — the only candidate whose pooled AAC-24 MAE gain had a bootstrap
#: 95 % interval below 0 (docs/radiograph.md, *Grader test-time augmentation*). Re-validated for the
#: v3 weights (round 11, same films plus their ``valblur`` copies): still the best pooled set and the
#: only one with Δ < 0 against no TTA (docs/radiograph.md, *Demo model v3, round 11*).
DEFAULT_TTA = "flip_shift_td"
#: Grade rules: CORAL's count of P(grade > k) > τ_k, or the expected grade Σ_k P(grade > k) rounded half up.
GRADE_RULES = ("threshold", "expected")


def perturb_patches(patches: np.ndarray, perturbation: PatchPerturbation) -> np.ndarray:
    """``patches`` ``(…, t, d)`` (standardised, :func:`segment_patches`) under one perturbation,
    re-standardised when it changed the values (so the network sees zero mean, unit SD again).
    The identity returns the patches unchanged; a constant patch stays constant under every one."""
    p = np.asarray(patches, dtype=np.float32)
    lead, (h, w) = p.shape[:-2], p.shape[-2:]
    flat = p.reshape(-1, h, w)
    changed = False
    if perturbation.gamma != 1.0:
        lo = flat.min(axis=(1, 2), keepdims=True)
        span = flat.max(axis=(1, 2), keepdims=True) - lo
        # a flat patch has no contrast to bend: left as it is (span 0 → unit divisor, values 0)
        unit = np.where(span > 0, (flat - lo) / np.where(span > 0, span, 1.0), 0.0)
        flat = np.where(span > 0, unit ** perturbation.gamma, flat).astype(np.float32)
        changed = True
    if perturbation.geometric:
        # output sample (r, c) reads the input at centre + (r − centre − shift)/scale; one
        # map_coordinates call over the stack (integer patch index → exact along that axis)
        rows = ((np.arange(h) - (h - 1) / 2 - perturbation.shift_t_px) / perturbation.scale + (h - 1) / 2)
        cols = ((np.arange(w) - (w - 1) / 2 - perturbation.shift_d_px) / perturbation.scale + (w - 1) / 2)
        n = flat.shape[0]
        idx, rr, cc = np.meshgrid(np.arange(n, dtype=float), rows, cols, indexing="ij")
        flat = ndimage.map_coordinates(flat, [idx, rr, cc], order=1, mode="nearest").astype(np.float32)
        changed = True
    if perturbation.flip_t:
        flat = flat[:, ::-1, :]
    if changed:
        flat = _standardise(flat)
    return np.ascontiguousarray(flat).reshape(*lead, h, w)


def tta_probabilities(graders: Sequence, patches: np.ndarray, config: AacConfig,
                      perturbations: Sequence[PatchPerturbation] = TTA_SETS["none"]) -> np.ndarray:
    """Ensemble P(grade > k) ``(films, 8, K−1)`` of segment patches ``(films, 8, t, d)``, averaged over
    the fold graders AND the ``perturbations`` of each patch (one forward pass per network over all
    perturbed copies). A mean of rank-consistent rows stays rank-consistent (non-increasing in k)."""
    p = np.asarray(patches, dtype=np.float32)
    if p.ndim != 4 or p.shape[1] != len(SEGMENTS):
        raise InputError(f"segment patches must be (films, {len(SEGMENTS)}, rows, cols), got shape {p.shape}")
    if not perturbations or not graders:
        raise InputError("test-time augmentation needs at least one grader and one perturbation")
    views = np.concatenate([perturb_patches(p, q) for q in perturbations])       # (P·films, 8, t, d)
    x = grader_inputs(views, config)
    prob = np.mean([coral_probabilities(net, x) for net in graders], axis=0)
    return prob.reshape(len(perturbations), p.shape[0], len(SEGMENTS), -1).mean(axis=0)


def grades_by_rule(prob_gt: np.ndarray, rule: str = "threshold", thresholds: Sequence[float] | None = None) -> np.ndarray:
    """Grades from P(grade > k): ``"threshold"`` — :func:`grades_from_probabilities` (τ_k, default 0.5);
    ``"expected"`` — ⌊Σ_k P(grade > k) + ½⌋, the expected grade of the ordinal distribution rounded
    half up (E[g] = Σ_k P(g > k) for g ∈ {0 … K−1})."""
    if rule == "threshold":
        return grades_from_probabilities(prob_gt, thresholds)
    if rule == "expected":
        return np.floor(np.asarray(prob_gt, dtype=float).sum(axis=-1) + 0.5).astype(int)
    raise InputError(f"unknown grade rule {rule!r}; use one of {', '.join(GRADE_RULES)}")


# ----------------------------------------------------------------------------- model folder

@dataclass(frozen=True, eq=False)
class AacEnsemble:
    """A loaded model folder: fold graders, fold regressors (may be empty) and ``model.json``."""

    graders: tuple
    regressors: tuple
    metadata: dict

    @property
    def config(self) -> AacConfig:
        c = dict(self.metadata["config"])
        c["band_mm"] = tuple(c["band_mm"])
        c.setdefault("band_px", 0)  # format-1 folders: square patches
        # folders written before these settings existed were trained without them
        for key, legacy in LEGACY_SETTINGS.items():
            c.setdefault(key, legacy)
        return AacConfig(**c)


def save_aac_ensemble(out_dir: Path, graders: Sequence, regressors: Sequence, metadata: dict) -> list[Path]:
    """Write ``grader_fold<k>.pt`` / ``regressor_fold<k>.pt`` (state dicts) and ``model.json``."""
    torch = require_torch()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the model folder {out} ({error})") from None
    written = []
    for prefix, nets in (("grader", graders), ("regressor", regressors)):
        for k, net in enumerate(nets):
            path = out / f"{prefix}_fold{k}.pt"
            torch.save(net.state_dict(), path)
            written.append(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_graders": len(graders),
            "n_regressors": len(regressors), **metadata}
    path = out / "model.json"
    path.write_text(json.dumps(meta, indent=2))
    return [*written, path]


def load_aac_ensemble(model_dir: str | Path) -> AacEnsemble:
    """Load a folder written by :func:`save_aac_ensemble` (state dicts with ``weights_only=True``)."""
    require_torch()
    folder = Path(model_dir)
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise InputError(f"{folder} is not an AAC model folder (no model.json); train one with train_aac_grader")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise InputError(f"{meta_path} is a {meta.get('format')!r} model, not {FORMAT!r}")
    width = int(meta["config"]["width"])
    in_channels = AacEnsemble((), (), meta).config.in_channels

    def load(prefix: str, n: int, build):
        return tuple(load_weights(build(width), folder / f"{prefix}_fold{k}.pt") for k in range(n))

    return AacEnsemble(graders=load("grader", int(meta["n_graders"]),
                                    lambda w: build_coral_network(w, in_channels=in_channels)),
                       regressors=load("regressor", int(meta["n_regressors"]), build_regressor), metadata=meta)


# ----------------------------------------------------------------------------- inference

def _image_and_spacing(radiograph, pixel_spacing_mm):
    image = getattr(radiograph, "image", radiograph)
    spacing = pixel_spacing_mm if pixel_spacing_mm is not None else getattr(radiograph, "pixel_spacing_mm", None)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise InputError(f"a radiograph must be a 2-D image, got shape {image.shape}")
    if spacing is None:
        from vascalc.radiograph.locate import ASSUMED_FOV_MM

        # the patch band is anatomical (mm): fall back to the localiser's assumed field of view
        spacing = (ASSUMED_FOV_MM / image.shape[0],) * 2
    return image, spacing


def calibration_thresholds(ensemble: AacEnsemble) -> np.ndarray | None:
    """τ_k stored in ``model.json["calibration"]`` (:func:`calibrate_aac`), or ``None`` (plain CORAL 0.5)."""
    cal = ensemble.metadata.get("calibration")
    if not cal:
        return None
    if int(cal.get("version", 0)) != CALIBRATION_VERSION or cal.get("method") != "coral_thresholds":
        raise InputError(f"unknown calibration {cal.get('method')!r} version {cal.get('version')!r} in model.json; "
                         "re-run calibrate_aac or remove the 'calibration' entry")
    return np.asarray(cal["thresholds"], dtype=float)


def grader_tta(ensemble: AacEnsemble | dict, tta: bool | str | None = None) -> str:
    """Name of the :data:`TTA_SETS` entry the grader uses (``ensemble``: a loaded folder or its
    ``model.json`` dict): ``tta`` ``None`` → the folder's setting
    (``model.json["inference"]["grader_tta"]``: ``false`` = off, a set name, or absent = :data:`DEFAULT_TTA`);
    ``True`` → :data:`DEFAULT_TTA`; ``False`` → ``"none"``; a string → that set."""
    meta = ensemble.metadata if isinstance(ensemble, AacEnsemble) else ensemble
    choice = meta.get("inference", {}).get("grader_tta", True) if tta is None else tta
    name = (DEFAULT_TTA if choice else "none") if isinstance(choice, bool) else str(choice)
    if name not in TTA_SETS:
        raise InputError(f"unknown grader test-time augmentation {name!r}; use one of {', '.join(TTA_SETS)}")
    return name


def grader_tta_method(ensemble: AacEnsemble | dict, tta: bool | str | None = None) -> dict:
    """What :func:`predict_grades` does at inference, for a result's ``method``: the TTA set, its
    number of views and perturbations, and the grade rule."""
    name = grader_tta(ensemble, tta)
    return {"tta": name, "tta_views": len(TTA_SETS[name]), "grade_rule": "threshold",
            "tta_perturbations": [asdict(q) for q in TTA_SETS[name]]}


def predict_grades(model_dir: str | Path | AacEnsemble, radiograph, landmarks,
                   pixel_spacing_mm: float | tuple[float, float] | None = None, *,
                   calibrated: bool = True, tta: bool | str | None = None) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Grades 0–3 of the 8 segments and their ensemble P(grade > k), k = 0, 1, 2.

    ``calibrated``: apply the folder's fitted thresholds τ_k (``model.json["calibration"]``, see
    :func:`calibrate_aac`) when it has them; ``False`` gives CORAL's plain 0.5 rule for comparison.
    ``tta``: test-time augmentation of each segment patch (:func:`grader_tta`; default the folder's
    setting, on = :data:`DEFAULT_TTA`); the probabilities are averaged over folds and views
    (:func:`tta_probabilities`) before the same decision rule.

    ``radiograph``: a :class:`vascalc.imaging.radiograph.Radiograph`, a phantom
    :class:`~vascalc.phantoms.types.RadiographPhantom` or a 2-D array in [0, 1] (bone bright);
    ``landmarks``: L1–L4 :class:`VertebraLandmark` corners (pixels). Returns
    ``({segment: grade}, {segment: [P(>0), P(>1), P(>2)]})``; AAC-24 = sum of the grades.
    """
    ensemble = model_dir if isinstance(model_dir, AacEnsemble) else load_aac_ensemble(model_dir)
    cfg = ensemble.config
    image, spacing = _image_and_spacing(radiograph, pixel_spacing_mm)
    patches = segment_patches(image, landmarks, spacing, **_patch_kwargs(cfg))[None]
    prob = tta_probabilities(ensemble.graders, patches, cfg, TTA_SETS[grader_tta(ensemble, tta)])[0]
    grades = grades_from_probabilities(prob, calibration_thresholds(ensemble) if calibrated else None)
    return ({s: int(g) for s, g in zip(SEGMENTS, grades)},
            {s: [round(float(p), 6) for p in row] for s, row in zip(SEGMENTS, prob)})


def predict_aac24_regression(model_dir: str | Path | AacEnsemble, radiograph, landmarks,
                             pixel_spacing_mm: float | tuple[float, float] | None = None) -> float:
    """Whole-score regressor's AAC-24 (ensemble mean, continuous in [0, 24])."""
    ensemble = model_dir if isinstance(model_dir, AacEnsemble) else load_aac_ensemble(model_dir)
    if not ensemble.regressors:
        raise InputError("this model folder has no whole-score regressor (trained with regressor=False)")
    cfg = ensemble.config
    image, spacing = _image_and_spacing(radiograph, pixel_spacing_mm)
    crop = lumbar_crop(image, landmarks, spacing, **_crop_kwargs(cfg))[None]
    return float(np.mean([_run(net, crop)[0] for net in ensemble.regressors]))


# ----------------------------------------------------------------------------- training + evaluation

def _band(aac24) -> np.ndarray:
    return np.searchsorted(np.asarray(BAND_LOWS), np.asarray(aac24), side="right") - 1


def score_agreement(reference: Sequence[float], predicted: Sequence[float],
                    ref_grades: np.ndarray | None = None, pred_grades: np.ndarray | None = None) -> dict:
    """MAE, ICC(A,1), Spearman ρ, Bland–Altman bias and limits, 3-class accuracy (0–1 / 2–5 / ≥ 6)
    with its confusion matrix and, with grades ``(n, 8)``, per-segment linear κ and segment accuracy,
    all from :mod:`vascalc.stats` (SCORING.md D)."""
    from vascalc.stats.bland_altman import bland_altman
    from vascalc.stats.continuous import error_metrics, spearman
    from vascalc.stats.diagnostic import multiclass_metrics
    from vascalc.stats.icc import icc_two_methods
    from vascalc.stats.kappa import cohen_kappa

    y, yhat = np.asarray(reference, dtype=float), np.asarray(predicted, dtype=float)
    out = {"n": int(y.size), "mae": error_metrics(y, yhat).mae, "icc_a1": icc_two_methods(y, yhat).icc}
    out["spearman"] = spearman(y, yhat).r if np.ptp(yhat) > 0 and np.ptp(y) > 0 else float("nan")
    ba = bland_altman(y, yhat)
    out["bland_altman"] = {"bias": round(ba.bias, 4), "loa_lower": round(ba.loa_lower, 4),
                           "loa_upper": round(ba.loa_upper, 4)}
    bands = multiclass_metrics(_band(y), _band(np.rint(yhat)), labels=(0, 1, 2))
    out["accuracy_3class"] = bands.accuracy.estimate
    out["confusion_3class"] = [list(map(int, row)) for row in bands.confusion]
    if ref_grades is not None and pred_grades is not None:
        out["segment_accuracy"] = float(np.mean(ref_grades == pred_grades))
        kappas = {}
        for i, s in enumerate(SEGMENTS):
            try:
                kappas[s] = round(float(cohen_kappa(ref_grades[:, i], pred_grades[:, i], weights="linear",
                                                    categories=(0, 1, 2, 3)).kappa), 4)
            except Exception:  # noqa: BLE001 — κ undefined when both raters use one grade only
                kappas[s] = float("nan")
        out["segment_kappa_linear"] = kappas
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def _cases(seeds: Sequence[int], source: str = "radiograph", detector_supersampling: int | None = None) -> list[SyntheticCase]:
    return [synthetic_case(int(s), source=source, detector_supersampling=detector_supersampling) for s in seeds]


def evaluate_aac(model_dir: str | Path | AacEnsemble, n_test: int = 40, seed: int = 0, *,
                 sets: Sequence[str] = ("radiograph",), localisers: Sequence[str] = (),
                 detector_supersampling: int | None = None) -> dict:
    """Held-out evaluation per test set (:data:`TEST_SETS`; seeds ``TEST_SEED_OFFSET + seed·10⁴ + i``,
    never used in training) of the learned grader, the regressor and the model-free baseline on the
    SAME images with the true landmarks. ``localisers``: ``"model-free"`` and/or a folder holding a
    learned localiser (``localiser.json``); each is run on the same films: success rate, mean L1–L4
    corner error (mm) and the learned grader's AAC-24 with the predicted landmarks (end to end).
    With grader test-time augmentation on (:func:`grader_tta`), the same films are also graded
    without it (``learned_grader_no_tta``, ``…_landmarks_no_tta``) for a before/after on one run.
    ``detector_supersampling``: passed to :func:`synthetic_case` (``1``: the same films point-sampled;
    reports written before round 14 used the generator of commit 54d3952, see docs/radiograph.md)."""
    from vascalc.errors import VascalcError
    from vascalc.imaging.radiograph import radiograph_from_array
    from vascalc.learn.aac_localiser import corner_error_mm, load_localiser, locate_learned
    from vascalc.radiograph.baseline import grade_baseline
    from vascalc.radiograph.locate import locate_vertebrae

    ensemble = model_dir if isinstance(model_dir, AacEnsemble) else load_aac_ensemble(model_dir)
    learned_loc = {name: load_localiser(name) for name in localisers if name != "model-free"}
    report = {"n_test": n_test, "studies": STUDIES, "calibration": ensemble.metadata.get("calibration"),
              "grader_inference": grader_tta_method(ensemble), "sets": {}}
    with_tta = grader_tta(ensemble) != "none"
    for source in sets:
        n = n_test if source != "phantom_drr" else max(2, n_test // 2)  # the 3-D phantom is slow to make
        cases = _cases([TEST_SEED_OFFSET + seed * 10_000 + i for i in range(n)], source, detector_supersampling)
        truth = np.array([[c.grades[s] for s in SEGMENTS] for c in cases])
        learned, base, reg, plain, no_tta = [], [], [], [], []
        e2e = {name: [] for name in localisers}
        e2e_no_tta = {name: [] for name in localisers}
        corner = {name: [] for name in localisers}
        t_loc = dict.fromkeys(localisers, 0.0)
        failed = dict.fromkeys(localisers, 0)
        t_grader = t_base = 0.0
        for c in cases:
            start = time.perf_counter()
            grades, prob = predict_grades(ensemble, c.image, c.vertebrae, c.pixel_spacing_mm)
            t_grader += time.perf_counter() - start
            learned.append([grades[s] for s in SEGMENTS])
            plain.append(grades_from_probabilities(np.array([prob[s] for s in SEGMENTS])))
            if with_tta:
                g0, _ = predict_grades(ensemble, c.image, c.vertebrae, c.pixel_spacing_mm, tta=False)
                no_tta.append([g0[s] for s in SEGMENTS])
            if ensemble.regressors:
                reg.append(predict_aac24_regression(ensemble, c.image, c.vertebrae, c.pixel_spacing_mm))
            facing = "left" if c.vertebrae[0].corners_px[0][1] < c.vertebrae[0].corners_px[1][1] else "right"
            rad = radiograph_from_array(c.image, c.pixel_spacing_mm, facing=facing)
            start = time.perf_counter()
            b = grade_baseline(rad, spine_geometry(c.vertebrae, c.pixel_spacing_mm)).result
            t_base += time.perf_counter() - start
            base.append([b.grades[s] for s in SEGMENTS])
            for name in localisers:
                start = time.perf_counter()
                try:
                    if name == "model-free":
                        found = locate_vertebrae(radiograph_from_array(c.image, c.pixel_spacing_mm)).vertebrae
                    else:
                        found = locate_learned(learned_loc[name], c.image, c.pixel_spacing_mm)
                    t_loc[name] += time.perf_counter() - start
                    if not {"L1", "L2", "L3", "L4"} <= {v.name for v in found}:
                        raise GeometryError("L1–L4 not all located")
                    corner[name].append(corner_error_mm(c.vertebrae, found, c.pixel_spacing_mm))
                    g2, _ = predict_grades(ensemble, c.image, found, c.pixel_spacing_mm)
                    e2e[name].append((c.aac24, sum(g2.values())))
                    if with_tta:
                        g3, _ = predict_grades(ensemble, c.image, found, c.pixel_spacing_mm, tta=False)
                        e2e_no_tta[name].append((c.aac24, sum(g3.values())))
                except VascalcError:
                    failed[name] += 1
        learned, base, plain = np.array(learned), np.array(base), np.array(plain)
        ref = truth.sum(axis=1)
        entry = {"n": n, "seeds": [cases[0].seed, cases[-1].seed], "true_aac24_mean": round(float(ref.mean()), 3),
                 "true_aac24_max": int(ref.max()), "true_aac24_zero_fraction": round(float(np.mean(ref == 0)), 3),
                 "learned_grader": score_agreement(ref, learned.sum(axis=1), truth, learned),
                 "baseline": score_agreement(ref, base.sum(axis=1), truth, base),
                 "inference_s_per_image": {"learned_grader": round(t_grader / n, 4), "baseline": round(t_base / n, 4)}}
        if calibration_thresholds(ensemble) is not None:
            # the same films graded with CORAL's plain 0.5 rule, to show what the calibration changes
            entry["learned_grader_uncalibrated"] = score_agreement(ref, plain.sum(axis=1), truth, plain)
        if no_tta:
            g0 = np.array(no_tta)
            entry["learned_grader_no_tta"] = score_agreement(ref, g0.sum(axis=1), truth, g0)
        if reg:
            entry["regressor"] = score_agreement(ref, reg)
        for name in localisers:
            label = "model_free" if name == "model-free" else "learned"
            errs = corner[name]
            entry[f"localiser_{label}"] = {
                "located": n - failed[name], "failed": failed[name],
                "corner_error_mm_mean": round(float(np.mean(errs)), 3) if errs else None,
                "corner_error_mm_median": round(float(np.median(errs)), 3) if errs else None,
                "s_per_image": round(t_loc[name] / max(1, n - failed[name]), 4)}
            if len(e2e[name]) >= 3:
                a = np.array(e2e[name], dtype=float)
                entry[f"learned_grader_with_{label}_landmarks"] = score_agreement(a[:, 0], a[:, 1])
            if len(e2e_no_tta[name]) >= 3:
                a = np.array(e2e_no_tta[name], dtype=float)
                entry[f"learned_grader_with_{label}_landmarks_no_tta"] = score_agreement(a[:, 0], a[:, 1])
        report["sets"][source] = entry
    return report


def validate_grader_tta(model_dir: str | Path | AacEnsemble, n_radiograph: int = 200, n_dxa: int = 100, *,
                        localiser: str | Path | None = None, candidates: Sequence[str] | None = None,
                        rules: Sequence[str] = ("threshold",), n_boot: int = 2000, valblur: bool = False,
                        reference: str | None = None) -> dict:
    """Compare grader TTA sets (:data:`TTA_SETS`) and grade rules on **validation** films — the
    selection behind :data:`DEFAULT_TTA` (docs/radiograph.md, *Grader test-time augmentation*).

    Films: :func:`synthetic_case` at seeds ``VALIDATION_SEED_OFFSET + i`` (radiograph chain, i <
    ``n_radiograph``) and ``VALIDATION_SEED_OFFSET + 10 000 + i`` (DXA, i < ``n_dxa``), never training,
    calibration or held-out seeds. Each film is graded with the true landmarks and, when a
    ``localiser`` folder is given, with its landmarks (films it cannot locate are left out of that
    sub-set). Patches are sampled once per film and landmark set; every candidate grades the same
    patches. Returns ``{candidate: {rule: {"<chain>_<true|end_to_end>": {"n", "mae", "icc_a1",
    "bias"}, "pooled_mae", "delta_mae_vs_none", "delta_mae_ci95"}}}`` — Δ against ``"none"`` with the
    same rule, a paired bootstrap over films (``n_boot`` resamples, fixed seed).

    ``valblur``: also grade the blurred copy of each radiograph-chain film (:func:`blur_validation_film`,
    located afresh when a ``localiser`` is given) as sub-sets ``radiograph_valblur_<true|end_to_end>`` —
    the blur robustness that v3's recipe was selected on. ``reference``: a second candidate to pair
    against (e.g. the shipped set), adding ``delta_mae_vs_<reference>`` and its ``_ci95``."""
    from vascalc.errors import VascalcError
    from vascalc.learn.aac_localiser import load_localiser, locate_learned
    from vascalc.stats.icc import icc_two_methods

    ensemble = model_dir if isinstance(model_dir, AacEnsemble) else load_aac_ensemble(model_dir)
    cfg = ensemble.config
    loc = None if localiser is None else load_localiser(localiser)
    names = list(candidates or TTA_SETS)
    if "none" not in names:
        names.insert(0, "none")
    if reference is not None and reference not in names:
        names.append(reference)
    unknown = [n for n in names if n not in TTA_SETS]
    if unknown:
        raise InputError(f"unknown TTA set(s) {', '.join(map(repr, unknown))}; use names of TTA_SETS: {', '.join(TTA_SETS)}")
    subsets: dict[str, tuple[list, list]] = {}
    for source, n, offset in (("radiograph", n_radiograph, 0), ("dxa", n_dxa, 10_000)):
        for c in _cases([VALIDATION_SEED_OFFSET + offset + i for i in range(int(n))], source):
            truth = [c.grades[s] for s in SEGMENTS]
            images = [(source, c.image)]
            if valblur and source == "radiograph":
                images.append((f"{source}_valblur", blur_validation_film(c.image, c.pixel_spacing_mm, c.seed)))
            for prefix, image in images:
                views = [("true", c.vertebrae)]
                if loc is not None:
                    try:
                        found = locate_learned(loc, image, c.pixel_spacing_mm)
                        if {"L1", "L2", "L3", "L4"} <= {v.name for v in found}:
                            views.append(("end_to_end", found))
                    except VascalcError:
                        pass  # an unlocated film is left out of the end-to-end sub-set, as in evaluate_aac
                for label, landmarks in views:
                    try:
                        p = segment_patches(image, landmarks, c.pixel_spacing_mm, **_patch_kwargs(cfg))
                    except VascalcError:
                        continue
                    patches, grades = subsets.setdefault(f"{prefix}_{label}", ([], []))
                    patches.append(p)
                    grades.append(truth)
    if not subsets:
        raise InputError("no validation films to grade (n_radiograph and n_dxa are both 0)")
    errors: dict[tuple[str, str], np.ndarray] = {}
    out: dict = {}
    for name in names:
        probs = {k: tta_probabilities(ensemble.graders, np.stack(p), cfg, TTA_SETS[name]) for k, (p, _) in subsets.items()}
        for rule in rules:
            entry, errs = {}, []
            for key, (_, g) in subsets.items():
                truth = np.asarray(g).sum(axis=1)
                pred = grades_by_rule(probs[key], rule).sum(axis=1)
                errs.append(np.abs(pred - truth))
                entry[key] = {"n": int(truth.size), "mae": round(float(errs[-1].mean()), 4),
                              "icc_a1": round(float(icc_two_methods(truth, pred).icc), 4) if truth.size > 2 else None,
                              "bias": round(float(np.mean(pred - truth)), 4)}
            errors[name, rule] = np.concatenate(errs)
            entry["pooled_mae"] = round(float(errors[name, rule].mean()), 4)
            out.setdefault(name, {})[rule] = entry
    idx = np.random.default_rng(0).integers(0, len(errors["none", rules[0]]), (int(n_boot), len(errors["none", rules[0]])))
    for (name, rule), e in errors.items():
        diff = e - errors["none", rule]
        boot = diff[idx].mean(axis=1)
        out[name][rule]["delta_mae_vs_none"] = round(float(diff.mean()), 4)
        out[name][rule]["delta_mae_ci95"] = [round(float(np.percentile(boot, 2.5)), 4),
                                             round(float(np.percentile(boot, 97.5)), 4)]
        if reference is not None:
            diff = e - errors[reference, rule]
            boot = diff[idx].mean(axis=1)
            out[name][rule][f"delta_mae_vs_{reference}"] = round(float(diff.mean()), 4)
            out[name][rule][f"delta_mae_vs_{reference}_ci95"] = [round(float(np.percentile(boot, 2.5)), 4),
                                                                 round(float(np.percentile(boot, 97.5)), 4)]
    return out


# ----------------------------------------------------------------------------- grader selection (validation films)

#: The blurred validation copy (``valblur``): each validation film with an extra Gaussian blur of FWHM
#: U(1, 2.5) mm and display noise SD U(0.005, 0.02) — about the DXA-VFA chain's sharpness, obtained
#: without drawing a single DXA film, so that blur robustness can be selected on (docs/radiograph.md).
VALBLUR_FWHM_MM = (1.0, 2.5)
VALBLUR_NOISE = (0.005, 0.02)


def blur_validation_film(image: np.ndarray, pixel_spacing_mm, seed: int) -> np.ndarray:
    """The ``valblur`` copy of one display image [0, 1]: blur FWHM U(:data:`VALBLUR_FWHM_MM`) mm and
    noise SD U(:data:`VALBLUR_NOISE`) drawn from ``seed`` (the film's), clipped to [0, 1]."""
    rng = np.random.default_rng([int(seed), 17])
    fwhm_mm = rng.uniform(*VALBLUR_FWHM_MM)
    sd = rng.uniform(*VALBLUR_NOISE)
    sigma_px = fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / np.asarray(pixel_spacing_mm, dtype=float)
    out = ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), sigma_px, mode="nearest")
    return np.clip(out + rng.normal(0.0, sd, out.shape).astype(np.float32), 0.0, 1.0)


def validation_patches(n_val: int, config: AacConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment patches of the validation films (seeds ``VALIDATION_SEED_OFFSET + i``, i < ``n_val``,
    radiograph chain, true landmarks) with ``config``'s sampling: ``(clean (n, 8, t, d), blurred —
    :func:`blur_validation_film` —, true grades (n, 8))``."""
    clean, blurred, grades = [], [], []
    for c in _cases([VALIDATION_SEED_OFFSET + i for i in range(int(n_val))]):
        clean.append(segment_patches(c.image, c.vertebrae, c.pixel_spacing_mm, **_patch_kwargs(config)))
        blurred.append(segment_patches(blur_validation_film(c.image, c.pixel_spacing_mm, c.seed), c.vertebrae,
                                       c.pixel_spacing_mm, **_patch_kwargs(config)))
        grades.append([c.grades[seg] for seg in SEGMENTS])
    if not grades:
        raise InputError("n_val must be ≥ 1 validation film")
    return np.stack(clean), np.stack(blurred), np.array(grades)


def _grade_validation(graders: Sequence, config: AacConfig, clean: np.ndarray, blurred: np.ndarray,
                      grades: np.ndarray, tta: str) -> dict:
    """AAC-24 agreement (:func:`score_agreement`) on the clean and blurred validation patches, without
    TTA and with ``tta``, plus each film's signed AAC-24 error (for paired comparisons)."""
    out = {}
    for label, patches in (("clean", clean), ("blurred", blurred)):
        for name in dict.fromkeys(("none", tta)):
            pred = grades_by_rule(tta_probabilities(graders, patches, config, TTA_SETS[name]))
            key = label if name == tta else f"{label}_no_tta"
            out[key] = score_agreement(grades.sum(axis=1), pred.sum(axis=1), grades, pred)
            out[key]["aac24_errors"] = (pred.sum(axis=1) - grades.sum(axis=1)).astype(int).tolist()
    return out


def validate_grader(model_dir: str | Path | AacEnsemble, n_val: int = 500, *, tta: bool | str | None = None) -> dict:
    """A grader ensemble on the validation films, clean and ``valblur`` (:func:`validation_patches`),
    with the true landmarks: ``{"tta", "clean", "blurred", "clean_no_tta", "blurred_no_tta"}`` (each
    :func:`score_agreement` plus ``aac24_errors``). ``tta``: a :data:`TTA_SETS` name; ``None`` → the
    folder's own (:func:`grader_tta`). Never touches held-out or DXA films — the selection set of the
    demo model's recipe (docs/radiograph.md)."""
    ensemble = model_dir if isinstance(model_dir, AacEnsemble) else load_aac_ensemble(model_dir)
    name = grader_tta(ensemble, tta)
    clean, blurred, grades = validation_patches(n_val, ensemble.config)
    return {"tta": name, **_grade_validation(ensemble.graders, ensemble.config, clean, blurred, grades, name)}


def screen_grader_recipe(config: AacConfig, n_train: int = 1500, n_val: int = 500, *, seed: int = 1,
                         tta: str = DEFAULT_TTA) -> dict:
    """Screen a grader recipe at reduced size: ONE CORAL network trained on generated films (seeds
    0 … ``n_train`` − 1, augmented as in :func:`train_aac_grader`) for ``config.epochs`` epochs with
    training seed ``seed``, then graded on the clean and blurred validation films (:func:`validate_grader`'s
    sets). Returns the agreement dicts plus ``train_s`` (wall), ``train_cpu_s`` (this process's CPU) and
    the 1-minute load average before and after training — on a shared machine wall time alone
    misleads. The table of docs/radiograph.md, *Demo model v3*, was made with it."""
    clean, blurred, vgrades = validation_patches(n_val, config)
    patches, _, grades = synthetic_training_set(range(int(n_train)), config)
    x = grader_inputs(patches, config)
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    net, losses = train_model("coral", x, grades.ravel(), config, seed=seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = {"config": config_dict(config), "n_train": int(n_train), "n_val": int(n_val), "seed": int(seed), "tta": tta,
           "train_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
           "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
           "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)]}
    return {**out, **_grade_validation([net], config, clean, blurred, vgrades, tta)}


def calibrate_aac(model_dir: str | Path, n_cal: int = 400, seed: int = 0, *, source: str = "radiograph",
                  objective: str = "segment", write: bool = True) -> dict:
    """Fit the CORAL decision thresholds τ_k of a trained folder on calibration films and store them
    in ``model.json["calibration"]`` (version :data:`CALIBRATION_VERSION`; no weight changes).

    Films: :func:`synthetic_case` of ``source`` (default the training chain) at seeds
    ``CALIBRATION_SEED_OFFSET + seed·10⁴ + i``, i < ``n_cal`` — never training or held-out films, so
    held-out numbers stay honest. True landmarks; the ensemble's mean P(grade > k) of the 8 segments
    of every film give τ: ``objective="segment"`` (default) minimises the segment-grade error, one
    task at a time (:func:`fit_coral_thresholds`); ``"aac24"`` the AAC-24 MAE over a joint grid
    (:func:`fit_total_thresholds`) — on split halves of 500 calibration films its τ varied widely and
    did not beat the plain rule out of sample, so it is not the default. Returns the calibration entry
    (thresholds, seeds, segment MAE and AAC-24 MAE/bias on the calibration films before and after)."""
    if objective not in ("aac24", "segment"):
        raise InputError(f"unknown calibration objective {objective!r}; use 'aac24' or 'segment'")
    folder = Path(model_dir)
    ensemble = load_aac_ensemble(folder)
    cfg = ensemble.config
    seeds = [CALIBRATION_SEED_OFFSET + seed * 10_000 + i for i in range(int(n_cal))]
    if not seeds:
        raise InputError("calibration needs at least one film (n_cal ≥ 1)")
    probs, grades = [], []
    views = TTA_SETS[grader_tta(ensemble)]  # τ is fitted on the probabilities predict_grades will threshold
    for c in _cases(seeds, source):
        patches = segment_patches(c.image, c.vertebrae, c.pixel_spacing_mm, **_patch_kwargs(cfg))[None]
        probs.append(tta_probabilities(ensemble.graders, patches, cfg, views)[0])
        grades.append([c.grades[s] for s in SEGMENTS])
    prob, truth = np.array(probs), np.array(grades)
    tau = (fit_total_thresholds(prob, truth) if objective == "aac24"
           else fit_coral_thresholds(prob.reshape(-1, prob.shape[-1]), truth.ravel()))

    def summary(pred):
        d = pred.sum(axis=1) - truth.sum(axis=1)
        return {"segment_mae": round(float(np.mean(np.abs(pred - truth))), 4),
                "aac24_mae": round(float(np.mean(np.abs(d))), 4), "aac24_bias": round(float(np.mean(d)), 4)}

    entry = {"version": CALIBRATION_VERSION, "method": "coral_thresholds", "thresholds": [float(t) for t in tau],
             "source": source, "n_films": len(seeds), "seeds": [seeds[0], seeds[-1]],
             "fitted_to": ("minimum mean |AAC-24 error| over films, joint grid" if objective == "aac24"
                           else "minimum segment-grade absolute error, each CORAL task on its own"),
             "before": summary(grades_from_probabilities(prob)), "after": summary(grades_from_probabilities(prob, tau))}
    if write:
        meta = dict(ensemble.metadata)
        meta["calibration"] = entry
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
    return entry


def train_ensemble(patches: np.ndarray | None, crops: np.ndarray, grades: np.ndarray | None, aac24: np.ndarray,
                   config: AacConfig, *, seed: int = 0) -> tuple[list, list, dict]:
    """k-fold cross-validation by image: per fold a CORAL grader (when ``patches (n, 8, t, d)`` and
    ``grades (n, 8)`` are given) and a regressor (``config.regressor``, on ``crops``); returns
    ``(graders, regressors, {"folds", "cross_validation"})`` with out-of-fold agreement."""
    n = len(crops)
    if n < 2 * config.n_folds:
        raise InputError(f"need at least {2 * config.n_folds} images for {config.n_folds} folds, got {n}")
    fold_of = np.random.default_rng([seed, 3]).permutation(n) % config.n_folds
    graders, regressors, folds = [], [], []
    oof_grades = np.zeros((n, len(SEGMENTS)), dtype=int)
    oof_reg = np.zeros(n)
    x_all = None if patches is None else grader_inputs(patches, config)  # (n·8, C, h, w), film-major
    x_shape = None if x_all is None else x_all.shape[1:]
    x_all = None if x_all is None else x_all.reshape(n, len(SEGMENTS), *x_shape)
    for k in range(config.n_folds):
        tr, va = fold_of != k, fold_of == k
        fold = {"fold": k, "n_train_images": int(tr.sum()), "n_val_images": int(va.sum())}
        if patches is not None and grades is not None:
            net, losses = train_model("coral", x_all[tr].reshape(-1, *x_shape), grades[tr].ravel(), config,
                                      seed=seed * 100 + k)
            prob = coral_probabilities(net, x_all[va].reshape(-1, *x_shape))
            oof_grades[va] = grades_from_probabilities(prob).reshape(-1, len(SEGMENTS))
            graders.append(net)
            fold["grader_loss_first_last"] = [round(losses[0], 4), round(losses[-1], 4)]
        if config.regressor or patches is None:
            rnet, rlosses = train_model("regressor", crops[tr], aac24[tr], config, seed=seed * 100 + 50 + k)
            oof_reg[va] = _run(rnet, crops[va])
            regressors.append(rnet)
            fold["regressor_loss_first_last"] = [round(rlosses[0], 4), round(rlosses[-1], 4)]
        folds.append(fold)
    cv = {}
    if graders:
        cv["learned_grader"] = score_agreement(aac24, oof_grades.sum(axis=1), grades, oof_grades)
    if regressors:
        cv["regressor"] = score_agreement(aac24, oof_reg)
    return graders, regressors, {"folds": folds, "cross_validation": cv}


def config_dict(cfg: AacConfig) -> dict:
    return {**asdict(cfg), "band_mm": list(cfg.band_mm)}


def synthetic_training_set(seeds: Sequence[int], config: AacConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training arrays of generated films (:func:`synthetic_case`, radiograph chain) at ``seeds``, each
    film augmented by :func:`augment_film` with ``config``'s blur/noise (drawn from its seed): segment
    patches ``(n, 8, t, d)``, lumbar crops ``(n, rows, cols)`` and true grades ``(n, 8)``."""
    patches, crops, grades = [], [], []
    for s in seeds:
        c = synthetic_case(int(s))
        image = c.image
        if config.augment_blur_mm > 0 or config.augment_noise > 0:
            image = augment_film(image, c.pixel_spacing_mm, c.seed, max_blur_fwhm_mm=config.augment_blur_mm,
                                 max_noise=config.augment_noise)
        p, cr = case_inputs(image, c.vertebrae, c.pixel_spacing_mm, config)
        patches.append(p)
        crops.append(cr)
        grades.append([c.grades[seg] for seg in SEGMENTS])
    return np.stack(patches), np.stack(crops), np.array(grades)


def train_aac_grader(out_dir: str | Path, n_train: int = 60, seed: int = 0, epochs: int = 25, *,
                     config: AacConfig | None = None, n_test: int = 0,
                     test_sets: Sequence[str] = ("radiograph",), localisers: Sequence[str] = ()) -> dict:
    """Generate ``n_train`` varied lateral films (:func:`synthetic_case`, radiograph chain, seeds
    ``seed·10⁴ + i``), train the CORAL grader and the whole-score regressor with
    ``config.n_folds``-fold cross-validation by image, save the fold ensemble to ``out_dir`` and
    write ``cv_report.json`` / ``cv_report.md``. With ``n_test`` > 0 the report adds
    :func:`evaluate_aac` on held-out seeds for each of ``test_sets``. Returns the report dict."""
    base = config or AacConfig()
    cfg = AacConfig(**{**asdict(base), "epochs": epochs, "seed": seed})
    if n_train < 2 * cfg.n_folds:
        raise InputError(f"need at least {2 * cfg.n_folds} training images for {cfg.n_folds} folds, got {n_train}")
    start = time.perf_counter()
    patches, crops, grades = synthetic_training_set(range(seed * 10_000, seed * 10_000 + n_train), cfg)
    aac = grades.sum(axis=1).astype(np.float32)
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    graders, regressors, cv = train_ensemble(patches, crops, grades, aac, cfg, seed=seed)
    train_s = time.perf_counter() - start
    from vascalc.phantoms.lateral_spine import DETECTOR_SUPERSAMPLING

    report = {"config": config_dict(cfg), "n_train": n_train, "train_seeds": [seed * 10_000, seed * 10_000 + n_train - 1],
              "train_source": "vascalc.phantoms.lateral_spine, radiograph chain, 0.4–0.9 mm pixels, area-integrating "
                              f"detector ({DETECTOR_SUPERSAMPLING} × {DETECTOR_SUPERSAMPLING} sub-pixel rays per edge pixel)" + (
                  f"; half of the films with extra blur FWHM ≤ {cfg.augment_blur_mm} mm and noise SD ≤ "
                  f"{cfg.augment_noise} (augment_film)" if cfg.augment_blur_mm > 0 or cfg.augment_noise > 0 else ""),
              "grade_counts": np.bincount(grades.ravel(), minlength=4).tolist(),
              "aac24_histogram": np.bincount(aac.astype(int), minlength=25).tolist(), **cv,
              "data_generation_s": round(data_s, 2), "training_s": round(train_s, 2),
              "note": "synthetic projected films, not clinical radiographs"}
    save_aac_ensemble(Path(out_dir), graders, regressors, {"config": report["config"], "n_train": n_train,
                                                           "segments": list(SEGMENTS),
                                                           "trained_on": report["train_source"]})
    if n_test > 0:
        report["held_out"] = evaluate_aac(AacEnsemble(tuple(graders), tuple(regressors), {"config": report["config"]}),
                                          n_test=n_test, seed=seed, sets=test_sets, localisers=localisers)
    write_report(Path(out_dir), report)
    return report


def write_report(out: Path, report: dict) -> None:
    """``cv_report.json`` and a Markdown table ``cv_report.md`` (CV and held-out sets)."""
    (out / "cv_report.json").write_text(json.dumps(report, indent=2, default=float))
    cfg = report["config"]
    lines = ["# AAC-24 learned models: cross-validation report", "",
             f"Training data: {report.get('train_source', 'labelled folder')} — **not clinical radiographs** "
             "unless the folder held real films.", "",
             f"Training images: {report['n_train']}; folds: {cfg['n_folds']}; epochs: {cfg['epochs']}; "
             f"training time: {report['training_s']} s (+ {report['data_generation_s']} s preparing images).", "",
             "| set | model | n | MAE | ICC(A,1) | Spearman | 3-class acc. | BA bias [LoA] |",
             "|---|---|---|---|---|---|---|---|"]
    rows = [("CV (out of fold)", report["cross_validation"])]
    for name, entry in report.get("held_out", {}).get("sets", {}).items():
        rows.append((f"held-out {name}", {k: v for k, v in entry.items() if k in
                                          ("learned_grader", "regressor", "baseline")
                                          or k.startswith("learned_grader_with")}))
    for name, models in rows:
        for model, m in models.items():
            ba = m.get("bland_altman", {})
            lines.append(f"| {name} | {model} | {m['n']} | {m['mae']} | {m['icc_a1']} | {m['spearman']} | "
                         f"{m['accuracy_3class']} | {ba.get('bias')} [{ba.get('loa_lower')}, {ba.get('loa_upper')}] |")
    lines += ["", "Studies (clinical films): S1 MAE 1.69 / 1.92, ICC 0.913 / 0.874; S2 MAE 1.55, ICC 0.916, "
              "3-class accuracy 82.9 %."]
    (out / "cv_report.md").write_text("\n".join(lines) + "\n")


__all__ = ["VALBLUR_FWHM_MM", "VALBLUR_NOISE", "blur_validation_film", "screen_grader_recipe",
           "synthetic_training_set", "validate_grader", "validation_patches", "DEFAULT_TTA", "GRADE_RULES", "PatchPerturbation", "TTA_SETS", "grader_tta", "grader_tta_method",
           "grades_by_rule", "perturb_patches", "tta_probabilities", "validate_grader_tta", "CALIBRATION_SEED_OFFSET", "calibrate_aac", "calibration_thresholds", "fit_coral_thresholds", "fit_total_thresholds", "AacConfig", "AacEnsemble", "SyntheticCase", "TEST_SETS", "build_coral_network", "build_regressor",
           "augment_film", "case_inputs", "grader_inputs", "highpass_residual", "LOSSES", "LEGACY_SETTINGS",
           "rank_contrastive_loss", "VALIDATION_SEED_OFFSET", "coral_levels", "coral_loss", "coral_probabilities", "evaluate_aac",
           "grades_from_probabilities", "load_aac_ensemble", "lumbar_crop", "phantom_drr_case",
           "predict_aac24_regression", "predict_grades", "save_aac_ensemble", "score_agreement", "segment_patches",
           "synthetic_case", "train_aac_grader", "train_ensemble", "train_model", "write_report"]
