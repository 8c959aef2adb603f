"""Trainable segmentation models: datasets, networks, training, cross-validation, ensembles, inference.

PyTorch and MONAI are optional (``pip install 'vascalc[learn]' -c constraints.txt``). This package
imports without them; the functions that need them raise :class:`vascalc.errors.DependencyError`
with the install line. Data loading, splits and metrics are numpy-only.

Main entry points::

    from vascalc.learn import load_slices, Seg2DConfig, train_seg2d, predict_volume
    slices = load_slices("data/*_img.png")                    # PNG pairs or CT volumes + masks
    report = train_seg2d(slices, "/tmp/model", Seg2DConfig(size_px=192, epochs=30))
    labels = predict_volume("/tmp/model", volume)              # LabelMap on the volume's grid
"""

from __future__ import annotations

from importlib import import_module

from vascalc.learn._deps import learn_available, require_monai, require_torch
from vascalc.learn.data import SliceSet, load_slices, pair_files
from vascalc.learn.metrics import DiceScores, dice, dice_scores, per_slice_dice
from vascalc.learn.split import Fold, kfold_slices

# These modules only touch torch inside their functions, but keep them lazy all the same so that
# ``import vascalc.learn`` stays cheap.
_LAZY = {
    "Seg2DConfig": "vascalc.learn.seg2d",
    "FoldResult": "vascalc.learn.seg2d",
    "S4_DICE": "vascalc.learn.seg2d",
    "bce_jaccard_loss": "vascalc.learn.seg2d",
    "cross_validate": "vascalc.learn.seg2d",
    "predict_probabilities": "vascalc.learn.seg2d",
    "train_network": "vascalc.learn.seg2d",
    "train_seg2d": "vascalc.learn.seg2d",
    "NetworkSpec": "vascalc.learn.models",
    "build_network": "vascalc.learn.models",
    "Seg2DEnsemble": "vascalc.learn.store",
    "load_ensemble": "vascalc.learn.store",
    "save_ensemble": "vascalc.learn.store",
    "predict_volume": "vascalc.learn.infer",
    "Seg3DConfig": "vascalc.learn.seg3d",
    "train_seg3d": "vascalc.learn.seg3d",
    "save_seg3d": "vascalc.learn.seg3d",
    "load_seg3d": "vascalc.learn.seg3d",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vascalc.learn' has no attribute {name!r}")


__all__ = [
    "DiceScores", "Fold", "SliceSet", "dice", "dice_scores", "kfold_slices", "learn_available", "load_slices",
    "pair_files", "per_slice_dice", "require_monai", "require_torch", *_LAZY,
]
