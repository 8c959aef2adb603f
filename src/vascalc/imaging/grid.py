"""Voxel grids in patient space.

Conventions (as SimpleITK): arrays are indexed ``(z, y, x)``; ``spacing_mm`` is ``(dz, dy, dx)``;
``origin_lps_mm`` is the LPS position (x, y, z) in mm of the centre of voxel ``[0, 0, 0]``;
``direction`` is the 3×3 matrix whose *columns* are the LPS unit vectors of the index axes in
``(x, y, z)`` = ``(i, j, k)`` order (SimpleITK's ``GetDirection()`` reshaped row-major).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vascalc.errors import GeometryError


@dataclass(frozen=True)
class Grid:
    """Geometry of a 3-D image: shape, spacing, origin and direction (see module docstring)."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = field(default=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    def __post_init__(self) -> None:
        if len(self.shape) != 3:
            raise GeometryError(f"a 3-D grid is needed, got shape {self.shape}")
        spacing = np.asarray(self.spacing_mm, dtype=float)
        if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise GeometryError(f"voxel spacing must be three positive numbers, got {self.spacing_mm}")
        if len(self.direction) != 9:
            raise GeometryError("direction must have 9 entries")

    @property
    def direction_matrix(self) -> np.ndarray:
        """3×3 matrix, columns = LPS directions of the x, y, z index axes."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def voxel_volume_mm3(self) -> float:
        dz, dy, dx = self.spacing_mm
        return float(dz * dy * dx)

    def index_to_lps(self, zyx: np.ndarray) -> np.ndarray:
        """Map array indices ``(..., 3)`` in (z, y, x) order to LPS positions in mm ``(..., 3)``."""
        zyx = np.asarray(zyx, dtype=float)
        ijk = zyx[..., ::-1]
        spacing_xyz = np.asarray(self.spacing_mm, dtype=float)[::-1]
        return ijk * spacing_xyz @ self.direction_matrix.T + np.asarray(self.origin_lps_mm, dtype=float)

    def lps_to_index(self, lps: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`index_to_lps`: LPS mm ``(..., 3)`` to fractional (z, y, x) indices."""
        lps = np.asarray(lps, dtype=float) - np.asarray(self.origin_lps_mm, dtype=float)
        spacing_xyz = np.asarray(self.spacing_mm, dtype=float)[::-1]
        ijk = lps @ np.linalg.inv(self.direction_matrix).T / spacing_xyz
        return ijk[..., ::-1]

    def affine_lps(self) -> np.ndarray:
        """4×4 matrix mapping homogeneous (x, y, z) = (i, j, k) indices to LPS mm."""
        spacing_xyz = np.asarray(self.spacing_mm, dtype=float)[::-1]
        affine = np.eye(4)
        affine[:3, :3] = self.direction_matrix * spacing_xyz
        affine[:3, 3] = self.origin_lps_mm
        return affine

    def affine_ras(self) -> np.ndarray:
        """4×4 NIfTI-style affine (i, j, k) → RAS mm, for nibabel."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine_lps()

    def axis_codes(self) -> str:
        """Three-letter orientation code of the (x, y, z) index axes in LPS terms, e.g. ``'LPS'``."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        codes = []
        for column in self.direction_matrix.T:
            axis = int(np.argmax(np.abs(column)))
            codes.append(letters[axis][0] if column[axis] > 0 else letters[axis][1])
        return "".join(codes)
