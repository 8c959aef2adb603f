"""Options of coronary scoring (everything besides the detection policy that changes a result)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from vascalc.coronary.assign import RuleSettings
from vascalc.errors import MethodError


@dataclass(frozen=True)
class CoronaryOptions:
    """Lesions (SCORING.md A.3): ``min_area_mm2`` (inclusive), ``connectivity_2d`` 8|4, ``strict``
    (``>`` instead of ``>=``). Agatston (A.4.3): ``slice_normalisation`` auto|none|increment. Mass
    (A.6): ``mass_calibration_mg_per_cm3_per_hu``. ``kvp_override`` replaces the scan's kVp.
    Search zone: heart dilated by ``search_margin_mm`` (the epicardial fat holding the
    coronaries); bone: above-threshold components with less than ``bone_inside_fraction`` of their
    voxels in the zone or larger than ``bone_min_mm3`` (sternum, ribs against the heart) [T].
    Guards [T]: heart centre (blood pool) median above ``contrast_blood_pool_hu`` →
    contrast scan; at least ``metal_min_mm3`` of voxels ≥ ``metal_hu`` in the zone → metal.
    ``model_min_probability``: with the learned classifier, a lesion is counted when its probability
    of being coronary (1 − P(not coronary)) reaches this value, for its most probable artery; else it
    is rejected (the sensitivity/specificity knob).
    ``rules``: the groove rules (:class:`RuleSettings`).
    """

    min_area_mm2: float = 1.0
    connectivity_2d: int = 8
    strict: bool = False
    slice_normalisation: str = "auto"
    mass_calibration_mg_per_cm3_per_hu: float | None = None
    kvp_override: float | None = None
    search_margin_mm: float = 10.0
    bone_inside_fraction: float = 0.5
    bone_min_mm3: float = 3000.0
    contrast_blood_pool_hu: float = 150.0
    metal_hu: float = 2000.0
    metal_min_mm3: float = 20.0
    model_min_probability: float = 0.7
    rules: RuleSettings = field(default_factory=RuleSettings)

    def __post_init__(self) -> None:
        if self.min_area_mm2 < 0:
            raise MethodError("min_area_mm2 must be ≥ 0 mm²")
        if self.connectivity_2d not in (4, 8):
            raise MethodError(f"connectivity_2d must be 4 or 8, got {self.connectivity_2d}")
        if self.slice_normalisation not in ("auto", "none", "increment"):
            raise MethodError(f"slice_normalisation must be auto, none or increment, got {self.slice_normalisation!r}")
        if self.mass_calibration_mg_per_cm3_per_hu is not None and not self.mass_calibration_mg_per_cm3_per_hu > 0:
            raise MethodError("the mass calibration factor must be a positive number (mg/cm³ per HU)")
        if not self.search_margin_mm > 0:
            raise MethodError("search_margin_mm must be > 0 mm")
        if not 0 <= self.model_min_probability <= 1:
            raise MethodError("model_min_probability must lie in [0, 1]")
        if not 0 < self.bone_inside_fraction <= 1:
            raise MethodError("bone_inside_fraction must lie in (0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)
