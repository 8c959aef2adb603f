"""``load_volume``: one entry point for every CT input (DICOM folder or file, NIfTI, NRRD, MHA/MHD),
and the NIfTI writers used for outputs on the CT grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vascalc.errors import InputError
from vascalc.imaging.dicom import hu_array, load_dicom_series
from vascalc.imaging.grid import Grid
from vascalc.imaging.image_files import image_suffix, read_image, write_nifti
from vascalc.imaging.volume import ScanInfo, Volume

_FORMAT_NAMES = {
    ".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage", ".mhd": "metaimage"
}


def load_volume(
    path: str | Path,
    *,
    series_uid: str | None = None,
    resample_tilt: bool = False,
    resample_uneven: bool = False,
) -> Volume:
    """Load a CT volume in HU with its LPS grid and scan information.

    ``path`` is a folder of DICOM files (searched with its subfolders), one DICOM file (its series
    is taken from the same folder), or a ``.nii``/``.nii.gz``/``.nrrd``/``.nhdr``/``.mha``/``.mhd``
    file. DICOM may be single-frame slices in any transfer syntax GDCM or pydicom decodes, with
    or without the 128-byte preamble, or enhanced multi-frame CT; localizers, SR/RT/presentation
    objects and DICOMDIR files are skipped (see ``info.load_notes``).
    For DICOM, ``series_uid`` picks a series (default: the CT series with most slices),
    ``resample_tilt`` / ``resample_uneven`` allow resampling a gantry-tilted / unevenly spaced
    series instead of refusing it. Image files are taken to hold HU already (after any NIfTI
    ``scl_slope``/``scl_inter``). HU are int16 when integral and within range, else float32.

    Raises :class:`~vascalc.errors.InputError` (missing, unreadable, not CT) or
    :class:`~vascalc.errors.GeometryError` (zero spacing, tilt, gaps, mixed orientations).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = image_suffix(path) if path.is_file() else None
    if suffix is None:
        return load_dicom_series(
            path, series_uid=series_uid, resample_tilt=resample_tilt, resample_uneven=resample_uneven
        )
    if series_uid is not None:
        raise InputError(f"{path.name}: series_uid only applies to DICOM input")
    values, grid, notes = read_image(path)
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise InputError(f"{path.name}: voxel type {values.dtype} is not a number; a CT volume in HU is needed")
    hu = hu_array(values)
    info = ScanInfo(
        source_format=_FORMAT_NAMES[suffix],
        slice_increment_mm=float(grid.spacing_mm[0]),
        n_slices=int(grid.shape[0]),
        load_notes=tuple(notes) + ("no acquisition metadata in this format: kVp, kernel and slice thickness unknown",),
    )
    return Volume(hu=hu, grid=grid, info=info)


def save_volume_nifti(volume: Volume, path: str | Path) -> Path:
    """Write a :class:`Volume`'s HU (int16 or float32 as held) to NIfTI-1 on the same grid.

    The RAS affine is :meth:`Grid.affine_ras`, set as both sform and qform (code 1, scanner).
    """
    return write_nifti(volume.hu, volume.grid, Path(path))


def save_labels_nifti(array: np.ndarray, grid: Grid, path: str | Path) -> Path:
    """Write an integer label / mask array ``(z, y, x)`` on ``grid`` to NIfTI-1.

    Booleans are stored as uint8; other integers in the smallest unsigned type that holds them
    (uint8, uint16, else int32 when negative). The affine is set as in :func:`save_volume_nifti`.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"labels must be integers or booleans, got {array.dtype}")
    if array.size and array.min() >= 0:
        top = int(array.max())
        array = array.astype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32)
    else:
        array = array.astype(np.int32)
    return write_nifti(array, grid, Path(path))
