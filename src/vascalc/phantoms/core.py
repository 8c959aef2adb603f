"""Shared machinery: imaging parameters, vessels as tubes, plaques on them, and the CT image chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from vascalc.errors import GeometryError, InputError
from vascalc.imaging.grid import Grid
from vascalc.imaging.volume import ScanInfo
from vascalc.phantoms import physics
from vascalc.phantoms.geometry import Canvas, WallSector, axis_coords_mm, index_slices, paint_capsule, render_fraction
from vascalc.phantoms.types import PlaqueSpec

#: Version of the truth.json layout written for every phantom.
TRUTH_SCHEMA_VERSION = "1.0"

#: Scanner range of stored CT numbers (12-bit): values are clipped here, as most scanners do.
HU_MIN, HU_MAX = -1024, 3071


@dataclass(frozen=True)
class CtPhysics:
    """Acquisition and reconstruction model (all lengths in mm; see :mod:`vascalc.phantoms.physics`).

    ``slice_thickness_mm`` None → equal to the slice increment. ``ssp_blur_fwhm_mm`` None → half the
    slice thickness. ``supersample``: sample points per voxel edge for exact partial volume.
    """

    slice_thickness_mm: float | None = None
    ssp_blur_fwhm_mm: float | None = None
    psf_fwhm_mm: float = 1.0
    noise_sd_hu: float = 15.0
    noise_corr_fwhm_mm: float = 0.0
    supersample: int = 4
    hu_per_mg_cm3: float = physics.HU_PER_MG_HA_CM3
    kvp: float = 120.0

    def resolved(self, dz_mm: float) -> "CtPhysics":
        t = float(self.slice_thickness_mm) if self.slice_thickness_mm is not None else float(dz_mm)
        if t <= 0:
            raise GeometryError(f"slice thickness must be positive, got {t} mm")
        if self.supersample < 1 or self.supersample > 32:
            raise InputError(f"supersample must be between 1 and 32, got {self.supersample}")
        if self.noise_sd_hu < 0 or self.psf_fwhm_mm < 0:
            raise InputError("noise SD and PSF FWHM must not be negative")
        blur = float(self.ssp_blur_fwhm_mm) if self.ssp_blur_fwhm_mm is not None else 0.5 * t
        return CtPhysics(t, blur, float(self.psf_fwhm_mm), float(self.noise_sd_hu), float(self.noise_corr_fwhm_mm),
                         int(self.supersample), float(self.hu_per_mg_cm3), float(self.kvp))


def make_grid(shape: tuple[int, int, int], spacing_mm: tuple[float, float, float], z_top_mm: float = 0.0) -> Grid:
    """Identity-direction grid centred in-plane on x = y = 0, whose top cell ends at ``z_top_mm``."""
    nz, ny, nx = (int(v) for v in shape)
    if min(nz, ny, nx) < 1:
        raise GeometryError(f"phantom shape must be positive, got {shape}")
    dz, dy, dx = (float(v) for v in spacing_mm)
    grid_origin = (-(nx - 1) / 2 * dx, -(ny - 1) / 2 * dy, z_top_mm - dz / 2 - (nz - 1) * dz)
    return Grid(shape=(nz, ny, nx), spacing_mm=(dz, dy, dx), origin_lps_mm=grid_origin)


@dataclass(frozen=True)
class Vessel:
    """A vessel as a polyline centreline (xyz mm, from origin to end) with per-segment lumen radius."""

    name: str
    points: tuple[tuple[float, float, float], ...]
    lumen_radius_mm: tuple[float, ...]
    wall_mm: float
    start_margin_mm: float = 3.0

    def __post_init__(self) -> None:
        if len(self.lumen_radius_mm) != len(self.points) - 1:
            raise GeometryError(f"{self.name}: one radius per centreline segment is needed")

    def segment_lengths(self) -> np.ndarray:
        p = np.asarray(self.points, float)
        return np.linalg.norm(np.diff(p, axis=0), axis=1)

    def length_mm(self) -> float:
        return float(self.segment_lengths().sum())

    def sector(self, spec: PlaqueSpec) -> WallSector:
        """The exact wall sector of a plaque; raises GeometryError if it leaves one straight segment."""
        lengths = self.segment_lengths()
        starts = np.concatenate([[0.0], np.cumsum(lengths)])
        s0, s1 = float(spec.start_mm), float(spec.start_mm + spec.length_mm)
        k = int(np.searchsorted(starts, s0, side="right") - 1)
        if spec.length_mm <= 0 or spec.thickness_mm <= 0 or not (0 < spec.arc_deg <= 360):
            raise InputError(f"plaque on {self.name}: length, thickness and arc (0–360°) must be positive")
        if spec.density_mg_cm3 <= 0:
            raise InputError(f"plaque on {self.name}: density must be positive (mg HA/cm³)")
        if k < 0 or k >= len(lengths) or s1 > starts[k + 1] + 1e-9:
            pieces = ", ".join(f"{a:.1f}–{b:.1f}" for a, b in zip(starts[:-1], starts[1:]))
            raise GeometryError(f"plaque on {self.name} from {s0:.1f} to {s1:.1f} mm does not lie on one straight "
                                f"centreline piece; pieces (mm along the vessel): {pieces}")
        if spec.thickness_mm > self.wall_mm + 1e-9:
            raise GeometryError(f"plaque on {self.name} is {spec.thickness_mm} mm thick but the wall is "
                                f"{self.wall_mm} mm; calcium must lie in the wall")
        a = np.asarray(self.points[k], float)
        b = np.asarray(self.points[k + 1], float)
        u = (b - a) / lengths[k]
        r = float(self.lumen_radius_mm[k])
        return WallSector(a=tuple(a), u=tuple(u), s0=s0 - starts[k], s1=s1 - starts[k], r0=r,
                          r1=r + float(spec.thickness_mm), angle_rad=float(np.deg2rad(spec.angle_deg)),
                          half_arc_rad=float(np.deg2rad(spec.arc_deg) / 2))


def sector_in_grid(sector: WallSector, grid: Grid) -> bool:
    """True when the shape lies wholly inside the grid's field of view (so its truth is all imaged)."""
    lo, hi = sector.bbox_mm()
    origin = np.asarray(grid.origin_lps_mm, float)
    spacing_xyz = np.asarray(grid.spacing_mm, float)[::-1]
    first = origin - 0.5 * spacing_xyz
    last = origin + (np.asarray(grid.shape)[::-1] - 0.5) * spacing_xyz
    return bool(np.all(lo >= first) and np.all(hi <= last))


def place_sectors(specs: list[PlaqueSpec], vessels: dict[str, "Vessel"], grid: Grid, *, drop_outside: bool
                  ) -> list[tuple[PlaqueSpec, WallSector]]:
    """Exact shapes of the plaques; those not wholly in the field of view are dropped (random plaques)
    or refused (plaques the user asked for), so that the truth only holds imaged calcium."""
    out = []
    for spec in specs:
        if spec.vessel not in vessels:
            raise InputError(f"plaque on unknown vessel {spec.vessel!r}; vessels: {', '.join(vessels)}")
        sector = vessels[spec.vessel].sector(spec)
        if not sector_in_grid(sector, grid):
            if drop_outside:
                continue
            raise GeometryError(f"a plaque on {spec.vessel} at {spec.start_mm} mm lies outside the field of view; "
                                "enlarge the grid or move the plaque")
        out.append((spec, sector))
    return out


def paint_vessels(canvas: Canvas, vessels: list[Vessel], label_ids: dict[str, int], *, wall_hu: float,
                  lumen_hu: float) -> None:
    """Paint walls (labelled, lumen + wall = the vessel mask), then all lumens (so branches open into
    their parent). Vessels listed later win where walls overlap (put the parent last)."""
    for v in vessels:
        for k in range(len(v.points) - 1):
            paint_capsule(canvas, v.points[k], v.points[k + 1], v.lumen_radius_mm[k] + v.wall_mm, wall_hu,
                          label_ids[v.name])
    for v in vessels:
        for k in range(len(v.points) - 1):
            paint_capsule(canvas, v.points[k], v.points[k + 1], v.lumen_radius_mm[k], lumen_hu)


def random_plaques(rng: np.random.Generator, vessels: list[Vessel], mean_counts: dict[str, float], *,
                   length_range_mm: dict[str, tuple[float, float]], density_range=(200.0, 900.0),
                   avoid: dict[str, list[tuple[float, float]]] | None = None,
                   end_margin_mm: dict[str, float] | None = None,
                   counts: dict[str, int] | None = None) -> list[PlaqueSpec]:
    """Draw non-overlapping random plaques (Poisson counts per vessel) that each fit one straight piece.

    ``avoid``: arc-length intervals (mm) per vessel where no plaque may lie (branch origins).
    ``counts``: exact plaque counts for the vessels it names (no Poisson draw for those).
    Plaques on one vessel are ≥ 2 mm apart along it, so each plaque is one lesion.
    """
    out: list[PlaqueSpec] = []
    for v in vessels:
        if counts is not None and v.name in counts:
            n = int(counts[v.name])
        else:
            n = int(rng.poisson(mean_counts.get(v.name, 0.0)))
        lengths = v.segment_lengths()
        starts = np.concatenate([[0.0], np.cumsum(lengths)])
        taken: list[tuple[float, float]] = list((avoid or {}).get(v.name, []))
        lo_len, hi_len = length_range_mm.get(v.name, (2.0, 10.0))
        end_margin = (end_margin_mm or {}).get(v.name, 2.0)
        for _ in range(n):
            for _attempt in range(30):
                k = int(rng.integers(len(lengths)))
                length = float(rng.uniform(lo_len, hi_len))
                lo = starts[k] + (v.start_margin_mm if k == 0 else 2.0)
                hi = starts[k + 1] - (end_margin if k == len(lengths) - 1 else 2.0) - length
                if hi <= lo:
                    continue
                s0 = float(rng.uniform(lo, hi))
                if any(s0 - 2.0 < b and s0 + length + 2.0 > a for a, b in taken):
                    continue
                taken.append((s0, s0 + length))
                out.append(PlaqueSpec(
                    vessel=v.name, start_mm=round(s0, 3), length_mm=round(length, 3),
                    arc_deg=round(float(rng.uniform(30.0, 160.0)), 2),
                    angle_deg=round(float(rng.uniform(0.0, 360.0)), 2),
                    thickness_mm=round(float(rng.uniform(0.4, 1.0)) * v.wall_mm, 3),
                    density_mg_cm3=round(float(rng.uniform(*density_range)), 1)))
                break
    return out


def spec_hash(params: dict) -> str:
    """Short stable hash of the generation parameters (used for deterministic DICOM UIDs)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def render_ct(canvas: Canvas, sectors: list[tuple[WallSector, float, float]], phys: CtPhysics,
              rng: np.random.Generator, *, streaks: np.ndarray | None = None,
              moving: Sequence[bool] | None = None, motion: Callable[[np.ndarray], np.ndarray] | None = None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """The image chain: anatomy z-blur, exact calcium through the slice profile, PSF, noise, 12-bit clip.

    ``sectors``: (shape, HU of the calcium, HU of the material it replaces). Returns
    ``(hu int16, calcium_fraction float32, plaque_ids int32, voxelised volumes mm³ per sector)``.
    ``moving`` (one flag per sector) with ``motion`` (an image → image map, e.g. a motion-blur
    kernel): the image of the flagged calcium passes through ``motion`` before the PSF; the
    returned fraction and ids stay those of the true, unmoved calcium.
    """
    grid = canvas.grid
    dz, dy, dx = grid.spacing_mm
    nz = grid.shape[0]
    # Large anatomy was painted at the slice centres; give it the slice profile's width along z.
    image = physics.blur_z(canvas.hu, dz, physics.ssp_sigma_mm(phys.slice_thickness_mm, phys.ssp_blur_fwhm_mm))
    fraction = np.zeros(grid.shape, np.float32)
    ids = np.zeros(grid.shape, np.int32)
    best = np.zeros(grid.shape, np.float32)
    z_centres = grid.origin_lps_mm[2] + dz * np.arange(nz)
    support = 0.5 * phys.slice_thickness_mm + 4.0 * physics.fwhm_to_sigma(phys.ssp_blur_fwhm_mm) + dz
    s = phys.supersample
    voxelised: list[float] = []
    moving_image: np.ndarray | None = None
    for index, (shape, hu_ca, hu_bg) in enumerate(sectors, start=1):
        # Small shapes get more samples, so that ≥ 16 sample steps span their smallest extent.
        s_shape = int(min(32, max(s, np.ceil(16 * max(dy, dx) / max(shape.smallest_feature_mm(), 1e-3)))))
        rendered = render_fraction(shape, grid, s_shape)
        if rendered is None:
            voxelised.append(0.0)
            continue
        sl, frac, fine_z, z_fine = rendered
        voxelised.append(float(frac.sum(dtype=np.float64) * grid.voxel_volume_mm3))
        fraction[sl] += frac
        better = frac > best[sl]
        best[sl] = np.where(better, frac, best[sl])
        ids[sl] = np.where(better, index, ids[sl])
        c0 = max(0, int(np.floor((z_fine[0] - support - z_centres[0]) / dz)))
        c1 = min(nz, int(np.ceil((z_fine[-1] + support - z_centres[0]) / dz)) + 1)
        W = physics.ssp_weights(z_centres[c0:c1], z_fine, dz * len(frac) / len(z_fine),
                                thickness_mm=phys.slice_thickness_mm,
                                blur_fwhm_mm=phys.ssp_blur_fwhm_mm)
        # W integrates the SSP over each fine interval; the object is constant on it → weight × value.
        contrib = np.tensordot(W.astype(np.float32), fine_z, axes=(1, 0))
        target = image
        if moving is not None and motion is not None and moving[index - 1]:
            if moving_image is None:
                moving_image = np.zeros(grid.shape, np.float32)
            target = moving_image
        target[c0:c1, sl[1], sl[2]] += np.float32(hu_ca - hu_bg) * contrib
    if moving_image is not None:
        image += motion(moving_image)
    np.minimum(fraction, 1.0, out=fraction)
    if streaks is not None:
        image += streaks
    image = physics.apply_psf(image, grid.spacing_mm, phys.psf_fwhm_mm)
    physics.add_noise(image, phys.noise_sd_hu, rng, spacing_mm=grid.spacing_mm, corr_fwhm_mm=phys.noise_corr_fwhm_mm)
    hu = np.clip(np.rint(image), HU_MIN, HU_MAX).astype(np.int16)
    return hu, fraction, ids, voxelised


def scan_info(grid: Grid, phys: CtPhysics, description: str, contrast: bool) -> ScanInfo:
    return ScanInfo(source_format="phantom", modality="CT", kvp=phys.kvp, slice_thickness_mm=phys.slice_thickness_mm,
                    slice_increment_mm=grid.spacing_mm[0], contrast_agent="PHANTOM" if contrast else None,
                    manufacturer="vascalc phantom", series_description=description, n_slices=grid.shape[0])


def plaque_records(sectors_specs: list[tuple[PlaqueSpec, WallSector]], voxelised: list[float], phys: CtPhysics,
                   canvas_labels: np.ndarray, grid: Grid, bone_ids: list[int]) -> list[dict]:
    """Per-plaque truth: spec, analytic and voxelised volume, mass, HU, centre, distance to bone."""
    bone = np.isin(canvas_labels, bone_ids) if bone_ids else np.zeros(grid.shape, bool)
    records = []
    for index, ((spec, sector), vox) in enumerate(zip(sectors_specs, voxelised), start=1):
        pts = sector.sample_points(12, 24, 3)
        lo, hi = pts.min(0) - 10.0, pts.max(0) + 10.0
        sl = index_slices(grid, lo, hi, pad=0)
        dist = None
        near_limit = 0.0
        if sl is not None and bone[sl].any():
            z, y, x = axis_coords_mm(grid)
            kk, jj, ii = np.nonzero(bone[sl])
            bone_pts = np.stack([x[sl[2]][ii], y[sl[1]][jj], z[sl[0]][kk]], axis=1)
            d, _ = cKDTree(bone_pts).query(pts)
            dist = round(float(d.min()), 2)
        # Bone is known here only at voxel centres: allow half an in-plane voxel diagonal.
        near_limit = 3.0 + 0.5 * float(np.hypot(grid.spacing_mm[1], grid.spacing_mm[2]))
        volume = sector.volume_mm3
        records.append({
            "id": index, **asdict(spec),
            "hu": round(float(physics.ha_density_to_hu(spec.density_mg_cm3, hu_per_mg_cm3=phys.hu_per_mg_cm3)), 2),
            "volume_mm3": volume, "volume_voxelised_mm3": vox,
            "mass_mg": spec.density_mg_cm3 * volume / 1000.0,
            "centre_lps_mm": [round(float(c), 3) for c in pts.mean(0)],
            "z_range_mm": [round(float(pts[:, 2].min()), 3), round(float(pts[:, 2].max()), 3)],
            "distance_to_bone_mm": dist,
            "next_to_bone": dist is not None and dist <= near_limit,
        })
    return records


def structure_truth(names: list[str], records: list[dict]) -> dict:
    """Per-structure sums of the plaque records (every named structure listed, zeros when clean)."""
    out = {}
    for name in names:
        mine = [r for r in records if r["vessel"] == name]
        out[name] = {
            "calcium_volume_mm3": float(sum(r["volume_mm3"] for r in mine)),
            "calcium_volume_voxelised_mm3": float(sum(r["volume_voxelised_mm3"] for r in mine)),
            "mass_mg": float(sum(r["mass_mg"] for r in mine)),
            "n_lesions": len(mine),
            "plaque_ids": [r["id"] for r in mine],
        }
    return out
