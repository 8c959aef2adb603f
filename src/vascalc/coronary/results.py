"""Result dataclasses of coronary scoring; every numeric field has its unit in its name."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from vascalc.calcium.results import RiskCategories
from vascalc.imaging.volume import Volume
from vascalc.jsonable import to_jsonable
from vascalc.workflows.header import result_header, scan_input

ARTERIES = ("rca", "lad", "lcx")
#: labels of ``coronary_lesions.nii.gz``
LESION_MAP_LABELS = {1: "rca", 2: "lad", 3: "lcx", 4: "not_coronary"}


def _dict(obj) -> dict:
    return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}


@dataclass(frozen=True)
class ArteryScore:
    """Scores of one artery (``rca``, ``lad`` with the left main, ``lcx``) or the ``total``.

    ``agatston_raw`` sums area·weight over 2-D lesions (SCORING.md A.4.1); ``agatston_3mm`` applies
    the slice convention ``agatston_normalisation`` (A.4.3: ``none`` for contiguous 2.5–3 mm
    slices, else ``increment`` = raw·Δz/3 mm); categories use ``agatston_3mm``. ``risk_band`` is the
    coronary band 0 / 1-99 / 100-399 / >=400. ``mass_mg`` needs a calibration factor (A.6).
    """

    name: str
    present: bool
    agatston_raw: float
    agatston_3mm: float
    agatston_normalisation: str
    agatston_like: bool
    n_lesions: int
    n_lesions_2d: int
    n_calcium_voxels: int
    calcium_volume_mm3: float
    calcium_volume_ml: float
    relative_mass_hu_mm3: float
    mass_mg: float | None
    calcium_hu_peak: float | None
    risk_band: str
    risk: RiskCategories | None = None

    def to_dict(self) -> dict:
        return _dict(self)


@dataclass(frozen=True)
class CoronaryLesion:
    """One candidate 3-D calcium cluster and its assignment.

    ``artery`` is ``rca`` | ``lad`` | ``lcx`` | ``not_coronary``; ``method`` says how it was assigned
    (``rule`` groove rules, ``model`` the learned classifier, ``seg3d`` the optional 3-D segmentation
    backend); ``confidence`` is the probability of
    the assigned artery (or of "not coronary" when rejected) for the model, the rule's margin score
    (0.5–1) for the rules; ``probabilities`` per class (model only).
    """

    id: int
    artery: str
    counted: bool
    method: str
    confidence: float
    probabilities: dict[str, float] | None
    n_voxels: int
    volume_mm3: float
    agatston_raw: float
    peak_hu: float
    mean_hu: float
    relative_mass_hu_mm3: float
    n_slices: int
    centroid_lps_mm: tuple[float, float, float]
    centroid_zyx: tuple[float, float, float]
    surface_distance_mm: float
    azimuth_deg: float
    rule_artery: str

    def to_dict(self) -> dict:
        return _dict(self)


@dataclass(frozen=True, eq=False)
class CoronaryResult:
    """Everything one coronary scoring run produced; ``to_dict()`` is the ``result.json`` content.

    ``arteries`` in the order RCA, LAD (incl. left main), LCX; ``lesion_map`` (uint8, full grid)
    labels counted calcium by artery (1 RCA, 2 LAD, 3 LCX) and rejected candidates 4;
    ``heart_mask`` the heart region used; ``cluster_labels`` the candidate cluster ids (lesion id =
    cluster id) on the crop ``cluster_box``; ``features`` the classifier's feature matrix (row =
    lesion id − 1). Arrays and ``timings_s`` are not in the JSON, so two runs give identical bytes.
    """

    case_id: str
    volume: Volume
    heart_mask: np.ndarray
    lesion_map: np.ndarray
    arteries: tuple[ArteryScore, ...]
    total: ArteryScore
    lesions: tuple[CoronaryLesion, ...]
    frame: dict
    heart: dict
    method: dict
    warnings: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)
    cluster_labels: np.ndarray | None = None
    cluster_box: tuple[slice, slice, slice] | None = None
    features: np.ndarray | None = None

    def artery(self, name: str) -> ArteryScore:
        for a in self.arteries:
            if a.name == name:
                return a
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            **result_header("coronary", self.case_id),
            "input": {
                **scan_input(self.volume),
                "heart": self.heart,
            },
            "method": to_jsonable(self.method),
            "structures": [a.to_dict() for a in self.arteries],
            "total": self.total.to_dict(),
            "categories": self.total.risk.to_dict() if self.total.risk is not None else {},
            "frame": to_jsonable(self.frame),
            "lesions": [lesion.to_dict() for lesion in self.lesions],
            "warnings": list(self.warnings),
        }
