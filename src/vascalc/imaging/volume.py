"""The CT volume type shared by every stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vascalc.imaging.grid import Grid


@dataclass(frozen=True)
class ScanInfo:
    """Acquisition facts that change how calcium is scored. Never holds patient identifiers.

    ``slice_thickness_mm`` is the reconstructed thickness (DICOM SliceThickness);
    ``slice_increment_mm`` is the distance between consecutive slice centres (from positions).
    ``contrast_agent`` is the DICOM ContrastBolusAgent text when tagged (None when untagged).
    ``load_notes`` are human-readable notes from the reader (which series was taken among several,
    where the spacing came from, resampling done); they never contain patient identifiers.
    """

    source_format: str = "unknown"
    modality: str | None = None
    kvp: float | None = None
    slice_thickness_mm: float | None = None
    slice_increment_mm: float | None = None
    contrast_agent: str | None = None
    manufacturer: str | None = None
    manufacturer_model: str | None = None
    convolution_kernel: str | None = None
    series_uid: str | None = None
    series_description: str | None = None
    n_slices: int | None = None
    load_notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Volume:
    """A CT volume: HU array ``(z, y, x)`` on a :class:`Grid`, with scan information.

    ``hu`` is int16 where the data are integral HU (the usual case), float32 otherwise.
    """

    hu: np.ndarray
    grid: Grid
    info: ScanInfo = ScanInfo()

    def __post_init__(self) -> None:
        if tuple(self.hu.shape) != tuple(self.grid.shape):
            raise ValueError(f"array shape {self.hu.shape} does not match grid shape {self.grid.shape}")

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.grid.spacing_mm

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.grid.shape
