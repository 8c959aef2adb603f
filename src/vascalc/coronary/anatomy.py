"""A heart-centred frame from the data: heart centroid and extent, and the aortic root.

The frame is aligned with the patient axes (x left, y posterior, z superior, LPS) and scaled by
the heart's semi-axes, so a lesion's azimuth around the heart says which groove it lies in: the
right atrioventricular groove (RCA) faces right-anterior, the anterior interventricular groove
(LAD) anterior-left, the left atrioventricular groove (LCX) left-posterior. Aligning with the
patient rather than the heart's own oblique long axis is a simplification [T]: the principal axes
of a near-spherical heart mask are unstable, whereas the patient axes are not; the long axis
(largest principal axis) and the azimuth around it are given as well, and the classifier weighs both. The aortic root
is the round blood-filled tube leaving the heart's base superiorly-anteriorly; it is taken from
an ``aorta`` label when one is given, else found in the image as the ascending aorta's tube of
round, lung- or fat-bordered soft-tissue sections in the upper heart region and above it
(:func:`aortic_root_from_image`); the root point is where that tube enters the heart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse.csgraph import connected_components

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


def round_sections(hu_slice: np.ndarray, spacing_yx_mm: tuple[float, float], window: np.ndarray,
                   radius_range_mm: tuple[float, float] = (10.0, 20.0), rim_gap_mm: float = 3.0
                   ) -> np.ndarray:
    """Round soft-tissue sections in one axial slice: (n, 4) rows (row, column, radius mm, free rim).

    A section centre is a local maximum of the in-plane distance to non-tissue (2-D EDT of smoothed
    HU −50…600) inside ``window``, its radius (the EDT) within ``radius_range_mm``. ``free rim`` is
    the fraction of a circle ``rim_gap_mm`` outside that radius which is lung or fat: a free-standing
    tube (the ascending aorta above the heart, half bordered by lung) scores high, a point in a
    tissue band or blob (mediastinum, retrosternal tissue) scores low because the band continues
    through the circle."""
    dy, dx = spacing_yx_mm
    tissue = ndi.uniform_filter(hu_slice.astype(np.float32), size=3)
    tissue = (tissue > -50.0) & (tissue < 600.0)
    dist = ndi.distance_transform_edt(tissue, sampling=(dy, dx))
    peak = (dist == ndi.maximum_filter(dist, size=5)) & window
    peak &= (dist >= radius_range_mm[0]) & (dist <= radius_range_mm[1])
    rc = np.argwhere(peak)
    if not len(rc):
        return np.zeros((0, 4))
    radius = dist[rc[:, 0], rc[:, 1]]
    angle = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    rim = (radius + rim_gap_mm)[:, None]
    rr = np.rint(rc[:, :1] + rim * np.sin(angle) / dy).astype(int)
    cc = np.rint(rc[:, 1:] + rim * np.cos(angle) / dx).astype(int)
    inside = (rr >= 0) & (rr < tissue.shape[0]) & (cc >= 0) & (cc < tissue.shape[1])
    free = ~tissue[np.clip(rr, 0, tissue.shape[0] - 1), np.clip(cc, 0, tissue.shape[1] - 1)] & inside
    free_fraction = free.sum(axis=1) / np.maximum(inside.sum(axis=1), 1)
    return np.column_stack([rc.astype(float), radius, free_fraction])


def aortic_root_from_image(hu: np.ndarray, grid: Grid, centre: np.ndarray, semi: np.ndarray, top_mm: float,
                           radius_range_mm: tuple[float, float] = (10.0, 20.0), min_free_rim: float = 0.5,
                           link_mm: float = 5.0, above_mm: float = 30.0, min_length_mm: float = 6.0,
                           rim_gap_mm: float = 3.0) -> tuple[np.ndarray, float] | None:
    """The ascending aorta as the longest tube of round sections in the upper heart region and above it.

    Searched slices: from the heart centre up to ``above_mm`` above the heart region's top (the
    region may include the ascending aorta up to the field of view's edge, so its top is not the
    heart's); in-plane within half the heart's semi-axes of its centre (the aorta leaves the base near
    the middle, not at the chest wall). In each slice the :func:`round_sections` of aortic radius
    (``radius_range_mm``, adult ascending aorta ≈ 12–18 mm) with at least ``min_free_rim`` of their
    rim lung or fat are kept; sections of adjacent slices within ``link_mm`` in-plane are linked,
    and the linked tube spanning most height (at least ``min_length_mm``) is the ascending aorta.
    The root is its lowest section (where the aorta enters the heart) and its radius the tube's median
    EDT radius; ``None`` when no tube qualifies."""
    dz, dy, dx = grid.spacing_mm
    corners = grid.index_to_lps(np.array([[0, 0, 0], [hu.shape[0] - 1, 0, 0]], dtype=float))
    z_mm = corners[0, 2] + (corners[1, 2] - corners[0, 2]) * np.arange(hu.shape[0]) / max(hu.shape[0] - 1, 1)
    slices = np.nonzero((z_mm >= centre[2]) & (z_mm <= top_mm + above_mm))[0]
    if not len(slices):
        return None
    # in-plane positions are the same in every axial slice: the window and its crop are computed once;
    # the crop reaches radius + rim + 3 pixels beyond the window, so every EDT value in range and every
    # rim sample of a window pixel is what the whole slice would give
    yy, xx = np.mgrid[0:hu.shape[1], 0:hu.shape[2]]
    pts = grid.index_to_lps(np.stack([np.full(xx.size, slices[0]), yy.ravel(), xx.ravel()], axis=1)).reshape(
        hu.shape[1], hu.shape[2], 3)
    window = ((pts[..., 0] - centre[0]) / semi[0]) ** 2 + ((pts[..., 1] - centre[1]) / semi[1]) ** 2 <= 0.25
    if not window.any():
        return None
    rows, cols = np.nonzero(window)
    margin_mm = radius_range_mm[1] + rim_gap_mm + 3.0 * max(dy, dx)
    my, mx = int(np.ceil(margin_mm / dy)), int(np.ceil(margin_mm / dx))
    crop = (slice(max(rows.min() - my, 0), rows.max() + my + 1), slice(max(cols.min() - mx, 0), cols.max() + mx + 1))
    window, xy = window[crop], pts[crop][..., :2]
    sections = []  # (slice index, radius, free rim, x, y, z mm)
    for z in slices:
        found = round_sections(hu[z][crop], (dy, dx), window, radius_range_mm, rim_gap_mm)
        for r, c, rad, free in found[found[:, 3] >= min_free_rim]:
            sections.append((z, rad, free, *xy[int(r), int(c)], z_mm[z]))
    if not sections:
        return None
    sec = np.asarray(sections)
    # link sections of adjacent slices that lie within link_mm in-plane: connected tubes
    adjacent = np.abs(sec[:, None, 0] - sec[None, :, 0]) == 1
    close = np.hypot(sec[:, None, 3] - sec[None, :, 3], sec[:, None, 4] - sec[None, :, 4]) <= link_mm
    _, tube = connected_components(adjacent & close, directed=False)
    best, best_len = None, 0.0
    for t in np.unique(tube):
        members = sec[tube == t]
        length = float(np.ptp(members[:, 5])) + dz
        if length >= max(min_length_mm, 2.0 * dz) and length > best_len:
            best, best_len = members, length
    if best is None:
        return None
    low = best[best[:, 5] == best[:, 5].min()]
    root = np.array([low[:, 3].mean(), low[:, 4].mean(), float(low[0, 5])])
    return root, float(np.median(best[:, 1]))


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
        source = "image (round tube of the ascending aorta)" if root is not None else source
    return HeartFrame(
        centre_lps_mm=tuple(float(v) for v in centre), semi_axes_mm=tuple(float(v) for v in semi), top_mm=top,
        long_axis=tuple(float(v) for v in axis), long_semi_mm=long_semi,
        aortic_root_lps_mm=None if root is None else tuple(float(v) for v in root[0]),
        aortic_root_radius_mm=None if root is None else float(root[1]), aortic_root_source=source)
