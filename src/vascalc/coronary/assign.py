"""Lesion features and artery assignment: anatomical rules, and a learned lesion classifier.

Every candidate cluster gets a feature vector (:data:`FEATURES`) describing where it lies in the
heart frame (:mod:`vascalc.coronary.anatomy`), how far it is from the heart surface and the aortic
root, its size, HU and shape. :func:`assign_rules` applies the groove rules; a
:class:`LesionModel` (random forest trained by :func:`vascalc.coronary.train.train_lesion_model`)
gives per-class probabilities. Classes: 0 not coronary, 1 RCA, 2 LAD (with left main), 3 LCX.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from vascalc.coronary.anatomy import HeartFrame
from vascalc.coronary.context import CONTEXT_FEATURES, FatEnvelope, context_features, fat_mask
from vascalc.errors import InputError
from vascalc.imaging.grid import Grid

CLASSES = ("none", "rca", "lad", "lcx")
#: position, size and HU features (round 1–2 models use exactly these)
BASE_FEATURES = ("u", "v", "w", "cos_azimuth", "sin_azimuth", "radius_norm", "surface_distance_mm",
                 "root_distance_mm", "root_height_mm", "root_inplane_mm", "log_volume_mm3", "peak_hu", "mean_hu",
                 "n_slices", "elongation", "extent_mm", "long_axis_norm", "cos_azimuth_long", "sin_azimuth_long",
                 "noise_sd_hu", "peak_snr", "slice_increment_mm", "fat_distance_mm", "fat_fraction",
                 "local_mean_snr")
#: every feature :func:`lesion_features` computes, in column order; units in the names. A model may use
#: any subset (it records its own feature names and reads those columns)
FEATURES = BASE_FEATURES + CONTEXT_FEATURES
#: stand-in distance when the aortic root was not found (far away, so rules never reject by it)
NO_ROOT_MM = 250.0
MODEL_FORMAT = "vascalc-coronary-lesion-forest"
#: file names :meth:`LesionModel.load` looks for in a model folder, in this order
MODEL_FILE_NAMES = ("coronary_model.json", "coronary_model.json.gz")
MODEL_VERSION = 2  # 2: optional artery forest (round 3); version-1 files still load


@dataclass(frozen=True, eq=False)
class LesionFeatures:
    """Per-cluster measurements (row i = cluster id i+1) and the feature matrix for the classifier."""

    matrix: np.ndarray                  # (n, len(FEATURES)) float64
    n_voxels: np.ndarray                # (n,)
    centroid_zyx: np.ndarray            # (n, 3) full-grid indices
    centroid_lps_mm: np.ndarray         # (n, 3)
    azimuth_deg: np.ndarray             # (n,) 0 = patient left, 90 = posterior, 270 = anterior
    envelope: FatEnvelope | None = None  # the epicardial-fat ellipsoid behind the envelope_* features

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, FEATURES.index(name)]


def fat_distance_mm(hu_crop: np.ndarray, spacing_mm: tuple[float, float, float], fat: np.ndarray | None = None
                    ) -> np.ndarray:
    """Distance (mm) to the nearest fat voxel (in-plane 3×3 mean HU −190…−30): coronary calcium
    lies in epicardial fat, noise specks in myocardium or blood do not, nor does valve calcium."""
    fat = fat_mask(hu_crop) if fat is None else fat
    if not fat.any():
        return np.full(hu_crop.shape, 50.0, dtype=np.float32)
    return ndi.distance_transform_edt(~fat, sampling=spacing_mm).astype(np.float32)


def signed_surface_distance_mm(heart_crop: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Distance to the heart surface in mm, positive outside the heart and negative inside."""
    outside = ndi.distance_transform_edt(~heart_crop, sampling=spacing_mm)
    inside = ndi.distance_transform_edt(heart_crop, sampling=spacing_mm)
    return (outside - inside).astype(np.float32)


def lesion_features(clusters: np.ndarray, n: int, hu_crop: np.ndarray, surface_mm: np.ndarray,
                    box: tuple[slice, ...], grid: Grid, frame: HeartFrame, blood_hu: float = 40.0,
                    noise_sd_hu: float = 15.0, fat_mm: np.ndarray | None = None) -> LesionFeatures:
    """Features of clusters 1…n of the crop map ``clusters`` (bincount sums, no voxel loops).

    ``blood_hu`` and ``noise_sd_hu`` (heart centre median and robust SD) put each peak in units of
    the scan's noise: a noise speck is a few SD above blood, calcium many. ``fat_mm``
    (:func:`fat_distance_mm` on the crop) gives the nearest fat per lesion and the fraction of its
    voxels within 2 mm of fat. The shape, fat-side, vessel-direction and fat-envelope columns are
    :func:`vascalc.coronary.context.context_features` (docs/coronary.md, round 3)."""
    z, y, x = np.nonzero(clusters)
    c = clusters[z, y, x].astype(np.int64)
    m = n + 1
    count = np.bincount(c, minlength=m)[1:].astype(float)
    safe = np.maximum(count, 1)
    idx = np.stack([z + box[0].start, y + box[1].start, x + box[2].start], axis=1).astype(float)
    lps = grid.index_to_lps(idx) if idx.size else np.zeros((0, 3))
    cen_idx = np.stack([np.bincount(c, weights=idx[:, k], minlength=m)[1:] for k in range(3)], axis=1) / safe[:, None]
    cen = np.stack([np.bincount(c, weights=lps[:, k], minlength=m)[1:] for k in range(3)], axis=1) / safe[:, None]
    # second moments (mm²) for the shape: eigenvalues of each cluster's covariance
    cov = np.zeros((n, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            s = np.bincount(c, weights=lps[:, a] * lps[:, b], minlength=m)[1:] / safe - cen[:, a] * cen[:, b]
            cov[:, a, b] = cov[:, b, a] = s
    # a voxel's own extent keeps one-voxel lesions from having zero variance
    cov += np.diag(np.asarray(grid.spacing_mm[::-1], dtype=float) ** 2 / 12.0)[None]
    eig = np.linalg.eigvalsh(cov) if n else np.zeros((0, 3))
    elong = np.sqrt(eig[:, 2] / np.maximum(eig[:, 0], 1e-9)) if n else np.zeros(0)
    extent = 2.0 * np.sqrt(5.0 * eig[:, 2]) if n else np.zeros(0)
    hu = hu_crop[z, y, x].astype(float)
    peak = np.full(m, -np.inf)
    np.maximum.at(peak, c, hu)
    mean = np.bincount(c, weights=hu, minlength=m)[1:] / safe
    surf = np.bincount(c, weights=surface_mm[z, y, x].astype(float), minlength=m)[1:] / safe
    slices = np.unique(c * (clusters.shape[0] + 1) + z)
    n_slices = np.bincount(slices // (clusters.shape[0] + 1), minlength=m)[1:]
    uvw = frame.normalised(cen) if n else np.zeros((0, 3))
    az = np.degrees(np.arctan2(uvw[:, 1], uvw[:, 0])) % 360.0 if n else np.zeros(0)
    if frame.aortic_root_lps_mm is not None and n:
        d = cen - np.asarray(frame.aortic_root_lps_mm)
        root_dist = np.linalg.norm(d, axis=1)
        root_h = d[:, 2]
        root_in = np.linalg.norm(d[:, :2], axis=1)
    else:
        root_dist = root_in = np.full(n, NO_ROOT_MM)
        root_h = np.zeros(n)
    vol = count * grid.voxel_volume_mm3
    along, az_long = frame.long_axis_coordinates(cen) if n else (np.zeros(0), np.zeros(0))
    fat = fat_mask(hu_crop) if n else None
    if fat_mm is None:
        fat_mm = fat_distance_mm(hu_crop, tuple(float(v) for v in grid.spacing_mm), fat)
    fd = fat_mm[z, y, x].astype(float)
    fat_min = np.full(m, np.inf)
    np.minimum.at(fat_min, c, fd)
    fat_frac = np.bincount(c, weights=(fd <= 2.0).astype(float), minlength=m)[1:] / safe
    # in-plane 3×3 mean: white noise drops to σ/3 there, while blurred calcium spreads over its
    # neighbours and keeps its excess; the best such mean per lesion, in those noise units
    local = ndi.uniform_filter(hu_crop.astype(np.float32), size=(1, 3, 3))[z, y, x].astype(float)
    local_max = np.full(m, -np.inf)
    np.maximum.at(local_max, c, local)
    noise = max(float(noise_sd_hu), 1.0)
    spacing = tuple(float(v) for v in grid.spacing_mm)
    offset = np.array([b.start for b in box], dtype=float)
    context, envelope = context_features(
        clusters, n, hu_crop, surface_mm, lambda index: grid.index_to_lps(index + offset), spacing,
        np.asarray(frame.centre_lps_mm), np.asarray(frame.long_axis), float(np.mean(frame.semi_axes_mm)), fat)
    matrix = np.column_stack([
        uvw[:, 0], uvw[:, 1], uvw[:, 2], np.cos(np.radians(az)), np.sin(np.radians(az)), np.linalg.norm(uvw, axis=1),
        surf, root_dist, root_h, root_in, np.log(np.maximum(vol, 1e-3)), peak[1:], mean, n_slices, elong, extent,
        along, np.cos(np.radians(az_long)), np.sin(np.radians(az_long)), np.full(n, noise),
        (peak[1:] - blood_hu) / noise, np.full(n, float(grid.spacing_mm[0])), np.minimum(fat_min[1:], 50.0), fat_frac,
        (local_max[1:] - blood_hu) / (noise / 3.0), *(context[name] for name in CONTEXT_FEATURES),
    ]) if n else np.zeros((0, len(FEATURES)))
    return LesionFeatures(matrix=matrix.astype(np.float64), n_voxels=count.astype(np.int64), centroid_zyx=cen_idx,
                          centroid_lps_mm=cen, azimuth_deg=az, envelope=envelope)


@dataclass(frozen=True)
class RuleSettings:
    """Groove rules [T]: azimuth sectors (degrees, 0 = patient left, 90 posterior, 270 anterior)
    and the distances that make a lesion non-coronary. Sectors: RCA [rca_from, lad_from), LAD
    [lad_from, lcx_from), LCX the rest (left AV groove). Non-coronary: deeper than
    ``max_depth_mm`` inside the heart (valves, mitral annulus), farther than ``max_outside_mm``
    outside it (pericardium, chest wall, nodes), within the aortic root radius + ``root_margin_mm``
    of its axis and at most ``root_below_mm`` below its base (valve, root wall)."""

    rca_from_deg: float = 95.0
    lad_from_deg: float = 250.0
    lcx_from_deg: float = 315.0
    max_depth_mm: float = 6.0
    max_outside_mm: float = 9.0
    root_margin_mm: float = 3.0
    root_below_mm: float = 15.0
    fade_deg: float = 25.0


def assign_rules(features: LesionFeatures, frame: HeartFrame, settings: RuleSettings = RuleSettings()
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Rule-based class (0 none, 1 RCA, 2 LAD, 3 LCX) and confidence (0.5–1, from the angular
    distance to the nearest sector edge) per cluster."""
    az = features.azimuth_deg
    n = az.size
    cls = np.full(n, 3, dtype=np.int64)
    cls[(az >= settings.rca_from_deg) & (az < settings.lad_from_deg)] = 1
    cls[(az >= settings.lad_from_deg) & (az < settings.lcx_from_deg)] = 2
    edges = np.array([settings.rca_from_deg, settings.lad_from_deg, settings.lcx_from_deg])
    gap = np.abs((az[:, None] - edges[None, :] + 180.0) % 360.0 - 180.0).min(axis=1) if n else np.zeros(0)
    conf = 0.5 + 0.5 * np.clip(gap / settings.fade_deg, 0.0, 1.0)
    surf = features.column("surface_distance_mm")
    reject = (surf < -settings.max_depth_mm) | (surf > settings.max_outside_mm)
    if frame.aortic_root_lps_mm is not None and frame.aortic_root_radius_mm is not None:
        in_root = (features.column("root_inplane_mm") <= frame.aortic_root_radius_mm + settings.root_margin_mm) & \
                  (features.column("root_height_mm") >= -settings.root_below_mm)
        reject |= in_root
    cls[reject] = 0
    conf[reject] = 0.9
    return cls, conf


# ---- learned classifier: a random forest stored as plain arrays (JSON), evaluated with numpy -----------------

def _forest_proba(trees: tuple[dict, ...], x: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean over trees of the leaf class fractions (as ``RandomForestClassifier.predict_proba``)."""
    n = x.shape[0]
    out = np.zeros((n, n_classes))
    rows = np.arange(n)
    for tree in trees:
        node = np.zeros(n, dtype=np.int64)
        left, right, feat, thr, value = tree["left"], tree["right"], tree["feature"], tree["threshold"], tree["value"]
        # walk every sample down at once: one step per tree level
        for _ in range(tree["depth"] + 1):
            leaf = left[node] < 0
            if leaf.all():
                break
            go_left = x[rows, np.maximum(feat[node], 0)] <= thr[node]
            node = np.where(leaf, node, np.where(go_left, left[node], right[node]))
        out += value[node]
    return out / max(len(trees), 1)


def _columns(x: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """The columns ``features`` of a :data:`FEATURES` matrix (a matrix already that wide is taken as is)."""
    return x if x.shape[1] == len(features) else x[:, [FEATURES.index(name) for name in features]]


def _trees_from_sklearn(forest) -> tuple[dict, ...]:
    trees = []
    for est in forest.estimators_:
        t = est.tree_
        value = t.value[:, 0, :]
        value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-12)
        full = np.zeros((value.shape[0], len(CLASSES)))
        full[:, np.asarray(forest.classes_, dtype=int)] = value
        trees.append({"depth": int(t.max_depth), "left": t.children_left.astype(np.int64),
                      "right": t.children_right.astype(np.int64), "feature": t.feature.astype(np.int64),
                      "threshold": t.threshold.astype(np.float64), "value": full})
    return tuple(trees)


def _trees_to_json(trees: tuple[dict, ...]) -> list[dict]:
    return [{"depth": int(t["depth"]), "left": t["left"].tolist(), "right": t["right"].tolist(),
             "feature": t["feature"].tolist(), "threshold": [float(v) for v in t["threshold"]],
             "value": np.round(t["value"], 6).tolist()} for t in trees]


def _trees_from_json(items: list[dict]) -> tuple[dict, ...]:
    return tuple({"depth": int(t["depth"]), "left": np.asarray(t["left"], dtype=np.int64),
                  "right": np.asarray(t["right"], dtype=np.int64), "feature": np.asarray(t["feature"], dtype=np.int64),
                  "threshold": np.asarray(t["threshold"], dtype=np.float64),
                  "value": np.asarray(t["value"], dtype=np.float64)} for t in items)


@dataclass(frozen=True, eq=False)
class LesionModel:
    """Random forests held as arrays (no pickle): per tree the node arrays of scikit-learn's
    ``tree_`` (children, split feature, threshold, leaf class fractions).

    ``trees`` over ``features`` give P(not coronary) and, alone, the artery too. With an *artery
    forest* (``artery_trees`` over ``artery_features``, round 3) the artery split comes from it
    instead: P(artery k) = (1 − P(none)) · its share of the artery forest's coronary probability.
    Both feature lists are subsets of :data:`FEATURES`; :meth:`predict_proba` takes the full
    :data:`FEATURES` matrix and reads each forest's columns by name, so models of earlier rounds
    (fewer features, no artery forest) keep working."""

    trees: tuple[dict, ...]
    features: tuple[str, ...]
    classes: tuple[str, ...]
    info: dict
    artery_trees: tuple[dict, ...] = ()
    artery_features: tuple[str, ...] = ()

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """(n, 4) class probabilities (none, rca, lad, lcx) for rows of the :data:`FEATURES` matrix."""
        x = np.asarray(matrix, dtype=np.float32).astype(np.float64)
        out = _forest_proba(self.trees, _columns(x, self.features), len(self.classes))
        if self.artery_trees and x.shape[0]:
            split = _forest_proba(self.artery_trees, _columns(x, self.artery_features), len(self.classes))[:, 1:]
            total = split.sum(axis=1, keepdims=True)
            # a lesion the artery forest finds no coronary support for keeps the detector's own split
            share = np.where(total > 0, split / np.maximum(total, 1e-12), out[:, 1:] / np.maximum(
                out[:, 1:].sum(axis=1, keepdims=True), 1e-12))
            out = np.column_stack([out[:, 0], (1.0 - out[:, :1]) * share])
        return out

    def to_json(self) -> dict:
        data = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "features": list(self.features),
                "classes": list(self.classes), "info": self.info, "trees": _trees_to_json(self.trees)}
        if self.artery_trees:
            data["artery_forest"] = {"features": list(self.artery_features), "trees": _trees_to_json(self.artery_trees)}
        return data

    def save(self, path: str | Path) -> Path:
        """Write the model as compact JSON; a name ending in ``.gz`` gzip-compresses it (≈ 3.4 × smaller
        for forests; header time stamp 0, so the same model always gives the same bytes)."""
        path = Path(path)
        text = (json.dumps(self.to_json(), separators=(",", ":")) + "\n").encode("utf-8")
        path.write_bytes(gzip.compress(text, mtime=0) if path.name.endswith(".gz") else text)
        return path

    @classmethod
    def from_sklearn(cls, forest, info: dict, features: tuple[str, ...] = FEATURES, artery_forest=None,
                     artery_features: tuple[str, ...] = FEATURES) -> "LesionModel":
        """Copy the node arrays of fitted ``RandomForestClassifier``s (classes 0…3): ``forest`` on the
        columns ``features``, and optionally the artery forest on ``artery_features``."""
        return cls(trees=_trees_from_sklearn(forest), features=tuple(features), classes=CLASSES, info=info,
                   artery_trees=() if artery_forest is None else _trees_from_sklearn(artery_forest),
                   artery_features=() if artery_forest is None else tuple(artery_features))

    @classmethod
    def load(cls, path: str | Path) -> "LesionModel":
        """Read a model JSON written by :meth:`save`; :class:`InputError` when it is not one."""
        path = Path(path)
        if path.is_dir():
            path = next((path / n for n in MODEL_FILE_NAMES if (path / n).exists()), path / MODEL_FILE_NAMES[0])
        try:
            raw = path.read_bytes()
            data = json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)
        except (OSError, ValueError, EOFError, zlib.error) as error:
            raise InputError(f"cannot read the coronary lesion model {path.name}: {error}") from None
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise InputError(f"{path.name} is not a vascalc coronary lesion model (made by 'vascalc train coronary')")
        artery = data.get("artery_forest") or {"features": [], "trees": []}
        if not set(data["features"]) | set(artery["features"]) <= set(FEATURES) or tuple(data["classes"]) != CLASSES:
            raise InputError(f"{path.name} was trained on other features; retrain it with this vascalc version")
        return cls(trees=_trees_from_json(data["trees"]), features=tuple(data["features"]), classes=CLASSES,
                   info=data.get("info", {}), artery_trees=_trees_from_json(artery["trees"]),
                   artery_features=tuple(artery["features"]))


def default_model_path() -> Path:
    """The model shipped with vascalc (trained on chest phantoms by ``vascalc train coronary``;
    gzip-compressed since round 10's 240-tree forests, 9.4 MB as plain JSON)."""
    return Path(__file__).with_name("coronary_model.json.gz")
