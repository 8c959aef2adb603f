"""Apply a trained 2-D model folder to a CT volume slice by slice: the ``model:PATH`` backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vascalc.imaging import LabelMap, Volume
from vascalc.learn.data import normalise_slices, to_display_view
from vascalc.learn.metrics import per_slice_dice
from vascalc.learn.seg2d import member_probabilities
from vascalc.learn.store import Seg2DEnsemble, load_ensemble

#: Generic label names a user may train under, and the canonical name they are stored as.
GENERIC_LABELS = {"vessels": "aorta", "vessel": "aorta", "arteries": "aorta", "artery": "aorta"}

#: A slice is flagged uncertain when some fold model's mask overlaps the ensemble's with Dice below this.
UNCERTAIN_MEMBER_DICE = 0.5


def canonical_label(name: str) -> str:
    """The canonical structure name for a model's label (``vessels`` → ``aorta``; others unchanged)."""
    return GENERIC_LABELS.get(name.strip().lower(), name.strip())


def predict_volume(
    model_dir: str | Path | Seg2DEnsemble, volume: Volume, *, batch_size: int = 8, threshold: float | None = None
) -> LabelMap:
    """Segment ``volume`` with the fold ensemble in ``model_dir``, one axial slice at a time.

    HU are normalised as in training (``model.json``: HU window, or window + per-slice scaling
    for models trained on PNG exports), slices are put in radiological display view, the fold
    probabilities are averaged and thresholded (``threshold`` overrides the stored one). Returns a
    :class:`LabelMap` on the volume's grid with one structure, named from the model's label
    (generic ``vessels`` → ``aorta``). Slices where a fold model disagrees with the ensemble
    (Dice < 0.5 on a slice either predicts) are listed in ``uncertain_slices``.
    """
    ensemble = model_dir if isinstance(model_dir, Seg2DEnsemble) else load_ensemble(model_dir)
    cut = ensemble.threshold if threshold is None else float(threshold)
    view = to_display_view(volume.hu, volume.grid)
    networks = list(ensemble.networks)
    mask = np.zeros(view.shape, dtype=bool)
    uncertain: list[int] = []
    # batch by batch: the members' probabilities of a whole CT would take GBs
    for start in range(0, len(view), batch_size):
        images = normalise_slices(view[start : start + batch_size], ensemble.normalisation, ensemble.window_hu)
        members = member_probabilities(networks, images, ensemble.size_px, batch_size)
        batch_mask = members.mean(axis=0) >= cut
        mask[start : start + len(images)] = batch_mask
        if len(members) > 1:
            member_dice = np.stack([per_slice_dice(m >= cut, batch_mask) for m in members])
            worst = np.nanmin(np.where(np.isnan(member_dice), 1.0, member_dice), axis=0)
            uncertain += (start + np.flatnonzero(worst < UNCERTAIN_MEMBER_DICE)).tolist()
    labels = to_display_view(mask.astype(np.uint8), volume.grid)
    name = canonical_label(ensemble.label_name)
    spec = ensemble.metadata["network"]
    note = (
        f"{name}: 2-D {spec['backbone']} U-Net ensemble of {len(networks)} fold model(s), slice by slice, "
        f"input {ensemble.size_px} px, threshold {cut}"
    )
    return LabelMap(
        labels=labels,
        grid=volume.grid,
        names={1: name},
        uncertain_slices={name: tuple(int(z) for z in uncertain)} if uncertain else {},
        load_notes=(note,),
    )
