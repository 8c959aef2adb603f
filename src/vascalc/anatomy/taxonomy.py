"""Canonical structure names and the TotalSegmentator ``total`` label table.

vascalc names structures as TotalSegmentator does (``aorta``, ``iliac_artery_left``,
``vertebrae_L1`` …) so that its output folders and multilabel files drop in unchanged. Where
TotalSegmentator's ``total`` task has no label for a vessel we score (renal, mesenteric, femoral
arteries …) the name is the obvious snake_case one, side last (``renal_artery_left``).

The id → name table of TotalSegmentator v2's ``total`` task is shipped as data in
``totalseg_total_v2.json`` (Apache-2.0, from ``totalsegmentator/map_to_binary.py``). It is *not*
the v1 table (v1 had aorta = 7; v2 has aorta = 52).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from types import MappingProxyType
from typing import Mapping

_TABLE_FILE = "totalseg_total_v2.json"


@lru_cache(maxsize=1)
def totalseg_total_v2() -> Mapping[int, str]:
    """TotalSegmentator v2 ``total`` task: read-only mapping ``{label id: structure name}`` (117 ids)."""
    raw = json.loads(files("vascalc.anatomy").joinpath(_TABLE_FILE).read_text(encoding="utf-8"))
    return MappingProxyType({int(k): str(v) for k, v in raw["labels"].items()})


def _side_pair(stem: str) -> tuple[str, str]:
    return (f"{stem}_left", f"{stem}_right")


#: Cervical to sacral order (cranial first); the landmark order used to define regions.
VERTEBRAE: tuple[str, ...] = tuple(
    [f"vertebrae_C{i}" for i in range(1, 8)]
    + [f"vertebrae_T{i}" for i in range(1, 13)]
    + [f"vertebrae_L{i}" for i in range(1, 6)]
    + ["vertebrae_S1"]
)

#: Arteries whose wall calcification vascalc scores. TotalSegmentator ``total`` names first; the
#: rest are the names other tasks or other segmenters use (or the obvious snake_case ones).
ARTERIES: tuple[str, ...] = (
    "aorta",
    *_side_pair("iliac_artery"),
    *_side_pair("common_iliac_artery"),
    *_side_pair("external_iliac_artery"),
    *_side_pair("internal_iliac_artery"),
    *_side_pair("femoral_artery"),
    *_side_pair("renal_artery"),
    "celiac_trunk",
    "superior_mesenteric_artery",
    "inferior_mesenteric_artery",
    "brachiocephalic_trunk",
    *_side_pair("subclavian_artery"),
    *_side_pair("common_carotid_artery"),
)

#: Coronary arteries (right, left anterior descending, left circumflex, left main).
CORONARY_ARTERIES: tuple[str, ...] = ("rca", "lad", "lcx", "left_main")

#: Bone and cartilage: bright, calcium-like HU that must never count as vascular calcium.
BONES: tuple[str, ...] = (
    *VERTEBRAE,
    "sacrum",
    *_side_pair("hip"),
    *_side_pair("femur"),
    *_side_pair("humerus"),
    *_side_pair("scapula"),
    *_side_pair("clavicula"),
    *[f"rib_{side}_{i}" for side in ("left", "right") for i in range(1, 13)],
    "sternum",
    "costal_cartilages",
    "skull",
    "other_bone",  # the built-in segmenter's bone without a more specific name (ribs, scapulae …)
)

#: Structures used to place regions along the body axis.
LANDMARKS: tuple[str, ...] = (*VERTEBRAE, "sacrum", "heart")

#: Veins: contrast-filled on CTA, never scored.
VEINS: tuple[str, ...] = (
    "pulmonary_vein",
    *_side_pair("brachiocephalic_vein")[::-1],
    "superior_vena_cava",
    "inferior_vena_cava",
    "portal_vein_and_splenic_vein",
    *_side_pair("iliac_vena"),
)


def category(name: str) -> str:
    """Group of a canonical name: ``'artery'``, ``'coronary'``, ``'bone'``, ``'vein'``,
    ``'heart'`` or ``'other'``."""
    if name in CORONARY_ARTERIES:
        return "coronary"
    if name in ARTERIES:
        return "artery"
    if name in BONES:
        return "bone"
    if name in VEINS:
        return "vein"
    if name == "heart":
        return "heart"
    return "other"


def is_scored_artery(name: str) -> bool:
    """True for the arteries (including coronaries) whose calcification vascalc reports."""
    return name in ARTERIES or name in CORONARY_ARTERIES


def is_coronary(name: str) -> bool:
    """True for RCA, LAD, LCX and left main."""
    return name in CORONARY_ARTERIES


def is_bone(name: str) -> bool:
    """True for bones and cartilage (vertebrae, sacrum, hips, femora, ribs, sternum …)."""
    return name in BONES


def is_landmark(name: str) -> bool:
    """True for the structures used to place body regions (vertebrae, sacrum, heart)."""
    return name in LANDMARKS


def known_names() -> frozenset[str]:
    """Every canonical name vascalc recognises: the TotalSegmentator table plus the groups above."""
    return frozenset(totalseg_total_v2().values()) | frozenset(
        ARTERIES + CORONARY_ARTERIES + BONES + LANDMARKS + VEINS
    )
