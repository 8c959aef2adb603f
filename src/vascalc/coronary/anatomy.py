"""A heart-centred frame from the data: heart centroid and extent, and the aortic root.

The frame is aligned with the patient axes (x left, y posterior, z superior, LPS) and scaled by
the heart's semi-axes, so a lesion's azimuth around the heart says which groove it lies in: the
right atrioventricular groove (RCA) faces right-anterior, the anterior interventricular groove
(LAD) anterior-left, the left atrioventricular groove (LCX) left-posterior. Aligning with the
patient rather than the heart's own oblique long axis is a simplification [T]: the principal axes
of a near-spherical heart mask are unstable, whereas the patient axes are not; the long axis
(largest principal axis) and the azimuth around it are given as well, and the classifier weighs both. The aortic root
is the round blood-filled tube leaving the heart's base superiorly-anteriorly; it is taken from
an ``aorta`` label when one is given, else found as the widest round soft-tissue section in the
slices just above the heart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from vascalc.imaging.grid import Grid


def axial_coordinates(lps: np.ndarray, centre_lps_mm, axis) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) LPS mm → (position along the unit ``axis`` from ``centre_lps_mm`` in mm, azimuth around it
    in degrees): 0 towards the patient's left, turning towards posterior, in the plane across the axis."""
    rel = np.asarray(lps, dtype=float) - np.asarray(centre_lps_mm, dtype=float)
    axis = np.asarray(axis, dtype=float)
    e1 = np.array([1.0, 0.0, 0.0]) - axis[0] * axis
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    # e2 must point posterior for the same handedness as the patient-axis azimuth
    if e2[1] < 0:
        e2 = -e2
    return rel @ axis, np.degrees(np.arctan2(rel @ e2, rel @ e1)) % 360.0


@dataclass(frozen=True)
class HeartFrame:
    """Heart centre and semi-axes (LPS mm) and the aortic root (centre, radius, how found).

    ``semi_axes_mm`` = √5·SD of the heart voxels along x, y, z (an ellipsoid's semi-axes);
    ``aortic_root_lps_mm`` is ``None`` when the root was not found.
    """

    centre_lps_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    top_mm: float
    long_axis: tuple[float, float, float]
    long_semi_mm: float
    aortic_root_lps_mm: tuple[float, float, float] | None
    aortic_root_radius_mm: float | None
    aortic_root_source: str

    def normalised(self, lps: np.ndarray) -> np.ndarray:
        """(n, 3) LPS mm → heart coordinates (u, v, w): offsets divided by the semi-axes."""
        return (np.asarray(lps, dtype=float) - np.asarray(self.centre_lps_mm)) / np.asarray(self.semi_axes_mm)

    def long_axis_coordinates(self, lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position along the long axis / its semi-axis, azimuth around it in degrees): the azimuth is
        0 towards the patient's left, turning towards posterior, in the plane across the long axis."""
        along_mm, azimuth_deg = axial_coordinates(lps, self.centre_lps_mm, self.long_axis)
        return along_mm / self.long_semi_mm, azimuth_deg

    def to_dict(self) -> dict:
        return {"centre_lps_mm": list(self.centre_lps_mm), "semi_axes_mm": list(self.semi_axes_mm),
                "top_mm": self.top_mm, "long_axis": list(self.long_axis), "long_semi_mm": self.long_semi_mm,
                "aortic_root_lps_mm": None if self.aortic_root_lps_mm is None else list(self.aortic_root_lps_mm),
                "aortic_root_radius_mm": self.aortic_root_radius_mm, "aortic_root_source": self.aortic_root_source,
                "axes": "patient LPS axes (x left, y posterior, z superior), scaled by the heart semi-axes"}


def _mask_points_lps(mask: np.ndarray, grid: Grid, box: tuple[slice, ...], step: int = 1) -> np.ndarray:
    z, y, x = np.nonzero(mask[box])
    idx = np.stack([z + box[0].start, y + box[1].start, x + box[2].start], axis=1)[::step]
    return grid.index_to_lps(idx)


def heart_extent(heart: np.ndarray, grid: Grid, box: tuple[slice, ...]
                 ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, float]:
    """(centre LPS mm, semi-axes mm along x/y/z, superior-most z mm, long axis, its semi-axis mm).

    The long axis is the principal axis of largest variance, signed to point inferiorly (base →
    apex); semi-axes are √5·SD (an ellipsoid's)."""
    pts = _mask_points_lps(heart, grid, box, step=max(1, int(heart[box].sum() // 200_000)))
    centre = pts.mean(axis=0)
    semi = np.sqrt(5.0) * pts.std(axis=0)
    values, vectors = np.linalg.eigh(np.cov((pts - centre).T))
    axis = vectors[:, -1]
    if axis[2] > 0:
        axis = -axis
    return centre, np.maximum(semi, 1.0), float(pts[:, 2].max()), axis, float(max(np.sqrt(5.0 * values[-1]), 1.0))


def aortic_root_from_mask(aorta: np.ndarray, grid: Grid, centre: np.ndarray, top_mm: float
                          ) -> tuple[np.ndarray, float] | None:
    """Root centre and radius from an aorta mask: its voxels within 25 mm below to 15 mm above the
    heart top and in front of the heart centre (the ascending part, not the descending one)."""
    box = ndi.find_objects(aorta.astype(np.uint8))
    if not box or box[0] is None:
        return None
    pts = _mask_points_lps(aorta, grid, box[0])
    sel = (pts[:, 2] >= top_mm - 25.0) & (pts[:, 2] <= top_mm + 15.0) & (pts[:, 1] < centre[1] + 10.0)
    if sel.sum() < 20:
        return None
    p = pts[sel]
    c = p.mean(axis=0)
    # cross-section area per mm of height → radius of an equivalent circle
    height = max(float(np.ptp(p[:, 2])), grid.spacing_mm[0])
    radius = float(np.sqrt(sel.sum() * grid.voxel_volume_mm3 / height / np.pi))
    return c, radius


def aortic_root_from_image(hu: np.ndarray, grid: Grid, centre: np.ndarray, semi: np.ndarray, top_mm: float,
                           radius_range_mm: tuple[float, float] = (8.0, 22.0)) -> tuple[np.ndarray, float] | None:
    """The ascending aorta just above the heart: in each axial slice 3–30 mm above the heart top, the
    soft-tissue point (smoothed HU −50…600) farthest from fat and lung (2-D EDT) within half the
    heart's semi-axes of its centre in-plane (the root leaves the base near the middle, not at the
    chest wall); its inscribed radius must lie in ``radius_range_mm``. The median over slices is
    the root; ``None`` when fewer than two slices qualify."""
    dz, dy, dx = grid.spacing_mm
    found = []
    up = 1 if float(grid.direction_matrix[2, 2]) >= 0 else -1
    z_top = float(grid.lps_to_index(np.array([centre[0], centre[1], top_mm]))[0])
    yy, xx = np.mgrid[0:hu.shape[1], 0:hu.shape[2]]
    for k in range(1, int(30.0 / dz) + 1):
        z = int(round(z_top + up * k))
        if not 0 <= z < hu.shape[0] or k * dz < 3.0:
            continue
        pts = grid.index_to_lps(np.stack([np.full(xx.size, z), yy.ravel(), xx.ravel()], axis=1)).reshape(
            hu.shape[1], hu.shape[2], 3)
        near = ((pts[..., 0] - centre[0]) / semi[0]) ** 2 + ((pts[..., 1] - centre[1]) / semi[1]) ** 2 <= 0.25
        if not near.any():
            continue
        sl = ndi.uniform_filter(hu[z].astype(np.float32), size=3)
        tissue = (sl > -50.0) & (sl < 600.0)
        dist = ndi.distance_transform_edt(tissue, sampling=(dy, dx))
        window = near & (dist >= radius_range_mm[0]) & (dist <= radius_range_mm[1])
        if not window.any():
            continue
        j = int(np.argmax(np.where(window, dist, -1.0)))
        found.append((*pts.reshape(-1, 3)[j], float(dist.ravel()[j])))
    if len(found) < 2:
        return None
    arr = np.asarray(found)
    root = np.median(arr[:, :3], axis=0)
    root[2] = top_mm
    return root, float(np.median(arr[:, 3]))


def heart_frame(hu: np.ndarray, grid: Grid, heart: np.ndarray, box: tuple[slice, ...],
                aorta: np.ndarray | None = None) -> HeartFrame:
    """The :class:`HeartFrame` of a heart mask (aortic root from ``aorta`` when given, else the image)."""
    centre, semi, top, axis, long_semi = heart_extent(heart, grid, box)
    root = None
    source = "not found"
    if aorta is not None and aorta.any():
        root = aortic_root_from_mask(aorta, grid, centre, top)
        source = "aorta mask" if root is not None else source
    if root is None:
        root = aortic_root_from_image(hu, grid, centre, semi, top)
        source = "image (round soft tissue above the heart)" if root is not None else source
    return HeartFrame(
        centre_lps_mm=tuple(float(v) for v in centre), semi_axes_mm=tuple(float(v) for v in semi), top_mm=top,
        long_axis=tuple(float(v) for v in axis), long_semi_mm=long_semi,
        aortic_root_lps_mm=None if root is None else tuple(float(v) for v in root[0]),
        aortic_root_radius_mm=None if root is None else float(root[1]), aortic_root_source=source)
