"""``load_volume``: one entry point for every CT input (DICOM folder or file, NIfTI, NRRD, MHA/MHD),
and the NIfTI writers used for outputs on the CT grid."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from vascalc.errors import InputError
from vascalc.imaging.dicom import AIR_HU, hu_array, load_dicom_series
from vascalc.imaging.geometry import axial_first_order, permute_axes
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

    Raises :class:`~vascalc.errors.InputError` (missing, unreadable, not CT, values not HU: see
    :func:`checked_hu`) or
    :class:`~vascalc.errors.GeometryError` (zero spacing, tilt, gaps, mixed orientations).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    suffix = image_suffix(path) if path.is_file() else None
    if suffix is None:
        volume = load_dicom_series(
            path, series_uid=series_uid, resample_tilt=resample_tilt, resample_uneven=resample_uneven
        )
        hu, value_notes = checked_hu(volume.hu, path.name)
        if value_notes:
            volume = replace(volume, hu=hu, info=replace(volume.info, load_notes=volume.info.load_notes + value_notes))
        return volume
    if series_uid is not None:
        raise InputError(f"{path.name}: series_uid only applies to DICOM input")
    values, grid, notes = read_image(path)
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise InputError(f"{path.name}: voxel type {values.dtype} is not a number; a CT volume in HU is needed")
    if values.dtype.itemsize == 1:
        # 8 bits hold 256 values, a CT spans −1024 … 3071 HU: this is a windowed export or a mask
        raise InputError(f"{path.name}: 8-bit voxels ({values.dtype}) cannot hold HU; give the CT itself "
                         "(12/16-bit or float), not a windowed export or a mask")
    hu, value_notes = checked_hu(hu_array(values), path.name)
    info = ScanInfo(
        source_format=_FORMAT_NAMES[suffix],
        slice_increment_mm=float(grid.spacing_mm[0]),
        n_slices=int(grid.shape[0]),
        load_notes=tuple(notes) + value_notes
        + ("no acquisition metadata in this format: kVp, kernel and slice thickness unknown",),
    )
    return Volume(hu=hu, grid=grid, info=info)


#: Bounds (HU) no CT scale reaches, extended metal scales included (≈ −3024 … 31743 after rescale).
HU_LOWEST_PLAUSIBLE = -10_000.0
HU_HIGHEST_PLAUSIBLE = 100_000.0
#: share of voxels at 850…1250 above which a volume with no negative value reads as a lost intercept
LOST_INTERCEPT_TISSUE_FRACTION = 0.10


def checked_hu(hu: np.ndarray, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Refuse values that cannot be HU; set NaN/±inf and padding voxels to air (−1024 HU), with a note.

    A body CT always holds air (−1000 HU) or at least fat (≈ −100 HU); a volume with no negative value
    whose voxels lie at 850…1250 in bulk (≥ ``LOST_INTERCEPT_TISSUE_FRACTION`` of them) is almost surely
    stored pixel values whose rescale intercept (usually −1024) was lost in a conversion: scoring it
    would call all soft tissue calcium. Values above
    ``HU_HIGHEST_PLAUSIBLE`` are on no CT scale; values below ``HU_LOWEST_PLAUSIBLE`` are padding.
    Raises :class:`~vascalc.errors.InputError`; returns ``(hu, notes)``.
    """
    notes: tuple[str, ...] = ()
    if hu.size == 0:
        raise InputError(f"{what}: the image holds no voxels")
    if hu.dtype.kind == "f":
        bad = ~np.isfinite(hu)
        n_bad = int(bad.sum())
        if n_bad == hu.size:
            raise InputError(f"{what}: every voxel is NaN or infinite; the file holds no image values")
        if n_bad:
            # NaN is how resampling tools mark voxels outside the scanned field: that is air
            hu = np.where(bad, np.float32(AIR_HU), hu).astype(np.float32)
            notes = (f"{n_bad} voxels were NaN or infinite (outside the scanned field?) and were set to "
                     f"{AIR_HU} HU (air)",)
    lo, hi = float(hu.min()), float(hu.max())
    if lo < HU_LOWEST_PLAUSIBLE:
        # padding outside the reconstruction circle (−32768 in some exports) is air, not a scale error
        padding = hu < HU_LOWEST_PLAUSIBLE
        hu = np.where(padding, np.asarray(AIR_HU, dtype=hu.dtype), hu)
        notes += (f"{int(padding.sum())} voxels below {HU_LOWEST_PLAUSIBLE:.0f} HU (padding, lowest {lo:.6g}) "
                  f"were set to {AIR_HU} HU (air)",)
        lo = float(hu.min())
    if hi > HU_HIGHEST_PLAUSIBLE:
        raise InputError(
            f"{what}: values reach {hi:.6g}, beyond any CT scale in HU; "
            "give the CT in Hounsfield units (check the file's scaling)")
    # a noise-free phantom (water at exactly 0 HU, dense inserts) also has no negative value, but
    # only a lost intercept puts the bulk of the body (soft tissue 0…150 HU → 1024…1174) near 1000
    if lo >= 0 and hi >= 1000 and np.mean((hu >= 850) & (hu <= 1250)) >= LOST_INTERCEPT_TISSUE_FRACTION:
        raise InputError(
            f"{what}: no voxel is below 0 HU (values {lo:.0f} … {hi:.0f}) although air reads −1000 HU and fat "
            "−100 HU: these look like stored pixel values whose rescale intercept (usually −1024) was lost; "
            "convert the series again keeping RescaleIntercept / scl_inter")
    return hu, notes


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


def axial_slices_first(volume: Volume) -> Volume:
    """``volume`` with its axial (head–feet) axis as array axis 0, exactly (axes permuted, no
    interpolation); unchanged when it already is. The permutation is recorded in the load notes.

    A CT written with coronal or sagittal slices first holds the same voxels, but slice-wise scores
    (Agatston) must be taken on axial slices (SCORING.md A.3).
    """
    order = axial_first_order(volume.grid)
    if order == (0, 1, 2):
        return volume
    hu, grid = permute_axes(volume.hu, volume.grid, order)
    note = (f"the image's slices were not axial (array axes stored as {volume.grid.axis_codes()}); axes reordered "
            f"to {grid.axis_codes()} without interpolation so that slices are axial; output maps use that order")
    # the stored slice thickness belonged to the other plane; along the new axis it is unknown
    info = replace(volume.info, slice_increment_mm=float(grid.spacing_mm[0]), n_slices=int(grid.shape[0]),
                   slice_thickness_mm=None, load_notes=volume.info.load_notes + (note,))
    return Volume(hu=hu, grid=grid, info=info)
