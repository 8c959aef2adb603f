"""Labelled lesions from chest phantoms, truth scores, and training of the lesion classifier.

A phantom cohort case is fully determined by its seed (:func:`case_parameters`): slice increment
and thickness (1–5 mm), noise, plaque rate and, when the phantom offers them, varied anatomy,
distractor calcium and motion blur. Each candidate cluster of :func:`score_coronary` is labelled
by the coronary calcium visible in the noise-free image of the same phantom that it overlaps
(:func:`cluster_visible_truth`, the labels of the shipped model) or, with
``label_reference="scan"``, by the plaque under it (:func:`cluster_truth`), the label consistent
with the benchmark's scan-reader reference (docs/coronary.md, round 7: tried, not shipped).
Training seeds and benchmark seeds are disjoint ranges (:data:`TRAIN_SEED_BASE`,
:data:`BENCH_SEED_BASE`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from vascalc.calcium.score import agatston_parts
from vascalc.coronary.assign import BASE_FEATURES, CLASSES, FEATURES, LesionModel
from vascalc.coronary.candidates import TOL, structure_2d
from vascalc.coronary.score import slice_convention
from vascalc.errors import InputError

#: training phantoms use seeds TRAIN_SEED_BASE + k, the benchmark BENCH_SEED_BASE + k: never the same
TRAIN_SEED_BASE = 100_000
BENCH_SEED_BASE = 900_000
#: development cohort (tuning and error analysis, docs/coronary.md "Round 2"): DEV_SEED_BASE + k, k < 1000,
#: disjoint from training (< 100_000 + 10_000·seed + cohort) and benchmark phantoms
DEV_SEED_BASE = 500_000
CLASS_OF_VESSEL = {"rca": 1, "lad": 2, "left_main": 2, "lcx": 3}
#: (slice increment mm, slice thickness mm) of the cohort: 1–5 mm, overlapping and contiguous
SLICE_SETTINGS = ((1.0, 1.0), (1.5, 3.0), (2.0, 2.0), (2.5, 2.5), (3.0, 3.0), (2.5, 5.0), (5.0, 5.0))
NOISE_SD_HU = (10.0, 15.0, 20.0, 25.0)


def case_parameters(seed: int) -> dict:
    """Phantom keyword arguments of one cohort case (deterministic in ``seed``)."""
    from vascalc.phantoms import make_chest_phantom

    rng = np.random.default_rng([seed, 7])
    dz, thick = SLICE_SETTINGS[int(rng.integers(len(SLICE_SETTINGS)))]
    n_slices = int(np.ceil(160.0 / dz))
    params: dict = {"seed": int(seed), "shape": (n_slices, 256, 256), "spacing_mm": (dz, 1.25, 1.25),
                    "slice_thickness_mm": thick, "noise_sd_hu": float(NOISE_SD_HU[int(rng.integers(len(NOISE_SD_HU)))]),
                    "plaque_rate": None}
    accepted = inspect.signature(make_chest_phantom).parameters
    # the phantom draws anatomy, distractor kinds and motion blur from its own seed
    optional = {"vary_anatomy": True, "distractors": "random", "motion_blur_mm": "random"}
    params.update({k: v for k, v in optional.items() if k in accepted})
    return params


def make_case(seed: int, noise_free: bool = False):
    """The phantom of one cohort case (``noise_free``: the same phantom without noise)."""
    from vascalc.phantoms import make_chest_phantom

    params = case_parameters(seed)
    if noise_free:
        params["noise_sd_hu"] = 0.0
    return make_chest_phantom(**params)


def _vessel_of_plaque(truth: dict) -> dict[int, str]:
    return {int(p["id"]): p["vessel"] for p in truth.get("plaques", [])}


def cluster_truth(clusters: np.ndarray, box: tuple[slice, ...], phantom) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster 1…n: (truth class 0–3, distractor flag). The truth is the plaque (or distractor)
    covering most of the cluster's voxels, looked up one voxel around them so the blur halo counts;
    a cluster on no truth calcium (noise, bone) is class 0 and not a distractor."""
    n = int(clusters.max()) if clusters.size else 0
    classes = np.zeros(n, dtype=np.int64)
    distract = np.zeros(n, dtype=bool)
    if n == 0:
        return classes, distract
    vessel = _vessel_of_plaque(phantom.truth)
    lut = np.zeros(max(vessel, default=0) + 1, dtype=np.int64)
    aorta = np.zeros_like(lut, dtype=bool)
    for pid, name in vessel.items():
        lut[pid] = CLASS_OF_VESSEL.get(name, 0)
        aorta[pid] = name not in CLASS_OF_VESSEL
    grow = np.ones((3, 3, 3), dtype=bool)
    pid = ndi.grey_dilation(phantom.plaque_ids[box], footprint=grow)
    did = phantom.distractor_ids
    did = ndi.grey_dilation(did[box], footprint=grow) if did is not None else np.zeros_like(pid)
    z, y, x = np.nonzero(clusters)
    c = clusters[z, y, x].astype(np.int64)
    p = pid[z, y, x].astype(np.int64)
    d = did[z, y, x].astype(np.int64)
    # code each voxel's truth: coronary class 1–3, 4 = aortic plaque or distractor, 0 none
    code = np.where(p > 0, np.where(lut[np.clip(p, 0, lut.size - 1)] > 0, lut[np.clip(p, 0, lut.size - 1)], 4),
                    np.where(d > 0, 4, 0))
    votes = np.zeros((n + 1, 5), dtype=np.int64)
    np.add.at(votes, (c, code), 1)
    votes[:, 0] = 0  # a cluster touching any truth calcium takes that calcium's class
    best = np.argmax(votes, axis=1)[1:]
    has = votes[1:].sum(axis=1) > 0
    classes[has & (best < 4)] = best[has & (best < 4)]
    distract[has & (best == 4)] = True
    return classes, distract


def truth_agatston(phantom, normalisation_mode: str = "auto", threshold_hu: float = 130.0,
                   min_area_mm2: float = 1.0) -> dict[str, dict[str, float]]:
    """Truth scores per artery (``rca``, ``lad`` incl. left main, ``lcx``) and ``total``.

    Truth Agatston [T]: the noise-free, blur-free phantom (each voxel = calcium fraction f of the
    plaque's HU plus 1 − f of the vessel wall's HU) scored with the same rules (≥ 130 HU,
    8-connected 2-D lesions ≥ 1 mm², classic weights, same slice convention); only voxels of
    coronary plaques count. Truth volume = the exact plaque volume (``truth["structures"]``).
    """
    truth = phantom.truth
    grid = phantom.volume.grid
    dz, dy, dx = (float(s) for s in grid.spacing_mm)
    norm = slice_convention(normalisation_mode, dz, phantom.volume.info.slice_thickness_mm)
    wall = float(truth["hu_model"]["wall_hu"])
    plaque_hu = {int(p["id"]): float(p["hu"]) for p in truth.get("plaques", [])}
    vessel = _vessel_of_plaque(truth)
    out: dict[str, dict[str, float]] = {}
    ids = phantom.plaque_ids
    box = ndi.find_objects((ids > 0).astype(np.uint8))
    structures = truth["structures"]
    for k, artery in enumerate(("rca", "lad", "lcx"), start=1):
        mine = [pid for pid, name in vessel.items() if CLASS_OF_VESSEL.get(name) == k]
        raw = 0.0
        if mine and box and box[0] is not None:
            sub = ids[box[0]]
            sel = np.isin(sub, mine)
            lut = np.zeros(int(sub.max()) + 1)
            for pid in mine:
                lut[pid] = plaque_hu[pid]
            f = phantom.calcium_fraction[box[0]]
            ideal = np.where(sel, f * lut[sub] + (1.0 - f) * wall, -1000.0)
            cand = ideal >= threshold_hu
            lab, _ = ndi.label(cand, structure=structure_2d(8))
            z, y, x = np.nonzero(cand)
            l2 = lab[z, y, x]
            area = np.bincount(l2) * dy * dx
            keep = (area >= min_area_mm2 * (1 - TOL))[l2]
            if keep.any():
                _, _, _, score = agatston_parts(l2[keep], ideal[z[keep], y[keep], x[keep]], z[keep], dy * dx,
                                                (threshold_hu, 200.0, 300.0, 400.0))
                raw = float(score.sum())
        volume = float(structures["rca" if k == 1 else ("lcx" if k == 3 else "lad")]["calcium_volume_mm3"])
        out[artery] = {"agatston_raw": raw, "agatston_3mm": raw if norm == "none" else raw * dz / 3.0,
                       "calcium_volume_mm3": volume}
    out["total"] = {key: float(sum(out[a][key] for a in ("rca", "lad", "lcx")))
                    for key in ("agatston_raw", "agatston_3mm", "calcium_volume_mm3")}
    return out


def visible_calcium(phantom, noise_free_hu: np.ndarray, threshold_hu: float = 130.0, min_area_mm2: float = 1.0
                    ) -> tuple[tuple[slice, ...] | None, np.ndarray, np.ndarray, np.ndarray]:
    """Coronary calcium visible in the *noise-free image* of the phantom (same seed, noise 0).

    2-D lesions (≥ 130 HU, 8-connected, ≥ 1 mm²) of the noise-free image, each given to the artery
    whose plaque (looked up one voxel around, as :func:`cluster_truth`) covers most of its voxels;
    lesions on aortic plaques, distractors or no calcium are not coronary. Returns (box, artery
    code map 0–3 on the box, 2-D lesion ids on the box, noise-free HU on the box).
    """
    grid = phantom.volume.grid
    vessel = _vessel_of_plaque(phantom.truth)
    box = ndi.find_objects((phantom.plaque_ids > 0).astype(np.uint8))
    if not box or box[0] is None:
        return None, np.zeros((0, 0, 0), np.uint8), np.zeros((0, 0, 0), np.int32), np.zeros((0, 0, 0))
    pad = tuple(slice(max(0, b.start - 2), min(n, b.stop + 2)) for b, n in zip(box[0], grid.shape))
    dy, dx = (float(v) for v in grid.spacing_mm[1:])
    hu = noise_free_hu[pad].astype(np.float64)
    lut = np.zeros(max(vessel, default=0) + 1, dtype=np.int64)
    for pid, name in vessel.items():
        lut[pid] = CLASS_OF_VESSEL.get(name, 4)
    pid = ndi.grey_dilation(phantom.plaque_ids[pad], footprint=np.ones((3, 3, 3), dtype=bool))
    lab, _ = ndi.label(hu >= threshold_hu, structure=structure_2d(8))
    area = np.bincount(lab.ravel()) * dy * dx
    ok = area >= min_area_mm2 * (1 - TOL)
    ok[0] = False
    lab = np.where(ok[lab], lab, 0)
    votes = np.zeros((int(lab.max()) + 1, 5), dtype=np.int64)
    sel = lab > 0
    np.add.at(votes, (lab[sel], lut[pid[sel]]), 1)
    votes[:, 0] = 0
    owner = np.argmax(votes, axis=1)
    owner[(votes.sum(axis=1) == 0) | (owner == 4)] = 0
    return pad, owner[lab].astype(np.uint8), lab.astype(np.int32), hu


def truth_image_agatston(phantom, noise_free_hu: np.ndarray, normalisation_mode: str = "auto",
                         threshold_hu: float = 130.0, min_area_mm2: float = 1.0) -> dict[str, dict[str, float]]:
    """Reference scores from the noise-free image (:func:`visible_calcium`): the calcium a reader sees
    in the scan, with the scanner's blur and slice profile but no noise [T]. Same weights and slice
    convention as the scorer."""
    grid = phantom.volume.grid
    dz, dy, dx = (float(v) for v in grid.spacing_mm)
    norm = slice_convention(normalisation_mode, dz, phantom.volume.info.slice_thickness_mm)
    pad, code, lab, hu = visible_calcium(phantom, noise_free_hu, threshold_hu, min_area_mm2)
    out: dict[str, dict[str, float]] = {}
    for k, artery in enumerate(("rca", "lad", "lcx"), start=1):
        raw = 0.0
        if pad is not None and (code == k).any():
            z, y, x = np.nonzero(code == k)
            _, _, _, score = agatston_parts(lab[z, y, x], hu[z, y, x], z, dy * dx, (threshold_hu, 200.0, 300.0, 400.0))
            raw = float(score.sum())
        out[artery] = {"agatston_raw": raw, "agatston_3mm": raw if norm == "none" else raw * dz / 3.0}
    out["total"] = {key: float(sum(out[a][key] for a in ("rca", "lad", "lcx"))) for key in ("agatston_raw", "agatston_3mm")}
    return out


def noise_limited_presence(phantom, noise_free_hu: np.ndarray, noise_sd_hu: float, threshold_hu: float = 130.0,
                           min_area_mm2: float = 1.0, n_draws: int = 200, seed: int = 0) -> dict[str, float]:
    """Per artery, the probability that a *perfect* threshold reader of the noisy scan (noise-free
    image + white noise of ``noise_sd_hu``) finds coronary calcium on that artery: some voxel within
    one voxel of the artery's plaques reading ≥ ``threshold_hu`` in a 2-D lesion ≥ ``min_area_mm2``
    (:func:`vascalc.coronary.noisefloor.artery_presence_probability`). With ``noise_sd_hu`` = 0 it is
    the reference presence of :func:`truth_image_agatston` (1 or 0). Averaged over a cohort it is the
    ceiling of the sensitivity (over reference-positive arteries) and 1 − it the ceiling of the
    specificity (over reference-negative ones) that any scorer of the noisy scan can reach against
    the noise-free reference (docs/coronary.md, round 4)."""
    from vascalc.coronary.noisefloor import artery_presence_probability

    vessel = _vessel_of_plaque(phantom.truth)
    out = {artery: 0.0 for artery in ("rca", "lad", "lcx")}
    box = ndi.find_objects((phantom.plaque_ids > 0).astype(np.uint8))
    if not box or box[0] is None:
        return out
    grid = phantom.volume.grid
    pad = tuple(slice(max(0, b.start - 2), min(n, b.stop + 2)) for b, n in zip(box[0], grid.shape))
    lut = np.zeros(max(vessel, default=0) + 1, dtype=np.int64)
    for pid, name in vessel.items():
        lut[pid] = CLASS_OF_VESSEL.get(name, 0)
    # one voxel around the plaques, as the reference's lookup (the blur halo belongs to the plaque)
    near = lut[ndi.grey_dilation(phantom.plaque_ids[pad], footprint=np.ones((3, 3, 3), dtype=bool))]
    spacing = tuple(float(v) for v in grid.spacing_mm)
    probability = artery_presence_probability(np.asarray(noise_free_hu[pad], dtype=np.float64), near, noise_sd_hu,
                                              spacing, threshold_hu, min_area_mm2, n_draws, seed)
    for k, artery in enumerate(("rca", "lad", "lcx"), start=1):
        out[artery] = float(probability.get(k, 0.0))
    return out


def cluster_visible_truth(clusters: np.ndarray, box: tuple[slice, ...], phantom, noise_free_hu: np.ndarray
                          ) -> np.ndarray:
    """Per cluster 1…n: the artery (1–3) of the noise-free-image calcium it overlaps (one voxel
    around), else 0: the training label consistent with the benchmark's reference."""
    n = int(clusters.max()) if clusters.size else 0
    out = np.zeros(n, dtype=np.int64)
    pad, code, _, _ = visible_calcium(phantom, noise_free_hu)
    if n == 0 or pad is None:
        return out
    full = np.zeros(phantom.volume.grid.shape, dtype=np.uint8)
    full[pad] = code
    near = ndi.grey_dilation(full[box], footprint=np.ones((3, 3, 3), dtype=bool))
    z, y, x = np.nonzero(clusters)
    c = clusters[z, y, x].astype(np.int64)
    votes = np.zeros((n + 1, 4), dtype=np.int64)
    np.add.at(votes, (c, near[z, y, x].astype(np.int64)), 1)
    votes[:, 0] = 0
    best = np.argmax(votes, axis=1)[1:]
    out[votes[1:].sum(axis=1) > 0] = best[votes[1:].sum(axis=1) > 0]
    return out


@dataclass(frozen=True, eq=False)
class LesionTable:
    """Labelled lesions: features (n, F), class 0–3, case seed (for grouped cross-validation)."""

    features: np.ndarray
    classes: np.ndarray
    groups: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.features, columns=list(FEATURES))
        frame.insert(0, "case", self.groups)
        frame["artery"] = [CLASSES[int(c)] for c in self.classes]
        return frame


#: training labels: "noise_free" = the calcium visible in the noise-free image
#: (:func:`cluster_visible_truth`), the labels of the shipped model (round 6); "scan" = the
#: plaque under the candidate (:func:`cluster_truth`), what the scan-reader reference counts.
#: The default stays "noise_free" so that ``vascalc train coronary`` refits the shipped model: the
#: scan labels did not lower the development cohort's scan-reader errors (14 → 14) and accepted
#: more noise specks (1 → 8), because noise-lifted plaque and a noise speck look alike to the
#: candidate features (docs/coronary.md, round 7).
LABEL_REFERENCES = ("noise_free", "scan")


def phantom_lesions(seeds: list[int], progress: Callable[[str], None] | None = None,
                    label_reference: str = "noise_free") -> LesionTable:
    """Candidates of every phantom in ``seeds`` with their truth class (rules only, no model).

    ``label_reference`` (:data:`LABEL_REFERENCES`): "noise_free" labels a candidate by the coronary
    calcium of the noise-free image it overlaps (the shipped model's labels); "scan" by the coronary
    plaque under it, so a candidate on real plaque is coronary even where the noise-free image stays
    below 130 HU (the scan reader counts it). Distractors and aortic plaque are class 0 in both."""
    from vascalc.workflows.coronary import score_coronary

    if label_reference not in LABEL_REFERENCES:
        raise InputError(f"label_reference must be one of {', '.join(LABEL_REFERENCES)}; got {label_reference!r}")
    report = progress or (lambda message: None)
    feats, classes, groups = [], [], []
    for i, seed in enumerate(seeds):
        report(f"phantom {i + 1}/{len(seeds)} (seed {seed})")
        phantom = make_case(seed)
        result = score_coronary(phantom.volume, segmenter="builtin", model="rules", force=True)
        if label_reference == "scan":
            cls, _ = cluster_truth(result.cluster_labels, result.cluster_box, phantom)
        else:
            clean = make_case(seed, noise_free=True)
            cls = cluster_visible_truth(result.cluster_labels, result.cluster_box, phantom, clean.volume.hu)
        feats.append(result.features)
        classes.append(cls)
        groups.append(np.full(cls.size, seed))
    return LesionTable(np.concatenate(feats) if feats else np.zeros((0, len(FEATURES))),
                       np.concatenate(classes).astype(np.int64), np.concatenate(groups).astype(np.int64))


def lesions_from_csv(path: str | Path) -> LesionTable:
    """Labelled lesions from CSV files (a file or a folder of ``*.csv``): one column per feature name
    of :data:`FEATURES`, ``artery`` (none|rca|lad|lcx) and optionally ``case``."""
    path = Path(path)
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise InputError(f"no lesion CSV found at {path}")
    frames = []
    for f in files:
        try:
            # only empty cells are missing: pandas' default NA words would turn the class "None" into NaN
            frames.append(pd.read_csv(f, keep_default_na=False, na_values=[""]))
        except (OSError, ValueError, UnicodeDecodeError) as error:  # EmptyDataError and ParserError are ValueErrors
            raise InputError(f"{f.name}: cannot read as a lesion CSV ({error}); write it with "
                             "'vascalc train coronary --export-lesions'") from None
    frame = pd.concat(frames, ignore_index=True)
    missing = [c for c in (*FEATURES, "artery") if c not in frame.columns]
    if missing:
        raise InputError(f"lesion CSV lacks column(s) {', '.join(missing)}; write it with 'vascalc train coronary "
                         "--export-lesions'")
    values = frame[list(FEATURES)].apply(pd.to_numeric, errors="coerce")
    # text, empty cells and ±inf in a feature: the forest would train on a made-up value or fail later
    bad = ~np.isfinite(values.to_numpy(np.float64))
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise InputError(f"lesion CSV line {row + 2} has a missing, non-numeric or infinite {FEATURES[col]!r} "
                         f"({str(frame[FEATURES[col]].iloc[row])[:20]!r}); every feature must be a finite number")
    frame[list(FEATURES)] = values
    frame["artery"] = frame["artery"].map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    unknown = sorted({str(v) for v in frame["artery"]} - set(CLASSES))
    if unknown:
        raise InputError(f"unknown or missing artery value(s) {unknown}; use none, rca, lad or lcx in every row")
    classes = frame["artery"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy(np.int64)
    groups = frame["case"].astype("category").cat.codes.to_numpy(np.int64) if "case" in frame else np.arange(len(frame))
    return LesionTable(frame[list(FEATURES)].to_numpy(np.float64), classes, groups)


#: columns of the detector forest (coronary or not) of the shipped model: the position, size and HU
#: features plus the lesion's place in the epicardial-fat envelope and its plate shape (pericardial
#: calcium lies beyond the fat and is a plate). The other round-3 context features sharpen the
#: artery split (LAD vs LCX at the bifurcation) but, added to the detector, did not lower the
#: per-artery errors on both the development cohort and grouped cross-validation (docs/coronary.md,
#: round 3), so they feed the artery forest only.
DETECTOR_FEATURES = BASE_FEATURES + ("envelope_radius", "plate_index")

#: the aortic-root frame of :mod:`vascalc.coronary.anatomy`: distance to the root, height above it, in-plane offset
ROOT_FEATURES = ("root_distance_mm", "root_height_mm", "root_inplane_mm")

#: columns of the artery forest (RCA / LAD / LCX split): every feature except the root frame. With the
#: root found on nearly every scan (round 7) the detector uses it to reject aortic-root calcium, but
#: in the artery split it let the phantoms' root position override the grooves: an LCX plaque 4 mm
#: past the left-main bifurcation went to the LAD (docs/coronary.md, round 7).
ARTERY_FEATURES = tuple(f for f in FEATURES if f not in ROOT_FEATURES)

#: trees per forest (detector and artery forest alike) and their depth. Round 10 (docs/coronary.md): 240
#: trees instead of 60 average out part of the forest variance that moved borderline lesions across the
#: 0.7 threshold (validation cohort 610000–610239: 16 → 13 per-artery errors); depth 16 counted more
#: misses, and 240 trees of depth 12 keep the shipped file under 10 MB (9.4 MB).
N_TREES = 240
MAX_DEPTH = 12


def fit_forest(table: LesionTable, seed: int = 0, n_trees: int = N_TREES, max_depth: int = MAX_DEPTH,
               features: tuple[str, ...] = FEATURES):
    """A scikit-learn random forest on the columns ``features`` of the table (deterministic: fixed
    seed, one thread; balanced class weights, leaves of ≥ 2 lesions)."""
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=n_trees, max_depth=max_depth, min_samples_leaf=2,
                                    class_weight="balanced", random_state=seed, n_jobs=1)
    forest.fit(table.features[:, [FEATURES.index(f) for f in features]].astype(np.float32), table.classes)
    return forest


def fit_model(table: LesionTable, seed: int = 0, n_trees: int = N_TREES, info: dict | None = None,
              detector_features: tuple[str, ...] = DETECTOR_FEATURES, artery_forest: bool = True) -> LesionModel:
    """The lesion model: a detector forest on ``detector_features`` and, with ``artery_forest``, a
    second forest on :data:`ARTERY_FEATURES` whose artery split is used (:class:`LesionModel`)."""
    detector = fit_forest(table, seed, n_trees, features=detector_features)
    artery = fit_forest(table, seed, n_trees, features=ARTERY_FEATURES) if artery_forest else None
    return LesionModel.from_sklearn(detector, info or {}, detector_features, artery, ARTERY_FEATURES)


def cross_validate(table: LesionTable, seed: int = 0, folds: int = 5, n_trees: int = N_TREES,
                   detector_features: tuple[str, ...] = DETECTOR_FEATURES, artery_forest: bool = True) -> dict:
    """Grouped (by case) k-fold accuracy and per-class recall of the model."""
    from sklearn.model_selection import GroupKFold

    k = min(folds, len(np.unique(table.groups)))
    if k < 2:
        return {"folds": 0}
    pred = np.zeros_like(table.classes)
    for train, test in GroupKFold(n_splits=k).split(table.features, table.classes, table.groups):
        model = fit_model(LesionTable(table.features[train], table.classes[train], table.groups[train]), seed, n_trees,
                          detector_features=detector_features, artery_forest=artery_forest)
        pred[test] = np.argmax(model.predict_proba(table.features[test]), axis=1)
    recall = {CLASSES[c]: float((pred[table.classes == c] == c).mean()) for c in range(len(CLASSES))
              if (table.classes == c).any()}
    return {"folds": k, "accuracy": float((pred == table.classes).mean()), "recall": recall,
            "n_lesions": int(table.classes.size)}


def train_lesion_model(table: LesionTable, seed: int = 0, description: str = "", n_trees: int = N_TREES,
                       folds: int = 5, detector_features: tuple[str, ...] = DETECTOR_FEATURES,
                       artery_forest: bool = True) -> tuple[LesionModel, dict]:
    """Fit the model on every lesion of ``table`` and return (model, grouped ``folds``-fold
    cross-validation report; ``folds`` < 2 skips it)."""
    if table.classes.size < 10 or np.unique(table.classes).size < 2:
        raise InputError(f"too few labelled lesions to train ({table.classes.size}, classes "
                         f"{sorted(set(CLASSES[int(c)] for c in table.classes))}); use more cases")
    report = cross_validate(table, seed, folds, n_trees, detector_features, artery_forest) if folds >= 2 \
        else {"folds": 0}
    counts = {CLASSES[c]: int((table.classes == c).sum()) for c in range(len(CLASSES))}
    info = {"kind": "random_forest" + (" + artery forest" if artery_forest else ""), "n_trees": n_trees,
            "max_depth": MAX_DEPTH, "seed": seed,
            "class_counts": counts, "cross_validation": report, "description": description,
            "detector_features": list(detector_features),
            "artery_features": list(ARTERY_FEATURES) if artery_forest else []}
    return fit_model(table, seed, n_trees, info, detector_features, artery_forest), report
