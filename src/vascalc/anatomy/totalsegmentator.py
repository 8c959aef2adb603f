"""Bridge to TotalSegmentator (Wasserthal et al., Radiol AI 2023): run its Python API, read its output.

TotalSegmentator is optional and is *not* installed with vascalc's ``learn`` extra: it needs
torchvision and its own torch pin (``pip install 'vascalc[totalsegmentator]'`` in a separate
environment, without ``-c constraints.txt``), plus its network weights, which it downloads on
first use (``totalseg_download_weights -t total``; some tasks need a licence, the ``total``
task does not). vascalc never triggers that download: when the package or the weights are
missing, :func:`run_totalsegmentator` raises :class:`DependencyError` saying how to install them.

Where the weights live (as TotalSegmentator's ``config.get_weights_dir``): ``$TOTALSEG_WEIGHTS_PATH``
if set, else ``$TOTALSEG_HOME_DIR/nnunet/results``, else ``~/.totalsegmentator/nnunet/results``.
The ``total`` task needs ``Dataset297_TotalSegmentator_total_3mm_1559subj`` (fast, 3 mm) or
``Dataset291…295`` (full resolution), and, when only some structures are asked for
(``roi_subset``), ``Dataset298_TotalSegmentator_total_6mm_1559subj`` for its cropping pass.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from vascalc.errors import DependencyError, InputError
from vascalc.imaging import LabelMap, Volume, load_labelmap, load_volume, save_volume_nifti

INSTALL_HINT = (
    "install it in a separate environment with: pip install 'vascalc[totalsegmentator]' (without -c constraints.txt), "
    "then fetch the weights once with: totalseg_download_weights -t total (the 'total' task needs no licence)"
)

#: Weight folders (nnU-Net datasets) of the ``total`` task by mode, and the 6 mm model that
#: TotalSegmentator runs first to crop when ``roi_subset`` is given.
WEIGHTS_FAST = ("Dataset297_TotalSegmentator_total_3mm_1559subj",)
WEIGHTS_FULL = tuple(
    f"Dataset29{i}_TotalSegmentator_part{i}_{part}"
    for i, part in zip(range(1, 6), ("organs_1559subj", "vertebrae_1532subj", "cardiac_1559subj", "muscles_1559subj", "ribs_1559subj"))
)
WEIGHTS_CROP = "Dataset298_TotalSegmentator_total_6mm_1559subj"


def totalsegmentator_weights_dir() -> Path:
    """The folder TotalSegmentator reads its nnU-Net weights from (module docstring)."""
    if "TOTALSEG_WEIGHTS_PATH" in os.environ:
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    if "TOTALSEG_HOME_DIR" in os.environ:
        home = Path(os.environ["TOTALSEG_HOME_DIR"])
    else:
        # TotalSegmentator maps a home of "/" (some containers) to /tmp
        home = (Path("/tmp") if str(Path.home()) == "/" else Path.home()) / ".totalsegmentator"
    return home / "nnunet" / "results"


def required_weights(fast: bool = True, roi_subset: bool = True) -> tuple[str, ...]:
    """The weight folders the ``total`` task needs for this mode."""
    needed = WEIGHTS_FAST if fast else WEIGHTS_FULL
    return needed + ((WEIGHTS_CROP,) if roi_subset else ())


def missing_weights(fast: bool = True, roi_subset: bool = True) -> list[str]:
    """Weight folders of :func:`required_weights` that are not under :func:`totalsegmentator_weights_dir`."""
    root = totalsegmentator_weights_dir()
    return [name for name in required_weights(fast, roi_subset) if not (root / name).is_dir()]


def totalsegmentator_installed() -> bool:
    """True when the ``totalsegmentator`` package can be imported (not imported here)."""
    return importlib.util.find_spec("totalsegmentator") is not None


def totalsegmentator_available(fast: bool = True) -> bool:
    """True when the package and the weights for ``fast`` mode with ``roi_subset`` are present."""
    return totalsegmentator_installed() and not missing_weights(fast, roi_subset=True)


def _check_ready(fast: bool, roi_subset: bool) -> None:
    if not totalsegmentator_installed():
        raise DependencyError(f"the TotalSegmentator segmenter needs the TotalSegmentator package, which is not installed; {INSTALL_HINT}")
    missing = missing_weights(fast, roi_subset)
    if missing:
        raise DependencyError(
            f"TotalSegmentator is installed but its weights are missing from {totalsegmentator_weights_dir()} "
            f"({', '.join(missing)}); vascalc does not download them: run totalseg_download_weights -t total "
            "(or set TOTALSEG_HOME_DIR / TOTALSEG_WEIGHTS_PATH to where they are)"
        )


def totalsegmentator_names() -> frozenset[str]:
    """Structure names of TotalSegmentator's ``total`` task (v2), the names ``roi_subset`` accepts."""
    from vascalc.anatomy.taxonomy import totalseg_total_v2

    return frozenset(totalseg_total_v2().values())


def read_totalsegmentator_output(path: str | Path, volume_or_grid) -> LabelMap:
    """TotalSegmentator's output — a folder of ``<name>.nii.gz`` masks or a multilabel file — as a
    :class:`LabelMap` on the CT's grid (thin wrapper of :func:`vascalc.imaging.load_labelmap`)."""
    grid = volume_or_grid.grid if isinstance(volume_or_grid, Volume) else volume_or_grid
    return load_labelmap(path, grid)


def run_totalsegmentator(
    volume_or_path: Volume | str | Path,
    structures: list[str] | tuple[str, ...],
    fast: bool = True,
    device: str = "cpu",
) -> LabelMap:
    """Segment ``structures`` with TotalSegmentator's ``total`` task; a :class:`LabelMap` on the CT grid.

    Only the asked-for structures are computed (``roi_subset``); those TotalSegmentator does not
    know (e.g. ``femoral_artery_left``) are skipped and named in ``load_notes``. ``fast`` uses
    the 3 mm model (TotalSegmentator's ``--fast``); ``device`` is ``'cpu'``, ``'gpu'`` or
    ``'gpu:N'``. Raises :class:`DependencyError` when the package or its weights are missing.
    """
    wanted = list(dict.fromkeys(structures))
    known = totalsegmentator_names()
    subset = [name for name in wanted if name in known]
    skipped = [name for name in wanted if name not in known]
    if not subset:
        raise InputError(f"none of {', '.join(wanted) or 'no structures'} is a TotalSegmentator 'total' structure")
    _check_ready(fast, roi_subset=True)
    from totalsegmentator.python_api import totalsegmentator  # noqa: PLC0415 (optional dependency)

    volume = volume_or_path if isinstance(volume_or_path, Volume) else load_volume(volume_or_path)
    with tempfile.TemporaryDirectory(prefix="vascalc_totalseg_") as work:
        ct_path = save_volume_nifti(volume, Path(work) / "ct.nii.gz")
        out_path = Path(work) / "segmentation.nii.gz"
        totalsegmentator(
            input=ct_path, output=out_path, ml=True, fast=fast, roi_subset=subset, device=device, quiet=True
        )
        labels = read_totalsegmentator_output(out_path, volume.grid)
    keep = [name for name in labels.names.values() if name in subset]
    result = labels.subset(keep)
    notes = result.load_notes + (f"TotalSegmentator 'total' task ({'fast, 3 mm' if fast else 'full resolution'}, {device})",)
    if skipped:
        notes += (f"not TotalSegmentator structures, not segmented: {', '.join(skipped)}",)
    return LabelMap(labels=result.labels, grid=result.grid, names=result.names,
                    uncertain_slices=result.uncertain_slices, load_notes=notes)


__all__ = [
    "INSTALL_HINT", "missing_weights", "read_totalsegmentator_output", "required_weights", "run_totalsegmentator",
    "totalsegmentator_available", "totalsegmentator_installed", "totalsegmentator_names", "totalsegmentator_weights_dir",
]
