"""Result and specification types of the digital phantoms."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vascalc.errors import MaskError
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import Volume

#: TotalSegmentator's iliac label is common + external iliac; these are the finer phantom labels.
ILIAC_GROUPS: dict[str, tuple[str, ...]] = {
    "iliac_artery_left": ("common_iliac_artery_left", "external_iliac_artery_left"),
    "iliac_artery_right": ("common_iliac_artery_right", "external_iliac_artery_right"),
}


@dataclass(frozen=True)
class PlaqueSpec:
    """One calcified wall plaque: an annular sector of the vessel wall on a straight centreline piece.

    ``start_mm``: arc length (mm) along the vessel's centreline, from its origin, where the plaque
    starts; ``length_mm`` along the centreline; ``arc_deg`` the angular extent; ``angle_deg`` the
    centre angle (0 = anterior, 90 = patient left, 180 = posterior, 270 = right, for a vessel running
    downwards; superior replaces anterior for vessels running forwards); ``thickness_mm`` radial,
    from the lumen surface outwards (≤ the vessel's wall thickness); ``density_mg_cm3`` of calcium
    hydroxyapatite. Truth: volume = arc/2·((r+t)² − r²)·length, mass = density · volume.
    """

    vessel: str
    start_mm: float
    length_mm: float
    arc_deg: float
    angle_deg: float
    thickness_mm: float
    density_mg_cm3: float


@dataclass(frozen=True)
class StructureTruth:
    """True calcium of one structure (vessel or group): analytic and voxelised volume, mass, lesions."""

    name: str
    calcium_volume_mm3: float
    calcium_volume_voxelised_mm3: float
    mass_mg: float
    n_lesions: int
    plaque_ids: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Phantom:
    """A digital CT phantom with exact calcium truth.

    ``volume``: the simulated CT (int16 HU). ``labels``: vessels (lumen + wall) and landmarks with
    canonical names (finer iliac labels; see :meth:`totalseg_labels`). ``calcium_fraction``: true
    calcium volume fraction of every voxel (float32, 0–1; voxel = increment-thick cell).
    ``plaque_ids``: id (1-based, as in ``truth["plaques"]``) of the plaque covering most of each
    voxel, 0 elsewhere. ``truth``: JSON-ready dict with every parameter, the seed, per-structure and
    per-plaque truth (see docs/phantoms.md). ``distractor_ids`` (chest phantom; None elsewhere): id
    (as in ``truth["distractors"]``) of the non-coronary calcium covering most of each voxel, 0 elsewhere.
    """

    volume: Volume
    labels: LabelMap
    calcium_fraction: np.ndarray
    plaque_ids: np.ndarray
    truth: dict = field(default_factory=dict)
    distractor_ids: np.ndarray | None = None

    def truth_for(self, name: str) -> StructureTruth:
        """Calcium truth of a structure; ``iliac_artery_left/right`` sum the common and external iliac."""
        structures = self.truth.get("structures", {})
        parts = ILIAC_GROUPS.get(name, (name,))
        if not any(p in structures for p in parts):
            raise MaskError(f"the phantom has no structure named {name!r}; known: {', '.join(sorted(structures))}")
        recs = [structures[p] for p in parts if p in structures]
        ids = tuple(i for r in recs for i in r["plaque_ids"])
        return StructureTruth(
            name=name,
            calcium_volume_mm3=float(sum(r["calcium_volume_mm3"] for r in recs)),
            calcium_volume_voxelised_mm3=float(sum(r["calcium_volume_voxelised_mm3"] for r in recs)),
            mass_mg=float(sum(r["mass_mg"] for r in recs)),
            n_lesions=int(sum(r["n_lesions"] for r in recs)),
            plaque_ids=ids,
        )

    def totalseg_labels(self) -> LabelMap:
        """The label map with TotalSegmentator's coarser vessel names (common + external iliac merged)."""
        ids = self.labels.ids_by_name
        labels = self.labels.labels.copy()
        names = dict(self.labels.names)
        next_id = max(names) + 1
        for group, parts in ILIAC_GROUPS.items():
            members = [ids[p] for p in parts if p in ids]
            if not members:
                continue
            labels[np.isin(labels, members)] = next_id
            for m in members:
                names.pop(m)
            names[next_id] = group
            next_id += 1
        return LabelMap(labels=labels, grid=self.labels.grid, names=names)


@dataclass(frozen=True)
class VertebraLandmark:
    """True position of one vertebral body on a radiograph, in pixels (row, col).

    Corners in the order anterior-superior, posterior-superior, posterior-inferior, anterior-inferior.
    """

    name: str
    corners_px: tuple[tuple[float, float], ...]
    centre_px: tuple[float, float]


@dataclass(frozen=True, eq=False)
class RadiographPhantom:
    """A lateral digitally reconstructed radiograph with the true Kauppila grades (SCORING.md B).

    ``image``: float32, brighter = more attenuation (like a displayed radiograph), rows run from
    superior to inferior, columns from anterior to posterior. ``pixel_spacing_mm`` = (row, col).
    ``segment_grades``: ``{"L1_anterior": 0–3, …}`` for the 8 aortic wall segments;
    ``segment_fractions``: the covered fraction f of each; ``aac24`` their sum.
    """

    image: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    vertebrae: tuple[VertebraLandmark, ...]
    segment_grades: dict[str, int]
    segment_fractions: dict[str, float]
    aac24: int
    truth: dict = field(default_factory=dict)
