"""Images in and out: the :class:`Volume`, :class:`LabelMap` and :class:`Grid` types and their readers.

``load_volume`` reads a CT (DICOM series, NIfTI, NRRD, MHA/MHD); ``load_labelmap`` brings vessel
and landmark masks onto its grid; ``save_volume_nifti`` / ``save_labels_nifti`` write on a grid.
"""

from vascalc.imaging.grid import Grid
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import ScanInfo, Volume

from vascalc.imaging.load import load_volume, save_labels_nifti, save_volume_nifti  # noqa: E402
from vascalc.imaging.masks import load_labelmap  # noqa: E402

__all__ = [
    "Grid",
    "LabelMap",
    "ScanInfo",
    "Volume",
    "load_labelmap",
    "load_volume",
    "save_labels_nifti",
    "save_volume_nifti",
]
