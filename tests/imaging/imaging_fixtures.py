"""Write small synthetic CT DICOM series with pydicom, with full control of the geometry tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PATIENT_NAME = "Doe^Jane^Secret"
PATIENT_ID = "PID-98765-XYZ"


def write_series(
    folder: Path,
    stored: np.ndarray,
    *,
    positions: np.ndarray | None = None,
    spacing_mm: tuple[float, float, float] = (2.0, 0.5, 0.5),
    origin: tuple[float, float, float] = (-2.0, -2.0, 10.0),
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    series_uid: str | None = None,
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
    names: list[str] | None = None,
    extra: dict | None = None,
    per_slice: dict[int, dict] | None = None,
) -> list[Path]:
    """Write ``stored`` (n, rows, cols, uint16 or int16 stored values) as one series.

    ``positions`` (n, 3) overrides the ImagePositionPatient of each slice (default: ``origin``
    stepped by ``spacing_mm[0]`` along the slice normal). ``names`` gives the file names in slice
    order (default ``s{k:03d}.dcm``); ``per_slice[k]`` overrides tags of slice ``k``.
    Returns the written paths in slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = stored.shape[0]
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    if positions is None:
        positions = np.asarray(origin, float) + np.arange(n)[:, None] * spacing_mm[0] * normal
    series_uid = series_uid if series_uid is not None else generate_uid()
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = "19420101"
        ds.AccessionNumber = "ACC-555-SECRET"
        ds.StudyDate = "20240102"
        ds.Modality = modality
        ds.Manufacturer = "ACME"
        ds.ManufacturerModelName = "Scan9000"
        ds.KVP = "120"
        ds.SliceThickness = str(spacing_mm[0])
        ds.ConvolutionKernel = ["B30f", "2"]
        ds.SeriesDescription = "synthetic"
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
        ds.PixelSpacing = [str(spacing_mm[1]), str(spacing_mm[2])]
        ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        for key, value in ((per_slice or {}).get(k, {})).items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = folder / (names[k] if names else f"s{k:03d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
