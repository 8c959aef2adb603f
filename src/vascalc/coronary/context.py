"""Lesion shape and surroundings: plate versus tube, fat on each side, and the direction of the vessel.

Round-3 features of the coronary lesion classifier (docs/coronary.md, issue 8), computed from the
image only:

* **shape** (:func:`shape_axes`): eigen-decomposition of each lesion's voxel covariance. A
  pericardial calcification is a plate (two long axes, one thin: middle/smallest eigenvalue ratio
  large); a coronary plaque is a short tube segment or a speck (middle ≈ smallest).
* **fat on each side** (:func:`side_fat_fractions`): the shell of voxels 0–``shell_mm`` around each
  lesion, split by the signed distance to the heart surface into an inner half (towards the heart)
  and an outer half. Coronary calcium lies inside the epicardial fat, so both halves hold fat;
  pericardial calcium lies just outside it, with fat on the inner side only.
* **vessel direction** (:func:`vessel_direction`): the non-fat voxels in the same depth layer of the
  epicardial fat around a lesion are the vessel that carries it (coronaries show as soft-tissue
  tubes in the fat even without contrast). Their principal axis says where the vessel runs: the
  proximal LAD runs down the anterior interventricular groove (steep, along the long axis), the
  proximal LCX around the heart in the left atrioventricular groove (flat, tangential) — the two
  leave the left main bifurcation in directions roughly 90° apart, which position alone cannot tell
  near the bifurcation.

All functions are vectorised over voxels (``bincount`` sums per lesion; one distance transform
gives every voxel its nearest lesion); the only loops are over the three coordinate pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from vascalc.coronary.anatomy import axial_coordinates

#: smoothed HU range of fat, as :func:`vascalc.coronary.assign.fat_distance_mm`
FAT_HU = (-190.0, -30.0)
#: crop indices (m, 3) → LPS mm (m, 3)
PointsLPS = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class ShapeAxes:
    """Per lesion: covariance eigenvalues (mm², ascending) and eigenvectors (columns, LPS), and the
    derived plate index √(λ2/λ1) (large for a plate) and tube index √(λ3/λ2) (large for a rod)."""

    eigenvalues_mm2: np.ndarray     # (n, 3)
    eigenvectors: np.ndarray        # (n, 3, 3), column k ↔ eigenvalue k
    plate_index: np.ndarray         # (n,)
    tube_index: np.ndarray          # (n,)
    thickness_mm: np.ndarray        # (n,) 2·√(3·λ1): the full thickness of a uniform slab

    @property
    def main_axis(self) -> np.ndarray:
        """(n, 3) unit vector of the largest spread (the lesion's long axis)."""
        return self.eigenvectors[:, :, 2]


def weighted_covariance(labels: np.ndarray, points: np.ndarray, n: int, weights: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weight sum (n,), centroid (n, 3), covariance (n, 3, 3)) of ``points`` (m, 3) grouped by
    ``labels`` (m,) in 1…n, via ``bincount`` (no loop over points)."""
    m = n + 1
    w = np.ones(labels.size) if weights is None else np.asarray(weights, dtype=float)
    total = np.bincount(labels, weights=w, minlength=m)[1:]
    safe = np.maximum(total, 1e-12)
    cen = np.stack([np.bincount(labels, weights=w * points[:, k], minlength=m)[1:] for k in range(3)], axis=1)
    cen /= safe[:, None]
    cov = np.zeros((n, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            s = np.bincount(labels, weights=w * points[:, a] * points[:, b], minlength=m)[1:] / safe
            cov[:, a, b] = cov[:, b, a] = s - cen[:, a] * cen[:, b]
    return total, cen, cov


def shape_axes(cov_mm2: np.ndarray, spacing_mm: tuple[float, float, float]) -> ShapeAxes:
    """Shape of each lesion from its voxel covariance ``cov_mm2`` (n, 3, 3; LPS mm², x y z order).

    A voxel's own extent (spacing²/12 per axis) is added so that a one-voxel lesion has the
    voxel's shape, not a zero variance. For a uniform disc of radius R and thickness t the
    eigenvalues are t²/12, R²/4, R²/4 (plate index R·√3/t); for a rod of length L and radius r,
    r²/4, r²/4, L²/12 (plate index 1)."""
    cov = np.asarray(cov_mm2, dtype=float) + np.diag(np.asarray(spacing_mm[::-1], dtype=float) ** 2 / 12.0)[None]
    if cov.shape[0] == 0:
        empty = np.zeros(0)
        return ShapeAxes(np.zeros((0, 3)), np.zeros((0, 3, 3)), empty, empty, empty)
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 1e-9)
    return ShapeAxes(eigenvalues_mm2=values, eigenvectors=vectors,
                     plate_index=np.sqrt(values[:, 1] / values[:, 0]), tube_index=np.sqrt(values[:, 2] / values[:, 1]),
                     thickness_mm=2.0 * np.sqrt(3.0 * values[:, 0]))


def nearest_lesion(clusters: np.ndarray, spacing_mm: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(id of the nearest lesion, distance to it in mm) for every voxel of the crop (one EDT)."""
    if not clusters.any():
        return np.zeros(clusters.shape, dtype=clusters.dtype), np.full(clusters.shape, np.inf, dtype=np.float32)
    dist, idx = ndi.distance_transform_edt(clusters == 0, sampling=spacing_mm, return_indices=True)
    return clusters[tuple(idx)], dist.astype(np.float32)


def fat_mask(hu_crop: np.ndarray) -> np.ndarray:
    """Fat: in-plane 3×3 mean HU in :data:`FAT_HU` (the mean keeps noise from making fat of blood)."""
    smooth = ndi.uniform_filter(hu_crop.astype(np.float32), size=(1, 3, 3))
    return (smooth >= FAT_HU[0]) & (smooth <= FAT_HU[1])


def side_fat_fractions(nearest: np.ndarray, distance_mm: np.ndarray, clusters: np.ndarray, n: int,
                       fat: np.ndarray, surface_mm: np.ndarray, lesion_surface_mm: np.ndarray,
                       shell_mm: float = 3.0, side_margin_mm: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(inner, outer) fat fraction of the shell 0 < d ≤ ``shell_mm`` around each lesion.

    A shell voxel is *inner* when its signed heart-surface distance is more than ``side_margin_mm``
    below the lesion's mean (towards the heart), *outer* when more than that above; a side with no
    voxel has fraction NaN → reported as 0.5 (unknown)."""
    sel = (distance_mm > 0) & (distance_mm <= shell_mm) & (clusters == 0) & (nearest > 0)
    lab = nearest[sel].astype(np.int64)
    depth = surface_mm[sel] - lesion_surface_mm[lab - 1]
    is_fat = fat[sel].astype(float)
    out = []
    for side in (depth < -side_margin_mm, depth > side_margin_mm):
        count = np.bincount(lab[side], minlength=n + 1)[1:]
        fatc = np.bincount(lab[side], weights=is_fat[side], minlength=n + 1)[1:]
        out.append(np.where(count > 0, fatc / np.maximum(count, 1), 0.5))
    return out[0], out[1]


def vessel_direction(nearest: np.ndarray, distance_mm: np.ndarray, n: int, fat: np.ndarray, surface_mm: np.ndarray,
                     lesion_surface_mm: np.ndarray, points_lps: PointsLPS, radius_mm: float = 8.0,
                     layer_mm: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal axis of the non-fat voxels in each lesion's layer of the epicardial fat.

    Layer = voxels within ``radius_mm`` of the lesion (nearest lesion: this one), outside the heart
    and at a signed surface distance within ``layer_mm`` of the lesion's, not fat. ``points_lps``
    maps (m, 3) crop indices to LPS mm. Returns (unit axis (n, 3), linearity √(λ3/λ2) (≥ 1; about 1
    when the layer shows no tube), number of layer voxels (n,))."""
    sel = (nearest > 0) & (distance_mm <= radius_mm) & ~fat & (surface_mm > 0)
    z, y, x = np.nonzero(sel)
    lab = nearest[z, y, x].astype(np.int64)
    keep = np.abs(surface_mm[z, y, x] - lesion_surface_mm[lab - 1]) <= layer_mm
    z, y, x, lab = z[keep], y[keep], x[keep], lab[keep]
    count = np.bincount(lab, minlength=n + 1)[1:]
    axis = np.zeros((n, 3))
    linear = np.ones(n)
    if lab.size:
        pts = points_lps(np.stack([z, y, x], axis=1).astype(float))
        _, _, cov = weighted_covariance(lab, pts, n)
        values, vectors = np.linalg.eigh(cov + 1e-6 * np.eye(3)[None])
        ok = count >= 3
        axis[ok] = vectors[ok, :, 2]
        linear[ok] = np.sqrt(np.maximum(values[ok, 2], 1e-9) / np.maximum(values[ok, 1], 1e-9))
    return axis, linear, count


def direction_components(axis: np.ndarray, centroid_lps_mm: np.ndarray, centre_lps_mm: np.ndarray,
                         long_axis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """|components| of unit axes (n, 3) along the patient vertical, along the heart's long axis, and
    around the heart (the horizontal tangent of the circle about the heart centre through the lesion);
    sign-free because an axis has no direction. A zero axis (no vessel seen) gives zeros."""
    rel = np.asarray(centroid_lps_mm, dtype=float) - np.asarray(centre_lps_mm, dtype=float)[None]
    tangent = np.stack([-rel[:, 1], rel[:, 0], np.zeros(len(rel))], axis=1)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    return (np.abs(axis[:, 2]), np.abs(axis @ np.asarray(long_axis, dtype=float)),
            np.abs(np.einsum("ij,ij->i", axis, tangent)))


@dataclass(frozen=True)
class FatEnvelope:
    """The ellipsoid fitted to the epicardial fat around the heart (LPS mm): centre, semi-axes and
    their unit axes (columns of ``axes``), with ``long_axis`` the axis nearest the patient's vertical,
    signed base → apex (inferior); ``n_points`` fat voxels were fitted (0 for a stand-in built from
    the heart mask's frame). A failed fit gives no envelope (``None``), never a partial one."""

    centre_lps_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    axes: tuple[tuple[float, float, float], ...]     # rows = axes (unit vectors)
    long_axis: tuple[float, float, float]
    n_points: int

    def ellipsoidal_radius(self, lps: np.ndarray) -> np.ndarray:
        """‖((p − c)·axes) / semi-axes‖: 1 on the fitted envelope, < 1 inside, > 1 outside."""
        rel = np.asarray(lps, dtype=float) - np.asarray(self.centre_lps_mm)
        return np.linalg.norm(rel @ np.asarray(self.axes).T / np.asarray(self.semi_axes_mm), axis=1)

    def long_axis_coordinates(self, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position along the long axis in mm from the centre, azimuth around it in degrees: 0 towards
        the patient's left, turning posterior), as :meth:`HeartFrame.long_axis_coordinates`."""
        return axial_coordinates(lps, self.centre_lps_mm, self.long_axis)


def fit_ellipsoid(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Least-squares ellipsoid through points (m, 3): (centre, semi-axes, axes as columns), ``None``
    when the quadric is not an ellipsoid. Algebraic fit of a x² + b y² + c z² + 2d xy + 2e xz + 2f yz
    + 2g x + 2h y + 2i z = 1 on centred, scaled points (a linear solve; numpy has no ellipsoid fit)."""
    p = np.asarray(points, dtype=float)
    if p.shape[0] < 9:
        return None
    c0 = p.mean(axis=0)
    scale = float(np.abs(p - c0).max()) or 1.0
    x, y, z = ((p - c0) / scale).T
    design = np.column_stack([x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z, 2 * x, 2 * y, 2 * z])
    v, *_ = np.linalg.lstsq(design, np.ones(x.size), rcond=None)
    a = np.array([[v[0], v[3], v[4]], [v[3], v[1], v[5]], [v[4], v[5], v[2]]])
    try:
        centre = -np.linalg.solve(a, v[6:])
    except np.linalg.LinAlgError:
        return None
    k = 1.0 + centre @ a @ centre
    values, vectors = np.linalg.eigh(a / k)
    if not np.all(values > 0):
        return None
    return c0 + centre * scale, scale / np.sqrt(values), vectors


def fat_envelope(fat: np.ndarray, surface_mm: np.ndarray, points_lps: PointsLPS, band_mm: float = 10.0,
                 max_points: int = 20_000, min_points: int = 500) -> FatEnvelope | None:
    """The ellipsoid of the fat within ``band_mm`` of the heart surface (the epicardial fat wraps the
    heart): a heart centre and long axis that do not depend on how much of the great vessels and
    mediastinum a heart mask takes in. ``None`` with fewer than ``min_points`` fat voxels or a
    failed fit; the caller then keeps the mask's frame."""
    sel = fat & (np.abs(surface_mm) <= band_mm)
    idx = np.argwhere(sel)
    if idx.shape[0] < min_points:
        return None
    # an even subsample: the fit needs thousands of points, not all of them
    idx = idx[:: max(1, idx.shape[0] // max_points)]
    fit = fit_ellipsoid(points_lps(idx.astype(float)))
    if fit is None:
        return None
    centre, semi, vectors = fit
    k = int(np.argmax(np.abs(vectors[2, :])))
    axis = vectors[:, k] * (-1.0 if vectors[2, k] > 0 else 1.0)
    return FatEnvelope(centre_lps_mm=tuple(float(v) for v in centre), semi_axes_mm=tuple(float(v) for v in semi),
                       axes=tuple(tuple(float(v) for v in vectors[:, j]) for j in range(3)),
                       long_axis=tuple(float(v) for v in axis), n_points=int(idx.shape[0]))


#: the context features, in classifier column order (appended to the position/size/HU features)
CONTEXT_FEATURES = ("plate_index", "tube_index", "thickness_mm", "fat_inner_fraction", "fat_outer_fraction",
                    "vessel_vertical", "vessel_along_long", "vessel_around", "vessel_linearity", "log_vessel_voxels",
                    "lesion_vertical", "lesion_along_long", "lesion_around", "envelope_radius", "envelope_along",
                    "envelope_cos_azimuth", "envelope_sin_azimuth", "envelope_x", "envelope_y", "envelope_z",
                    "vessel_along_envelope")


def context_features(clusters: np.ndarray, n: int, hu_crop: np.ndarray, surface_mm: np.ndarray,
                     points_lps: PointsLPS, spacing_mm: tuple[float, float, float], centre_lps_mm: np.ndarray,
                     long_axis: np.ndarray, mean_semi_mm: float, fat: np.ndarray | None = None
                     ) -> tuple[dict[str, np.ndarray], FatEnvelope | None]:
    """Every :data:`CONTEXT_FEATURES` column for clusters 1…n of the crop map ``clusters``, and the
    fat envelope (``None`` when it could not be fitted: the heart mask's centre, long axis and mean
    semi-axis ``mean_semi_mm`` stand in for it).

    ``surface_mm``: signed distance to the heart surface on the crop; ``points_lps``: crop indices
    (m, 3) → LPS mm. ``envelope_radius`` is the lesion centroid's ellipsoidal radius in the fat
    envelope (≈ 1 in the epicardial fat, > 1 beyond it: pericardium); ``envelope_along`` its
    position along the envelope's long axis and ``envelope_x/y/z`` its offset from the envelope
    centre along the patient axes, both in units of the mean semi-axis; the azimuth is taken around
    the envelope's long axis (0 = patient left, 90 = posterior)."""
    if n == 0:
        return {name: np.zeros(0) for name in CONTEXT_FEATURES}, None
    fat = fat_mask(hu_crop) if fat is None else fat
    z, y, x = np.nonzero(clusters)
    lab = clusters[z, y, x].astype(np.int64)
    _, cen, cov = weighted_covariance(lab, points_lps(np.stack([z, y, x], axis=1).astype(float)), n)
    shape = shape_axes(cov, spacing_mm)
    count = np.maximum(np.bincount(lab, minlength=n + 1)[1:], 1)
    lesion_surface = np.bincount(lab, weights=surface_mm[z, y, x].astype(float), minlength=n + 1)[1:] / count
    near, dist = nearest_lesion(clusters, spacing_mm)
    inner, outer = side_fat_fractions(near, dist, clusters, n, fat, surface_mm, lesion_surface)
    axis, linear, n_layer = vessel_direction(near, dist, n, fat, surface_mm, lesion_surface, points_lps)
    env = fat_envelope(fat, surface_mm, points_lps)
    if env is None:
        centre, env_axis, semi = np.asarray(centre_lps_mm, dtype=float), np.asarray(long_axis, dtype=float), \
            np.full(3, float(mean_semi_mm))
        radius = np.linalg.norm(cen - centre, axis=1) / max(float(mean_semi_mm), 1.0)
        stand_in = FatEnvelope(tuple(centre), tuple(semi), ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
                               tuple(env_axis), 0)
        along, azimuth = stand_in.long_axis_coordinates(cen)
    else:
        centre, env_axis, semi = np.asarray(env.centre_lps_mm), np.asarray(env.long_axis), np.asarray(env.semi_axes_mm)
        radius = env.ellipsoidal_radius(cen)
        along, azimuth = env.long_axis_coordinates(cen)
    scale = max(float(np.mean(semi)), 1.0)
    rel = (cen - centre) / scale
    v_vert, v_long, v_around = direction_components(axis, cen, centre_lps_mm, long_axis)
    l_vert, l_long, l_around = direction_components(shape.main_axis, cen, centre_lps_mm, long_axis)
    columns = {
        "plate_index": shape.plate_index, "tube_index": shape.tube_index, "thickness_mm": shape.thickness_mm,
        "fat_inner_fraction": inner, "fat_outer_fraction": outer, "vessel_vertical": v_vert,
        "vessel_along_long": v_long, "vessel_around": v_around, "vessel_linearity": linear,
        "log_vessel_voxels": np.log1p(n_layer), "lesion_vertical": l_vert, "lesion_along_long": l_long,
        "lesion_around": l_around, "envelope_radius": radius, "envelope_along": along / scale,
        "envelope_cos_azimuth": np.cos(np.radians(azimuth)), "envelope_sin_azimuth": np.sin(np.radians(azimuth)),
        "envelope_x": rel[:, 0], "envelope_y": rel[:, 1], "envelope_z": rel[:, 2],
        "vessel_along_envelope": np.abs(axis @ env_axis),
    }
    return columns, env
