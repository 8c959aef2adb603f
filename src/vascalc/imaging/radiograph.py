"""Lateral radiographs and DXA VFA images: one 2-D image with its pixel spacing, from DICOM or PNG/JPEG/TIFF.

The loaded image is *display-normalised*: float32 in [0, 1] with bone and calcium bright (as read on
a film), whatever the file's photometric interpretation. DICOM: the Modality LUT (Rescale
Slope/Intercept or a LUT sequence) and then the VOI LUT (window or LUT sequence) are applied with
pydicom's own ``apply_modality_lut`` / ``apply_voi_lut``; MONOCHROME1 (white = low value) is
inverted. Pixel spacing is read from PixelSpacing, else ImagerPixelSpacing (projection radiographs
often carry only the latter: the detector pitch, with geometric magnification uncorrected — noted).
PNG/JPEG/TIFF have no trustworthy spacing: the caller gives it or it stays ``None`` (scores are
ratios and need no mm; mm outputs are then reported in pixels).

No patient identifier is kept: ``source`` holds only the file kind, modality, photometric
interpretation, bit depth and the spacing source.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from vascalc.errors import InputError

#: Modalities accepted as a projection radiograph (DX digital radiography, CR computed radiography,
#: SC secondary capture, e.g. a DXA VFA export; OT "other" is common for VFA exports too).
RADIOGRAPH_MODALITIES = ("DX", "CR", "SC", "OT", "RG", "PX")
BITMAP_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True, eq=False)
class Radiograph:
    """One lateral projection image.

    ``image``: float32 (rows, cols) in [0, 1], bone bright. ``pixel_spacing_mm``: (row, col) mm or
    ``None`` when unknown. ``facing``: ``"left"`` (anterior at low column index, i.e. the patient
    faces the image's left), ``"right"``, or ``"unknown"`` until a localiser decides it.
    ``source``: identifier-free description of the file (kind, modality, photometric, bits).
    """

    image: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    facing: str = "unknown"
    source: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.image.shape[0]), int(self.image.shape[1]))

    def with_facing(self, facing: str) -> "Radiograph":
        if facing not in ("left", "right", "unknown"):
            raise InputError(f"facing must be 'left', 'right' or 'unknown', got {facing!r}")
        return replace(self, facing=facing)


def normalise_display(values: np.ndarray, *, invert: bool = False) -> np.ndarray:
    """Scale an array linearly to [0, 1] between its minimum and maximum (``invert``: 1 − that)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    out = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return (1.0 - out if invert else out).astype(np.float32)


def _check_spacing(spacing: float | tuple[float, float] | None) -> tuple[float, float] | None:
    if spacing is None:
        return None
    pair = (float(spacing), float(spacing)) if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(pair) != 2 or not all(np.isfinite(s) and s > 0 for s in pair):
        raise InputError(f"pixel spacing must be one or two positive numbers in mm, got {spacing!r}")
    return pair  # type: ignore[return-value]


def radiograph_from_array(image: np.ndarray, pixel_spacing_mm: float | tuple[float, float] | None = None, *,
                          facing: str = "unknown", source: dict | None = None) -> Radiograph:
    """Wrap a 2-D array (bone bright) as a :class:`Radiograph`; refuses 3-D or degenerate arrays."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(axis=-1)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise InputError(f"a radiograph is one 2-D image; this input has shape {tuple(np.shape(image))} "
                         "(a CT volume is scored with 'vascalc ct score')")
    if min(arr.shape) < 16:
        raise InputError(f"image of {arr.shape[0]}×{arr.shape[1]} pixels is too small to be a radiograph")
    if not np.isfinite(arr).all():
        raise InputError("the image contains NaN or infinite values")
    spacing = _check_spacing(pixel_spacing_mm)
    if arr.min() == arr.max():
        raise InputError(f"the image is blank (every pixel is {arr.flat[0]}); give the lateral radiograph itself")
    return Radiograph(normalise_display(arr), spacing, facing, dict(source or {}))


def load_radiograph(path: str | Path, *, pixel_spacing_mm: float | tuple[float, float] | None = None) -> Radiograph:
    """Read a lateral radiograph / VFA image (DICOM DX/CR/SC or PNG/JPEG/TIFF, 8 or 16 bit).

    ``pixel_spacing_mm`` overrides the file's spacing (and is the only spacing of a bitmap).
    Raises :class:`InputError` for a missing or unreadable file, a 3-D / multi-frame image, or a
    DICOM of a cross-sectional modality (CT, MR …).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"radiograph not found: {p}")
    if p.is_dir():
        raise InputError(f"{p.name} is a folder; give one radiograph file "
                         "(a CT series is scored with 'vascalc ct score')")
    if p.suffix.lower() in BITMAP_SUFFIXES:
        return _load_bitmap(p, pixel_spacing_mm)
    if p.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")):
        raise InputError(f"{p.name} is a 3-D image file, not a radiograph; a CT is scored with 'vascalc ct score'")
    return _load_dicom(p, pixel_spacing_mm)


def _load_bitmap(path: Path, spacing: float | tuple[float, float] | None) -> Radiograph:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            n_frames = getattr(im, "n_frames", 1)
            if n_frames > 1:
                raise InputError(f"{path.name}: a multi-page image ({n_frames} frames); give one 2-D radiograph")
            mode = im.mode
            arr = np.asarray(im.convert("RGB") if mode in ("P", "PA", "CMYK", "YCbCr", "LA", "RGBA") else im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path.name}: not a readable PNG/JPEG/TIFF image ({exc})") from None
    notes = () if spacing is not None else ("pixel spacing unknown (bitmap file): lengths are reported in pixels",)
    rg = radiograph_from_array(arr, spacing, source={"kind": path.suffix.lower().lstrip("."), "mode": mode,
                                                      "bits": 16 if arr.dtype.itemsize >= 2 else 8,
                                                      "spacing_source": "user" if spacing is not None else "unknown"})
    return replace(rg, notes=notes)


def _load_dicom(path: Path, spacing: float | tuple[float, float] | None) -> Radiograph:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as exc:
        raise InputError(f"{path.name}: not a readable DICOM or PNG/JPEG/TIFF file ({exc})") from None
    modality = str(ds.get("Modality", "") or "").upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        raise InputError(f"{path.name}: DICOM modality {modality} is not a projection radiograph "
                         f"(expected one of {', '.join(RADIOGRAPH_MODALITIES)}); CT is scored with 'vascalc ct score'")
    if "PixelData" not in ds:
        raise InputError(f"{path.name}: the DICOM file holds no image")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"{path.name}: a multi-frame DICOM ({ds.NumberOfFrames} frames); give one 2-D radiograph")
    try:
        raw = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for bad pixel data / missing decoders
        raise InputError(f"{path.name}: the DICOM pixel data cannot be decoded ({exc})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if raw.ndim != 2:
        if raw.ndim == 3 and photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
            raw = raw.mean(axis=-1)
        else:
            raise InputError(f"{path.name}: a radiograph is one 2-D image; this DICOM has shape {raw.shape}")
    values = apply_modality_lut(raw, ds)
    voi = "none"
    if "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds):
        # A LUT is indexed by stored (integer) values; integral rescaled values go back to int so
        # that pydicom looks them up exactly.
        if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
            values = values.astype(np.int64)
        values = apply_voi_lut(values, ds, index=0)
        voi = "lut" if "VOILUTSequence" in ds else "window"
    notes: list[str] = []
    source_spacing = "user" if spacing is not None else "unknown"
    if spacing is None:
        for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
            value = ds.get(keyword)
            if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
                spacing = (float(value[0]), float(value[1]))
                source_spacing = keyword
                break
        if source_spacing == "ImagerPixelSpacing":
            notes.append("pixel spacing from ImagerPixelSpacing (detector plane, magnification not corrected)")
        elif source_spacing == "unknown":
            notes.append("pixel spacing unknown (no PixelSpacing in the DICOM): lengths are reported in pixels")
    source = {"kind": "dicom", "modality": modality or "unknown", "photometric": photometric,
              "bits_stored": int(ds.get("BitsStored", 0) or 0), "voi_lut": voi, "spacing_source": source_spacing}
    # MONOCHROME1: the lowest value is displayed white, so invert to keep bone bright.
    rg = radiograph_from_array(values, spacing, source=source)
    if photometric == "MONOCHROME1":
        rg = replace(rg, image=(1.0 - rg.image).astype(np.float32))
    return replace(rg, notes=tuple(notes))
