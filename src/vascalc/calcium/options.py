"""Scoring options and mass calibration references (SCORING.md A.1, A.3–A.7)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vascalc.errors import MethodError

#: default calcium reference for the partial-volume-aware scores when no rods are given (A.7) [T/U]:
#: hydroxyapatite at 800 mg/cm³ with a linear 1.0 HU per mg/cm³ over water (0 HU) at 120 kVp, the
#: model the vascalc phantoms use. It is an assumption and every result using it says so.
DEFAULT_REFERENCE_DENSITY_MG_CM3 = 800.0
DEFAULT_HU_PER_MG_CM3 = 1.0


@dataclass(frozen=True)
class ScoringOptions:
    """Everything besides the detection policy that changes a score.

    ROI (A.1): ``wall_mm`` dilation of each vessel mask; voxels within ``bone_margin_mm`` of bone
    are excluded. Lesions (A.3): ``min_area_mm2`` (inclusive, relative tolerance 1e-9),
    ``connectivity_2d`` 8|4, ``connectivity_3d`` 26|6. Agatston (A.4.3): ``slice_normalisation``
    auto|none|increment|resample3mm. Mass (A.6): ``mass_calibration_mg_per_cm3_per_hu`` (c_HA).
    Partial volume (A.7): region = calcium dilated by ``pv_region_mm`` (at least
    ``pv_min_region_voxels`` voxels per axis); background ring of ``pv_ring_mm`` beyond it;
    ``pv_background`` model|compartments|inpaint|median|mean (``model``: the calcium-free image of each
    vessel, :mod:`vascalc.calcium.background`; the others: :func:`vascalc.calcium.pv.cluster_pv`); ``pv_background_scope`` vessel|ring
    (vessel: ring voxels in the same vessel's ROI when at least ``pv_min_ring_voxels`` exist);
    ``pv_clip_fraction`` clips the volume fraction to [0, 1]; ``pv_object`` lesion|reference picks
    S_obj of the integrated scores (each lesion's own self-consistent HU, or the fixed reference). ``pv_seed``
    [T] adds regions the threshold missed (HU > vessel background + max(``pv_seed_sd``·σ,
    ``pv_seed_floor_hu``), ≥ ``pv_seed_min_voxels`` voxels, see :func:`vascalc.calcium.pv.pv_seed_regions`)
    to the integrated scores only; threshold scores never change. ``force`` overrides the contrast
    guard; ``strict`` makes every threshold ``>`` instead of ``>=``; ``kvp_override`` replaces the
    scan's kVp; ``contrast_guard_hu`` is the guard's median-lumen limit.
    """

    wall_mm: float = 1.0
    bone_margin_mm: float = 3.0
    min_area_mm2: float = 1.0
    connectivity_2d: int = 8
    connectivity_3d: int = 26
    slice_normalisation: str = "auto"
    mass_calibration_mg_per_cm3_per_hu: float | None = None
    pv_region_mm: float = 2.0
    pv_ring_mm: float = 2.0
    pv_background: str = "model"
    pv_min_region_voxels: float = 2.0
    pv_background_scope: str = "vessel"
    pv_min_ring_voxels: int = 20
    pv_clip_fraction: bool = False
    pv_object: str = "lesion"
    pv_seed: bool = True
    pv_seed_sd: float = 3.0
    pv_seed_floor_hu: float = 50.0
    pv_seed_min_voxels: int = 3
    force: bool = False
    strict: bool = False
    kvp_override: float | None = None
    contrast_guard_hu: float = 100.0
    guard_erode_mm: float = 2.0
    keep_calcium_mask: bool = False

    def __post_init__(self) -> None:
        if self.wall_mm < 0 or self.bone_margin_mm < 0:
            raise MethodError("wall_mm and bone_margin_mm must be ≥ 0 mm")
        if self.min_area_mm2 < 0:
            raise MethodError("min_area_mm2 must be ≥ 0 mm²")
        if self.connectivity_2d not in (4, 8):
            raise MethodError(f"connectivity_2d must be 4 or 8, got {self.connectivity_2d}")
        if self.connectivity_3d not in (6, 18, 26):
            raise MethodError(f"connectivity_3d must be 6, 18 or 26, got {self.connectivity_3d}")
        if self.slice_normalisation not in ("auto", "none", "increment", "resample3mm"):
            raise MethodError("slice_normalisation must be auto, none, increment or resample3mm, "
                              f"got {self.slice_normalisation!r}")
        if self.mass_calibration_mg_per_cm3_per_hu is not None and not self.mass_calibration_mg_per_cm3_per_hu > 0:
            raise MethodError("the mass calibration factor must be a positive number (mg/cm³ per HU)")
        if self.pv_background not in ("model", "compartments", "inpaint", "median", "mean"):
            raise MethodError("pv_background must be 'model', 'compartments', 'inpaint', 'median' or 'mean'")
        if self.pv_background_scope not in ("vessel", "ring"):
            raise MethodError("pv_background_scope must be 'vessel' or 'ring'")
        if self.pv_object not in ("lesion", "reference"):
            raise MethodError("pv_object must be 'lesion' or 'reference'")
        if self.pv_seed_sd < 0 or self.pv_seed_floor_hu < 0 or self.pv_seed_min_voxels < 1:
            raise MethodError("pv_seed_sd and pv_seed_floor_hu must be ≥ 0 and pv_seed_min_voxels ≥ 1")
        if self.pv_region_mm <= 0 or self.pv_ring_mm <= 0:
            raise MethodError("pv_region_mm and pv_ring_mm must be > 0 mm")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CalibrationReference:
    """Calibration rods: HA densities (mg/cm³) and their mean HU, scanned with the same protocol.

    ``water_hu`` is the HU of a 0 mg/cm³ reference when known. The fit HU = a + b·ρ gives the
    mass factor c_HA = 1/b (A.6, equal to ρ/(HU − HU_water) for one rod plus water) and the
    partial-volume reference S_obj = a + b·ρ_cal at ``reference_density_mg_cm3`` (default: the
    densest rod) (A.7).
    """

    densities_mg_cm3: tuple[float, ...]
    mean_hu: tuple[float, ...]
    water_hu: float | None = None
    reference_density_mg_cm3: float | None = None

    def __post_init__(self) -> None:
        if len(self.densities_mg_cm3) != len(self.mean_hu) or not self.densities_mg_cm3:
            raise MethodError("calibration needs one mean HU per rod density (at least one rod)")

    @classmethod
    def from_roi(cls, hu: np.ndarray, masks: dict[float, np.ndarray], water_hu: float | None = None) -> "CalibrationReference":
        """Rods from ROI masks ``{density_mg_cm3: bool mask}`` on the HU array (mean HU per ROI)."""
        dens, means = [], []
        for density, mask in sorted(masks.items()):
            values = np.asarray(hu)[np.asarray(mask, dtype=bool)]
            if values.size == 0:
                raise MethodError(f"the calibration ROI for {density} mg/cm³ is empty")
            dens.append(float(density))
            means.append(float(values.mean()))
        return cls(tuple(dens), tuple(means), water_hu)

    def fit(self) -> tuple[float, float]:
        """(a HU, b HU per mg/cm³) of HU = a + b·ρ; one rod without water assumes a = 0 (as R18)."""
        rho = np.asarray(self.densities_mg_cm3, dtype=float)
        hu = np.asarray(self.mean_hu, dtype=float)
        if self.water_hu is not None:
            rho = np.append(rho, 0.0)
            hu = np.append(hu, float(self.water_hu))
        if rho.size == 1 or np.ptp(rho) == 0:
            b = float(hu.mean() / rho.mean())
            return 0.0, b
        b, a = np.polyfit(rho, hu, 1)
        if not b > 0:
            raise MethodError("calibration rods give a non-positive HU per mg/cm³ slope; check the rods")
        return float(a), float(b)

    @property
    def mg_per_cm3_per_hu(self) -> float:
        return 1.0 / self.fit()[1]

    def reference(self) -> tuple[float, float]:
        """(ρ_cal mg/cm³, S_obj HU) for the partial-volume scores (A.7)."""
        a, b = self.fit()
        rho = self.reference_density_mg_cm3 or max(self.densities_mg_cm3)
        return float(rho), float(a + b * rho)

    def to_dict(self) -> dict:
        a, b = self.fit()
        d = asdict(self)
        d.update(densities_mg_cm3=list(self.densities_mg_cm3), mean_hu=list(self.mean_hu),
                 fit_intercept_hu=a, fit_slope_hu_per_mg_cm3=b)
        return d
