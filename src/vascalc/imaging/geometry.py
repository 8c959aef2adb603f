"""Grid construction, comparison and resampling in patient (LPS) space.

Everything here works on :class:`~vascalc.imaging.grid.Grid` and ``(z, y, x)`` numpy arrays.
SimpleITK does the interpolation (nearest neighbour for labels, linear for HU); the only geometry
done by hand is the exact *signed-permutation* match between two grids, which no library offers
as a check (SimpleITK's ``DICOMOrient`` reorients to a named code but does not test whether two
grids coincide).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import SimpleITK as sitk

from vascalc.errors import GeometryError
from vascalc.imaging.grid import Grid

#: Largest departure from orthonormality accepted in a direction matrix before it is called a
#: shear. Float32 NIfTI headers carry ~1e-6 noise; real shears are ≥ 1e-2.
ORTHONORMAL_TOLERANCE = 1e-4


def grid_from_affine_lps(affine_lps: np.ndarray, shape_zyx: tuple[int, int, int], *, what: str) -> Grid:
    """Grid from a 4×4 (i, j, k) → LPS mm affine and an array shape in (z, y, x) order.

    Refuses a zero/NaN voxel size or a sheared (non-orthogonal) affine with :class:`GeometryError`
    naming ``what``; small float noise in the rotation is removed by an SVD (polar) projection.
    """
    affine_lps = np.asarray(affine_lps, dtype=float)
    columns = affine_lps[:3, :3]
    spacing_xyz = np.linalg.norm(columns, axis=0)
    if not np.all(np.isfinite(affine_lps)) or np.any(spacing_xyz <= 1e-6):
        raise GeometryError(
            f"{what} has a zero or undefined voxel size {tuple(np.round(spacing_xyz, 6))}; "
            "fix its header (pixdim / spacing) before using it"
        )
    rotation = columns / spacing_xyz
    gram_error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if gram_error > ORTHONORMAL_TOLERANCE:
        raise GeometryError(
            f"{what} has a sheared (non-orthogonal) voxel grid (axis cosines off by {gram_error:.3g}); "
            "resample it onto an orthogonal grid first"
        )
    u, _, vt = np.linalg.svd(rotation)
    rotation = u @ vt
    return Grid(
        shape=tuple(int(n) for n in shape_zyx),
        spacing_mm=tuple(float(s) for s in spacing_xyz[::-1]),
        origin_lps_mm=tuple(float(v) for v in affine_lps[:3, 3]),
        direction=tuple(float(v) for v in rotation.ravel()),
    )


def grid_from_sitk(image: sitk.Image) -> Grid:
    """The :class:`Grid` of a 3-D SimpleITK image (SimpleITK geometry is already LPS)."""
    size_xyz = image.GetSize()
    return Grid(
        shape=(int(size_xyz[2]), int(size_xyz[1]), int(size_xyz[0])),
        spacing_mm=tuple(float(s) for s in image.GetSpacing()[::-1]),
        origin_lps_mm=tuple(float(v) for v in image.GetOrigin()),
        direction=tuple(float(v) for v in image.GetDirection()),
    )


def sitk_image(array: np.ndarray, grid: Grid) -> sitk.Image:
    """A SimpleITK image holding ``array`` (z, y, x) on ``grid``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(float(s) for s in grid.spacing_mm[::-1]))
    image.SetOrigin(tuple(float(v) for v in grid.origin_lps_mm))
    image.SetDirection(tuple(float(v) for v in grid.direction))
    return image


def corner_positions_lps(grid: Grid) -> np.ndarray:
    """LPS positions (8, 3) in mm of the centres of the eight corner voxels, in index-bit order."""
    corners = np.array(list(product(*[(0, n - 1) for n in grid.shape])), dtype=float)
    return grid.index_to_lps(corners)


@dataclass(frozen=True)
class AxisMapping:
    """How a source array maps onto a reference grid by axis permutation and flips only.

    ``source_axis[r]`` is the source (z, y, x) axis that becomes reference axis ``r``;
    ``flip[r]`` says whether it runs backwards.
    """

    source_axis: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @property
    def is_identity(self) -> bool:
        return self.source_axis == (0, 1, 2) and not any(self.flip)

    def describe(self) -> str:
        names = "zyx"
        parts = [
            f"{names[r]}←{'-' if f else ''}{names[s]}" for r, (s, f) in enumerate(zip(self.source_axis, self.flip))
        ]
        return ", ".join(parts)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Reorient ``array`` (source (z, y, x)) onto the reference axes; no interpolation."""
        out = np.transpose(array, self.source_axis)
        flips = tuple(r for r, f in enumerate(self.flip) if f)
        return np.ascontiguousarray(np.flip(out, axis=flips) if flips else out)


def exact_axis_mapping(source: Grid, reference: Grid, tolerance_mm: float) -> AxisMapping | None:
    """The permutation/flip that puts every ``source`` voxel centre on a ``reference`` voxel centre.

    Returns ``None`` unless the two grids are the same set of points in space up to
    ``tolerance_mm`` (checked at the eight corners, which bound the error of an affine map).
    """
    # reference index (z, y, x) as an affine function of source index (z, y, x)
    ref_from_src = np.linalg.inv(_affine_zyx(reference)) @ _affine_zyx(source)
    linear = ref_from_src[:3, :3]
    signed_perm = np.round(linear)
    if not (np.all(np.abs(signed_perm).sum(axis=0) == 1) and np.all(np.abs(signed_perm).sum(axis=1) == 1)):
        return None
    source_axis = tuple(int(np.argmax(np.abs(signed_perm[r]))) for r in range(3))
    flip = tuple(bool(signed_perm[r, source_axis[r]] < 0) for r in range(3))
    if tuple(source.shape[s] for s in source_axis) != tuple(reference.shape):
        return None
    mapping = AxisMapping(source_axis=source_axis, flip=flip)  # type: ignore[arg-type]
    # The reoriented array's first voxel is source index 0 or n-1 along each axis; every corner must
    # land on the reference corner it claims, in millimetres.
    source_corners = np.array(list(product(*[(0, n - 1) for n in source.shape])), dtype=float)
    ref_corners = np.empty_like(source_corners)
    for r in range(3):
        s = source_axis[r]
        ref_corners[:, r] = (source.shape[s] - 1 - source_corners[:, s]) if flip[r] else source_corners[:, s]
    distance = np.linalg.norm(source.index_to_lps(source_corners) - reference.index_to_lps(ref_corners), axis=1)
    return mapping if distance.max() <= tolerance_mm else None


def _affine_zyx(grid: Grid) -> np.ndarray:
    """4×4 affine from homogeneous (z, y, x) indices to LPS mm."""
    affine = grid.affine_lps()
    out = affine.copy()
    out[:3, :3] = affine[:3, :3][:, ::-1]
    return out


def describe_grid_difference(source: Grid, reference: Grid) -> str:
    """One phrase saying how two grids differ (shape, spacing, origin, orientation, corner offset)."""
    parts = []
    if tuple(source.shape) != tuple(reference.shape):
        parts.append(f"shape {source.shape} vs {reference.shape}")
    if not np.allclose(source.spacing_mm, reference.spacing_mm, atol=1e-4):
        parts.append(
            f"spacing {_fmt(source.spacing_mm)} vs {_fmt(reference.spacing_mm)} mm (z, y, x)"
        )
    if source.axis_codes() != reference.axis_codes():
        parts.append(f"orientation {source.axis_codes()} vs {reference.axis_codes()}")
    if not np.allclose(source.origin_lps_mm, reference.origin_lps_mm, atol=1e-3):
        parts.append(f"origin {_fmt(source.origin_lps_mm)} vs {_fmt(reference.origin_lps_mm)} mm LPS")
    box_offset = np.abs(
        np.sort(corner_positions_lps(source), axis=0) - np.sort(corner_positions_lps(reference), axis=0)
    ).max()
    parts.append(f"bounding boxes differ by up to {box_offset:.2f} mm")
    return "; ".join(parts)


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def resample_to_grid(
    array: np.ndarray, source: Grid, reference: Grid, *, interpolator: int, default_value: float
) -> np.ndarray:
    """Resample ``array`` from ``source`` onto ``reference`` by world position with SimpleITK.

    ``interpolator`` is a SimpleITK constant (``sitk.sitkNearestNeighbor`` for labels,
    ``sitk.sitkLinear`` for HU); points outside ``source`` get ``default_value``. The output keeps
    the input dtype.
    """
    moving = sitk_image(array, source)
    ref = sitk.Image(tuple(int(n) for n in reference.shape[::-1]), moving.GetPixelID())
    ref.SetSpacing(tuple(float(s) for s in reference.spacing_mm[::-1]))
    ref.SetOrigin(tuple(float(v) for v in reference.origin_lps_mm))
    ref.SetDirection(tuple(float(v) for v in reference.direction))
    out = sitk.Resample(moving, ref, sitk.Transform(), interpolator, float(default_value), moving.GetPixelID())
    return sitk.GetArrayFromImage(out).astype(array.dtype, copy=False)


def axial_first_order(grid: Grid) -> tuple[int, int, int]:
    """Array-axis order ``(z, y, x)`` indices that puts the axis closest to head–feet first.

    Slice-wise scores (Agatston's per-slice lesions, SCORING.md A.3) need axial slices along
    array axis 0; a file stored with coronal or sagittal slices first (same voxels in space) would
    otherwise be scored slice by slice in the wrong plane. The other two axes keep their order.
    """
    # array axis a runs along direction column 2 − a; its head–feet (LPS S) share is that column's z
    superior = np.abs(grid.direction_matrix[2, ::-1])
    first = int(np.argmax(superior))
    return (first, *[a for a in range(3) if a != first])  # type: ignore[return-value]


def permute_axes(array: np.ndarray, grid: Grid, order: tuple[int, int, int]) -> tuple[np.ndarray, Grid]:
    """The same voxels with array axes in ``order`` (no interpolation, no flip) and the matching grid."""
    columns = grid.direction_matrix[:, ::-1]  # columns in (z, y, x) array-axis order
    new_columns = columns[:, list(order)]
    grid_out = Grid(
        shape=tuple(int(grid.shape[a]) for a in order),
        spacing_mm=tuple(float(grid.spacing_mm[a]) for a in order),
        origin_lps_mm=grid.origin_lps_mm,  # voxel [0, 0, 0] stays the same voxel
        direction=tuple(float(v) for v in new_columns[:, ::-1].ravel()),
    )
    return np.ascontiguousarray(np.transpose(array, order)), grid_out
