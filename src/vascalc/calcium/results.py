"""Result dataclasses of calcium scoring; every numeric field carries its unit in its name."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from vascalc.jsonable import to_jsonable


@dataclass(frozen=True)
class RiskCategories:
    """Classic Agatston band and CAC-DRS class of an Agatston total (SCORING.md A.9)."""

    agatston: float
    classic_band: str                 # none | minimal | mild | moderate | severe
    classic_band_extended: str        # … severe split into significant (400–1000] / very_significant
    cac_drs_a: str                    # A0 … A3
    cac_drs_n: int | None             # calcified coronary vessels (N1–N4) when coronary scores known
    lm_separate: bool | None

    def to_dict(self) -> dict:
        return {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Lesion:
    """One 3-D calcium cluster (26-connected component of the calcium mask, split by vessel, A.3/A.8).

    ``id`` is its value in ``CalciumResult.lesion_labels``; index coordinates are (z, y, x) on the
    full grid; ``bbox_zyx`` = (z0, y0, x0, z1, y1, x1), inclusive.
    """

    id: int
    structure: str
    n_voxels: int
    volume_mm3: float
    peak_hu: float
    mean_hu: float
    relative_mass_hu_mm3: float
    agatston: float
    n_slices: int
    centroid_zyx: tuple[float, float, float]
    centroid_lps_mm: tuple[float, float, float]
    bbox_zyx: tuple[int, int, int, int, int, int]
    integrated_volume_mm3: float | None
    integrated_mass_mg: float | None
    pv_background_hu: float | None
    pv_object_hu: float | None
    pv_density_mg_cm3: float | None
    pv_region_voxels: int

    def to_dict(self) -> dict:
        return {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class StructureScore:
    """All scores of one vessel, one region part of a vessel, or the total (SCORING.md A.4–A.8).

    ``kind`` is ``vessel``, ``region`` (then ``parent`` names the vessel) or ``total``.
    ``agatston_like`` is true when the policy is not the clinical 130-HU (kV-adjusted) rule.
    ``profile`` rows: (slice_index, z_mm along the superior axis, calcium area mm², calcium volume mm³).
    Partial-volume scores (A.7) are reported under their own names next to the classic ones.
    """

    name: str
    kind: str
    parent: str | None
    present: bool
    vessel_volume_mm3: float
    roi_volume_mm3: float
    agatston_raw: float
    agatston_3mm: float
    agatston_normalisation: str
    agatston_like: bool
    n_lesions_2d: int
    n_clusters_3d: int
    n_calcium_voxels: int
    calcium_volume_mm3: float
    calcium_volume_ml: float
    relative_mass_hu_mm3: float
    mass_mg: float | None
    cluster_volume_mean_mm3: float | None
    cluster_volume_median_mm3: float | None
    cluster_volume_max_mm3: float | None
    cluster_volumes_mm3: tuple[float, ...]
    calcium_hu_mean: float | None
    calcium_hu_median: float | None
    calcium_hu_sd: float | None
    calcium_hu_peak: float | None
    burden_fraction: float | None
    burden_percent: float | None
    integrated_volume_mm3: float | None
    integrated_mass_mg: float | None
    volume_fraction_mass_mg: float | None
    pv_background_hu: float | None
    pv_calcium_reference_hu: float | None
    pv_reference_density_mg_cm3: float | None
    pv_object_hu_median: float | None
    profile: tuple[tuple[int, float, float, float], ...]
    risk: RiskCategories | None = None
    # blur-corrected PV volume (moment fit of a wall layer, docs/accuracy.md); None without the model
    pv_volume_blur_corrected_mm3: float | None = None

    def to_dict(self) -> dict:
        return {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, eq=False)
class CalciumResult:
    """Everything one scoring run produced (SCORING.md A).

    ``structures``: one per scored vessel (in label-id order, empty ones flagged ``present=False``)
    followed by region parts; ``total``: sums over vessels; ``lesion_labels``: uint16 (int32 past 65 535
    clusters) (z, y, x) map of
    3-D cluster ids (0 = none) ordered by (structure, first voxel in raster order); ``thresholds``:
    per structure, the threshold and its derivation; ``method``: policy and every parameter.
    """

    structures: tuple[StructureScore, ...]
    total: StructureScore
    lesions: tuple[Lesion, ...]
    lesion_labels: np.ndarray
    thresholds: dict
    method: dict
    warnings: tuple[str, ...]
    calcium_mask: np.ndarray | None = None

    @property
    def categories(self) -> dict:
        return self.total.risk.to_dict() if self.total.risk is not None else {}

    def structure(self, name: str) -> StructureScore:
        for s in self.structures:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON-serialisable summary (arrays excluded)."""
        return {
            "structures": [s.to_dict() for s in self.structures],
            "total": self.total.to_dict(),
            "categories": self.categories,
            "lesions": [lesion.to_dict() for lesion in self.lesions],
            "thresholds": to_jsonable(self.thresholds),
            "method": to_jsonable(self.method),
            "warnings": list(self.warnings),
        }
