"""Write a :class:`Volume` as a DICOM CT image series (pydicom), without any patient identifier.

Used to write the digital phantoms as DICOM so that the DICOM reading path is exercised end to end.
The series is deterministic: every UID is derived from ``uid_seed`` (pydicom's ``generate_uid`` with
entropy sources), so the same volume and seed give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from vascalc.errors import InputError, OutputError
from vascalc.imaging.volume import Volume

#: DICOM prefix-free deterministic UIDs: pydicom's root + a hash of the entropy sources.
_IMPLEMENTATION_VERSION = "VASCALC_PHANTOM"


def _uid(seed: str, *parts: str) -> str:
    return generate_uid(entropy_srcs=[seed, *parts])


def write_dicom_series(volume: Volume, out_dir: Path | str, *, uid_seed: str = "vascalc",
                       series_description: str = "vascalc phantom", window_center_hu: float = 40.0,
                       window_width_hu: float = 400.0) -> list[Path]:
    """Write ``volume`` as one CT series of single-frame files ``CT0001.dcm`` … into ``out_dir``.

    Pixel storage: HU in [−1024, 3071] are stored as 12-bit unsigned values with RescaleIntercept
    −1024 (as most scanners do); otherwise as signed 16-bit with intercept 0 (values must fit int16).
    Geometry comes from the grid: ImagePositionPatient per slice (LPS mm), ImageOrientationPatient
    from the direction, PixelSpacing = (dy, dx), SpacingBetweenSlices = dz, SliceThickness from
    ``volume.info.slice_thickness_mm`` (dz if unknown). Patient name, ID, birth date and sex are
    present but empty (type 2) and PatientIdentityRemoved = YES. Returns the written paths.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create DICOM folder {out}: {error.strerror or error}") from None
    hu = np.asarray(volume.hu)
    if not np.issubdtype(hu.dtype, np.integer):
        hu = np.rint(hu)
    lo, hi = float(hu.min()), float(hu.max())
    if lo >= -1024 and hi <= 3071:
        stored = (hu.astype(np.int32) + 1024).astype(np.uint16)
        intercept, pixel_rep, bits_stored = -1024.0, 0, 12
    elif lo >= -32768 and hi <= 32767:
        stored = hu.astype(np.int16)
        intercept, pixel_rep, bits_stored = 0.0, 1, 16
    else:
        raise InputError(f"HU range {lo}–{hi} does not fit 16-bit DICOM storage")
    grid, info = volume.grid, volume.info
    dz, dy, dx = grid.spacing_mm
    direction = grid.direction_matrix
    orientation = [float(v) for v in (*direction[:, 0], *direction[:, 1])]
    study_uid = _uid(uid_seed, "study")
    series_uid = _uid(uid_seed, "series")
    frame_uid = _uid(uid_seed, "frame")
    thickness = info.slice_thickness_mm if info.slice_thickness_mm else dz
    nz = grid.shape[0]
    paths = []
    for k in range(nz):
        sop_uid = _uid(uid_seed, "instance", str(k))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationVersionName = _IMPLEMENTATION_VERSION
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName = ""
        ds.PatientID = ""
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.PatientIdentityRemoved = "YES"
        ds.StudyDate = ""
        ds.StudyTime = ""
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = ""
        ds.Modality = "CT"
        ds.Manufacturer = info.manufacturer or "vascalc"
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        if info.kvp:
            ds.KVP = f"{info.kvp:g}"
        if info.contrast_agent:
            ds.ContrastBolusAgent = info.contrast_agent
        ds.PatientPosition = "HFS"
        position = grid.index_to_lps(np.array([k, 0, 0], float))
        ds.ImagePositionPatient = [f"{v:.6g}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in orientation]
        ds.SliceLocation = f"{position[2]:.6g}"
        ds.PixelSpacing = [f"{dy:.6g}", f"{dx:.6g}"]
        ds.SliceThickness = f"{thickness:.6g}"
        ds.SpacingBetweenSlices = f"{dz:.6g}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(grid.shape[1]), int(grid.shape[2])
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = pixel_rep
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = f"{window_center_hu:g}"
        ds.WindowWidth = f"{window_width_hu:g}"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = out / f"CT{k + 1:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
