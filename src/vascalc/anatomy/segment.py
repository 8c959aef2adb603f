"""One interface to every way of getting vessel and landmark masks from a CT.

``segment(volume, backend=…)`` returns a :class:`LabelMap` on the volume's grid with canonical
(TotalSegmentator) names, whichever backend made it:

==================  ==========================================================================
``builtin``         model-free segmenter (numpy/scipy): vessels, vertebrae, pelvis, femurs
``model:PATH``      a trained 2-D model folder (``vascalc train seg2d``) for the vessels, plus
                    the built-in skeleton so that bone is never scored
``totalsegmentator`` TotalSegmentator's Python API, when the package and its weights are installed
``auto``            TotalSegmentator when available, else ``builtin``
==================  ==========================================================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vascalc.errors import InputError
from vascalc.imaging import LabelMap, Volume

BACKENDS = ("auto", "builtin", "totalsegmentator", "model:PATH")

#: The structures the CT job needs: arteries to score, bones to exclude, vertebrae for regions.
CT_STRUCTURES: tuple[str, ...] = (
    "aorta", "iliac_artery_left", "iliac_artery_right", "femoral_artery_left", "femoral_artery_right",
    "renal_artery_left", "renal_artery_right", "celiac_trunk", "superior_mesenteric_artery",
    "vertebrae_T11", "vertebrae_T12", "vertebrae_L1", "vertebrae_L2", "vertebrae_L3", "vertebrae_L4",
    "vertebrae_L5", "sacrum", "hip_left", "hip_right", "femur_left", "femur_right",
)


def merge_labelmaps(volume: Volume, parts: list[LabelMap], priority_last: bool = True) -> LabelMap:
    """Merge label maps on one grid into one, renumbering ids; later parts win where they overlap."""
    labels = np.zeros(volume.shape, dtype=np.uint16)
    names: dict[int, str] = {}
    uncertain: dict[str, tuple[int, ...]] = {}
    next_id = 1
    for part in (parts if priority_last else parts[::-1]):
        for old_id, name in sorted(part.names.items()):
            if name in names.values():
                new_id = next(i for i, n in names.items() if n == name)
            else:
                new_id, next_id = next_id, next_id + 1
                names[new_id] = name
            labels[part.labels == old_id] = new_id
        uncertain.update(part.uncertain_slices)
    return LabelMap(labels=labels, grid=volume.grid, names=names, uncertain_slices=uncertain)


def _builtin(volume: Volume) -> LabelMap:
    from vascalc.anatomy.builtin.landmarks import segment_bones
    from vascalc.anatomy.builtin.vessels import segment_vessels

    bones = segment_bones(volume)
    # The vessel tracker keeps its own, contrast-aware skeleton: the landmark skeleton takes in
    # contrast-filled lumen next to the spine (on CTA it would cut the aorta in half). The vessels
    # win where the two disagree; calcium scoring still excludes voxels near the remaining bone.
    vessels = segment_vessels(volume, body=bones.body)
    skeleton = bones.labels.subset([n for n in bones.labels.names.values() if n != "body"])
    return merge_labelmaps(volume, [skeleton, vessels.labels])


def _model(volume: Volume, model_dir: Path) -> LabelMap:
    from vascalc.anatomy.builtin.landmarks import segment_bones
    from vascalc.learn import predict_volume

    if not model_dir.is_dir():
        raise InputError(f"model folder not found: {model_dir}")
    vessels = predict_volume(model_dir, volume)
    bones = segment_bones(volume)
    skeleton = bones.labels.subset([n for n in bones.labels.names.values() if n != "body"])
    # bone is never a vessel: the skeleton wins where the model's mask touches it
    return merge_labelmaps(volume, [vessels, skeleton])


def segment(volume: Volume, structures: tuple[str, ...] = CT_STRUCTURES, backend: str = "auto") -> LabelMap:
    """Vessel and landmark masks for ``volume`` from the chosen backend (see module docstring).

    Raises :class:`InputError` for an unknown backend and :class:`DependencyError` when the
    TotalSegmentator backend is asked for but not installed.
    """
    if backend == "auto":
        from vascalc.anatomy.totalsegmentator import totalsegmentator_available

        backend = "totalsegmentator" if totalsegmentator_available() else "builtin"
    if backend == "builtin":
        labels = _builtin(volume)
    elif backend == "totalsegmentator":
        from vascalc.anatomy.totalsegmentator import run_totalsegmentator

        labels = run_totalsegmentator(volume, list(structures))
    elif backend.startswith("model:"):
        labels = _model(volume, Path(backend.split(":", 1)[1]))
    else:
        raise InputError(f"unknown segmenter {backend!r}; choose one of {', '.join(BACKENDS)}")
    wanted = [n for n in labels.names.values() if n in structures or n == "other_bone"]
    return labels.subset(wanted) if wanted else labels


__all__ = ["BACKENDS", "CT_STRUCTURES", "merge_labelmaps", "segment"]
