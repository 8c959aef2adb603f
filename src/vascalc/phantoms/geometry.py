"""Analytic shapes of the phantoms and the painters that put them on a voxel grid.

Phantom space is LPS in mm (x to the patient's left, y posterior, z superior); phantom grids have
identity direction, so array index ``(k, j, i)`` sits at ``origin + (i·dx, j·dy, k·dz)``.

Large anatomy is painted by *signed distance* with a one-voxel linear ramp at the edge (cheap
anti-aliasing, not exact partial volume). Calcium (plaques, inserts) is rendered exactly: the covered
fraction of each voxel is measured with ``supersample``³ sample points per voxel, inside the shape's
bounding box only (:func:`render_fraction`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vascalc.errors import GeometryError
from vascalc.imaging.grid import Grid

ANTERIOR = np.array([0.0, -1.0, 0.0])
SUPERIOR = np.array([0.0, 0.0, 1.0])


def axis_coords_mm(grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates (mm) along z, y, x of an identity-direction grid."""
    ox, oy, oz = grid.origin_lps_mm
    dz, dy, dx = grid.spacing_mm
    nz, ny, nx = grid.shape
    return oz + dz * np.arange(nz), oy + dy * np.arange(ny), ox + dx * np.arange(nx)


def index_slices(grid: Grid, lo_xyz: np.ndarray, hi_xyz: np.ndarray, pad: int = 1) -> tuple[slice, slice, slice] | None:
    """(z, y, x) slices of the voxels whose centres lie in the box ``[lo, hi]`` (mm), padded; None if empty."""
    origin = np.asarray(grid.origin_lps_mm, dtype=float)
    spacing_xyz = np.asarray(grid.spacing_mm, dtype=float)[::-1]
    shape_xyz = np.asarray(grid.shape)[::-1]
    lo = np.floor((np.asarray(lo_xyz) - origin) / spacing_xyz).astype(int) - pad + 1
    hi = np.ceil((np.asarray(hi_xyz) - origin) / spacing_xyz).astype(int) + pad
    lo = np.clip(lo, 0, shape_xyz)
    hi = np.clip(hi, 0, shape_xyz)
    if np.any(hi <= lo):
        return None
    return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])


@dataclass
class Canvas:
    """Mutable buffers a phantom is painted into (float32 HU, uint16 labels) on an identity grid."""

    grid: Grid
    hu: np.ndarray
    labels: np.ndarray

    @classmethod
    def empty(cls, grid: Grid, background_hu: float) -> "Canvas":
        return cls(grid, np.full(grid.shape, background_hu, dtype=np.float32), np.zeros(grid.shape, np.uint16))

    def block_coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z, y, x = axis_coords_mm(self.grid)
        return z[sl[0]][:, None, None], y[sl[1]][None, :, None], x[sl[2]][None, None, :]


def _ramp(sd: np.ndarray, h: float) -> np.ndarray:
    """Covered fraction from a signed distance (negative inside) with a linear ramp one voxel ``h`` wide."""
    return np.clip(0.5 - sd / h, 0.0, 1.0).astype(np.float32)


def paint(canvas: Canvas, lo_xyz, hi_xyz, sdf, value: float, label: int | None = None,
          only_labels: tuple[int, ...] | None = None) -> None:
    """Blend ``value`` into the canvas where the shape ``sdf`` lies, and label its inside.

    ``sdf(Z, Y, X)`` returns ``(sd_xy, sd_z)``: signed distances (mm, negative inside) of the in-plane
    and the z boundary (``sd_z`` may be None). Coverage = in-plane ramp × z ramp (the z ramp of a slab
    is the exact overlap of the slice with it). ``only_labels`` restricts painting to voxels that
    already carry one of these labels (e.g. a cavity).
    """
    sl = index_slices(canvas.grid, np.asarray(lo_xyz, float), np.asarray(hi_xyz, float))
    if sl is None:
        return
    Z, Y, X = canvas.block_coords(sl)
    sd_xy, sd_z = sdf(Z, Y, X)
    dz, dy, dx = canvas.grid.spacing_mm
    w = _ramp(sd_xy, 0.5 * (dy + dx))
    if sd_z is not None:
        w = w * _ramp(sd_z, dz)
    w = np.broadcast_to(w, canvas.hu[sl].shape)
    inside = w >= 0.5
    if only_labels is not None:
        allowed = np.isin(canvas.labels[sl], only_labels)
        w = np.where(allowed, w, 0.0)
        inside &= allowed
    block = canvas.hu[sl]
    block += w * (np.float32(value) - block)
    if label is not None:
        canvas.labels[sl][inside] = label


def ellipse_stack_sdf(z0: float, z1: float, centre, axes):
    """Signed distance of an axial ellipse whose centre/semi-axes vary with z, between z0 < z1 (mm).

    ``centre(z) -> (cx, cy)`` and ``axes(z) -> (ax, ay)`` take arrays of z. The in-plane distance uses
    the first-order approximation ``(q − 1)/|∇q|`` of the ellipse's level function ``q``.
    """
    def sdf(Z, Y, X):
        cx, cy = centre(Z)
        ax, ay = axes(Z)
        ax = np.maximum(ax, 1e-3)
        ay = np.maximum(ay, 1e-3)
        u = (X - cx) / ax
        v = (Y - cy) / ay
        q = np.sqrt(u * u + v * v)
        grad = np.sqrt((u / ax) ** 2 + (v / ay) ** 2) / np.maximum(q, 1e-9)
        sd_xy = np.where(q > 1e-9, (q - 1.0) / np.maximum(grad, 1e-9), -np.minimum(ax, ay))
        sd_z = np.abs(Z - 0.5 * (z0 + z1)) - 0.5 * (z1 - z0)
        return sd_xy, sd_z
    return sdf


def segment_distance(P: tuple[np.ndarray, np.ndarray, np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) of points (X, Y, Z broadcast arrays) to the segment a→b (xyz, mm)."""
    X, Y, Z = P
    ab = b - a
    L2 = float(ab @ ab)
    t = ((X - a[0]) * ab[0] + (Y - a[1]) * ab[1] + (Z - a[2]) * ab[2]) / max(L2, 1e-12)
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((X - a[0] - t * ab[0]) ** 2 + (Y - a[1] - t * ab[1]) ** 2 + (Z - a[2] - t * ab[2]) ** 2)


def paint_capsule(canvas: Canvas, a, b, radius: float, value: float, label: int | None = None,
                  only_labels: tuple[int, ...] | None = None) -> None:
    """Paint the set of points within ``radius`` mm of the segment a→b (xyz, mm)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    lo = np.minimum(a, b) - radius
    hi = np.maximum(a, b) + radius

    def sdf(Z, Y, X):
        return segment_distance((X, Y, Z), a, b) - radius, None
    paint(canvas, lo, hi, sdf, value, label, only_labels)


def paint_ellipsoid(canvas: Canvas, centre, semi_axes, value: float, label: int | None = None,
                    only_labels: tuple[int, ...] | None = None) -> None:
    """Paint an axis-aligned ellipsoid (centre and semi-axes in xyz mm)."""
    c = np.asarray(centre, float)
    s = np.asarray(semi_axes, float)

    def sdf(Z, Y, X):
        u, v, w = (X - c[0]) / s[0], (Y - c[1]) / s[1], (Z - c[2]) / s[2]
        q = np.sqrt(u * u + v * v + w * w)
        grad = np.sqrt((u / s[0]) ** 2 + (v / s[1]) ** 2 + (w / s[2]) ** 2) / np.maximum(q, 1e-9)
        return np.where(q > 1e-9, (q - 1.0) / np.maximum(grad, 1e-9), -s.min()), None
    paint(canvas, c - s, c + s, sdf, value, label, only_labels)


def paint_plate(canvas: Canvas, z0: float, z1: float, p0_xy, p1_xy, half_thickness_mm: float, value: float,
                label: int | None = None) -> None:
    """Paint a vertical plate: points within ``half_thickness_mm`` of the 2-D segment p0→p1, for z0 ≤ z ≤ z1."""
    a = np.array([p0_xy[0], p0_xy[1], 0.0])
    b = np.array([p1_xy[0], p1_xy[1], 0.0])
    lo = np.array([min(a[0], b[0]) - half_thickness_mm, min(a[1], b[1]) - half_thickness_mm, z0])
    hi = np.array([max(a[0], b[0]) + half_thickness_mm, max(a[1], b[1]) + half_thickness_mm, z1])

    def sdf(Z, Y, X):
        d = segment_distance((X, Y, np.zeros_like(Z, dtype=float)), a, b) - half_thickness_mm
        return d, np.abs(Z - 0.5 * (z0 + z1)) - 0.5 * (z1 - z0)
    paint(canvas, lo, hi, sdf, value, label)


# --------------------------------------------------------------------------------------------
# Wall sectors: the exact shape of every plaque and insert


def _frame(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference directions (e1, e2) ⟂ u: e1 = anterior (superior for vessels running anteriorly);
    e2 = e1 × u, so that on a downward-running vessel angle 90° points to the patient's left."""
    ref = ANTERIOR if abs(float(u @ ANTERIOR)) < 0.9 else SUPERIOR
    e1 = ref - (ref @ u) * u
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(e1, u)
    return e1, e2


@dataclass(frozen=True)
class WallSector:
    """Part of a thick-walled straight tube: ``s0 ≤ s < s1`` along the axis from ``a`` (unit ``u``),
    radius ``r0 ≤ r < r1``, angle within ``half_arc_rad`` of ``angle_rad`` (0 = anterior, see
    :func:`_frame`). A full cylinder is ``r0 = 0, half_arc_rad = π``. Units: mm and radians.
    """

    a: tuple[float, float, float]
    u: tuple[float, float, float]
    s0: float
    s1: float
    r0: float
    r1: float
    angle_rad: float
    half_arc_rad: float

    @property
    def volume_mm3(self) -> float:
        """Analytic volume: annular sector area ``θ_half·(r1² − r0²)`` times length."""
        return self.half_arc_rad * (self.r1 ** 2 - self.r0 ** 2) * (self.s1 - self.s0)

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = np.asarray(self.u, float)
        e1, e2 = _frame(u)
        return u, e1, e2

    def contains(self, X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """Boolean inside test for broadcastable coordinate arrays (mm).

        The arc test uses ``cos(θ − θc) ≥ cos(θ_half)``, i.e. ``c·n ≥ r·cos(θ_half)`` with ``n`` the
        unit vector at the centre angle (no trigonometry per point). float32 for speed; the shapes
        are a few mm wide, so the rounding (~1e-6 mm) does not matter.
        """
        u, e1, e2 = self.frame()
        f = np.float32
        dx, dy, dz = (np.asarray(X, f) - f(self.a[0]), np.asarray(Y, f) - f(self.a[1]),
                      np.asarray(Z, f) - f(self.a[2]))
        s = dx * f(u[0]) + dy * f(u[1]) + dz * f(u[2])
        c1 = dx * f(e1[0]) + dy * f(e1[1]) + dz * f(e1[2])
        c2 = dx * f(e2[0]) + dy * f(e2[1]) + dz * f(e2[2])
        r2 = c1 * c1 + c2 * c2
        inside = (s >= self.s0) & (s < self.s1) & (r2 >= f(self.r0 ** 2)) & (r2 < f(self.r1 ** 2))
        if self.half_arc_rad < np.pi:
            along = c1 * f(np.cos(self.angle_rad)) + c2 * f(np.sin(self.angle_rad))
            inside &= along >= np.sqrt(r2) * f(np.cos(self.half_arc_rad))
        return inside

    def smallest_feature_mm(self) -> float:
        """Smallest extent of the shape (mm): its length, its radial thickness or diameter."""
        radial = 2 * self.r1 if self.r0 == 0 else self.r1 - self.r0
        return float(min(self.s1 - self.s0, radial))

    def sample_points(self, n_s: int = 24, n_theta: int = 48, n_r: int = 3) -> np.ndarray:
        """Points (N, 3) xyz on a regular (s, θ, r) lattice covering the sector, boundaries included."""
        u, e1, e2 = self.frame()
        s = np.linspace(self.s0, self.s1, n_s)
        th = self.angle_rad + np.linspace(-self.half_arc_rad, self.half_arc_rad, n_theta)
        r = np.linspace(self.r0, self.r1, n_r)
        S, T, R = np.meshgrid(s, th, r, indexing="ij")
        P = (np.asarray(self.a)[None, :] + S.reshape(-1, 1) * u
             + (R * np.cos(T)).reshape(-1, 1) * e1 + (R * np.sin(T)).reshape(-1, 1) * e2)
        return P

    def bbox_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (xyz mm) from a dense boundary sample (safe, 0.1 mm margin)."""
        P = self.sample_points(8, 181, 2)
        return P.min(axis=0) - 0.1, P.max(axis=0) + 0.1


def z_supersample(grid: Grid, supersample: int) -> int:
    """Fine z samples per slice: enough that the fine z step is no longer than the fine in-plane step."""
    dz, dy, dx = grid.spacing_mm
    return int(max(supersample, np.ceil(supersample * dz / min(dy, dx) - 1e-9)))


def render_fraction(shape: WallSector, grid: Grid, supersample: int, max_points: int = 6_000_000
                    ) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
    """Exact-by-sampling partial volume of ``shape`` on ``grid``, inside its bounding box only.

    Each voxel (cell of size dz × dy × dx around its centre; dz is the slice *increment*) is probed on
    a regular lattice (midpoint rule): ``supersample`` points along y and x and, along z, as many as
    make the z step no coarser (:func:`z_supersample`). Returns ``(block, fraction, fine_z, z_fine_mm)``:
    the (z, y, x) slices of the block, the covered fraction per voxel (float32), the in-plane covered
    fraction per fine z sample (``(nz·sz, ny, nx)``, for the slice-profile step) and those samples'
    z (mm). None when the shape misses the grid.
    """
    s = int(supersample)
    if s < 1:
        raise GeometryError(f"supersample must be a positive integer, got {supersample}")
    sz = z_supersample(grid, s)
    lo, hi = shape.bbox_mm()
    sl = index_slices(grid, lo, hi, pad=1)
    if sl is None:
        return None
    z, y, x = axis_coords_mm(grid)
    dz, dy, dx = grid.spacing_mm
    offs = (np.arange(s) + 0.5) / s - 0.5
    offs_z = (np.arange(sz) + 0.5) / sz - 0.5
    zf = (z[sl[0]][:, None] + offs_z[None, :] * dz).ravel()
    yf = (y[sl[1]][:, None] + offs[None, :] * dy).ravel()
    xf = (x[sl[2]][:, None] + offs[None, :] * dx).ravel()
    nz, ny, nx = len(zf) // sz, len(yf) // s, len(xf) // s
    fine_z = np.empty((nz * sz, ny, nx), dtype=np.float32)
    rows_per_chunk = max(1, max_points // (len(yf) * len(xf)))
    Y = yf[None, :, None]
    X = xf[None, None, :]
    for start in range(0, nz * sz, rows_per_chunk):
        stop = min(nz * sz, start + rows_per_chunk)
        inside = shape.contains(X, Y, zf[start:stop, None, None])
        fine_z[start:stop] = inside.reshape(stop - start, ny, s, nx, s).mean(axis=(2, 4), dtype=np.float32)
    fraction = fine_z.reshape(nz, sz, ny, nx).mean(axis=1, dtype=np.float32)
    return sl, fraction, fine_z, zf
