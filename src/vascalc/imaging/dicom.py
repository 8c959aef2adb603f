"""DICOM CT series: find, group, check and stack into a :class:`Volume`.

Headers are read with pydicom (``stop_before_pixels``); the slice order and the grid come from
ImagePositionPatient projected on the slice normal (the cross product of the two
ImageOrientationPatient vectors, PS3.3 C.7.6.2.1.1), never from InstanceNumber or file names.
Pixels are decoded by SimpleITK/GDCM on the ordered file list (native JPEG 2000, JPEG-LS, RLE …),
falling back to pydicom (+ pylibjpeg) per file when GDCM cannot decode a transfer syntax.
pydicom alone decodes what GDCM gets wrong or cannot open: MONOCHROME1 slices (GDCM inverts them;
HU come from the rescale alone), files without the 128-byte preamble, and enhanced multi-frame CT,
whose frames are split into slices using the per-frame / shared functional groups (PS3.3 C.7.6.16);
GDCM decodes an enhanced file only when pydicom lacks the decoder and all its frames share one rescale.
Localizer (scout) images, non-image objects (SR, RTSTRUCT, presentation states) and non-DICOM
files in the folder are skipped and counted in the load notes.

Nothing identifying the patient (name, ID, birth date, accession number, dates, file paths) is
copied into the result: only the acquisition facts listed in :class:`ScanInfo`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_rescale, get_decoder
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from scipy import ndimage

from vascalc.errors import GeometryError, InputError
from vascalc.imaging.grid import Grid
from vascalc.imaging.volume import ScanInfo, Volume

#: Two orientation vectors equal within this (direction cosines) count as one orientation.
ORIENTATION_TOLERANCE = 1e-4
#: Slices closer than this along the normal (mm) sit at the same position.
DUPLICATE_TOLERANCE_MM = 1e-3
#: An increment may differ from the median by this much (mm, plus 1 %) before spacing is uneven.
SPACING_TOLERANCE_MM = 0.01
#: Sideways drift of the stack, as a fraction of a pixel over its whole length, ignored as rounding.
SHEAR_TOLERANCE_PIXELS = 0.05
#: Value given to voxels that a resampled grid adds outside the scanned field (air).
AIR_HU = -1024

_NAMED_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
_SKIPPED_NAMES = {"dicomdir"}
#: ImageType values that mark a scout / localizer / topogram rather than a tomographic slice.
_LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVEY"}


@dataclass(frozen=True, eq=False)
class _Slice:
    """Header facts of one image file; no identifiers."""

    path: Path
    dataset: pydicom.Dataset
    series_key: str
    modality: str
    orientation: np.ndarray | None  # (6,) row then column direction cosines
    position: np.ndarray | None  # (3,) LPS mm of the first transmitted pixel
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None  # (between rows = dy, between columns = dx)
    frames: int
    frame: int | None = None  # index of this slice in a multi-frame (enhanced) file


@dataclass(frozen=True, eq=False)
class _Series:
    key: str
    slices: tuple[_Slice, ...]

    @property
    def modality(self) -> str:
        return Counter(s.modality for s in self.slices).most_common(1)[0][0]

    @property
    def label(self) -> str:
        if self.key and self.key == str(self.slices[0].dataset.get("SeriesInstanceUID", "")).strip():
            return self.key
        number = str(self.slices[0].dataset.get("SeriesNumber", "") or "").strip()
        return "(no SeriesInstanceUID" + (f", series number {number})" if number else ")")

    def summary(self) -> str:
        description = str(self.slices[0].dataset.get("SeriesDescription", "") or "").strip()
        text = f"{self.label} ({len(self.slices)} slices, {self.modality}"
        return text + (f", '{description}')" if description else ")")


def find_dicom_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (subfolders included), sorted, hidden files skipped."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and name.lower() not in _SKIPPED_NAMES:
                found.append(Path(root) / name)
    return found


def _read_header(path: Path) -> pydicom.Dataset | None:
    """Header of a DICOM file, ``None`` for a non-DICOM file; :class:`InputError` when corrupt.

    Files written without the 128-byte preamble and ``DICM`` prefix (old PACS exports, some
    anonymisers) are read too when they start with a group 0002 or 0008 element, as PS3.10
    allows readers to do; their ``preamble`` is ``None``.
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, defer_size="4 KB")
    except InvalidDicomError:
        ds = _read_preambleless(path)
        if ds is not None:
            return ds
        if path.suffix.lower() in _NAMED_DICOM_SUFFIXES:
            raise InputError(
                f"{path.name}: named like a DICOM file but is not one (no DICM header); remove it"
            ) from None
        return None
    except Exception as exc:  # pydicom raises many types on damaged files; all mean "corrupt"
        raise InputError(f"{path.name}: DICOM file is corrupt or truncated ({type(exc).__name__}: {exc})") from exc


def _read_preambleless(path: Path) -> pydicom.Dataset | None:
    """A DICOM data set without preamble, or ``None`` when the file does not start like one."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    # the first tag, little endian: group 0002 (file meta) or 0008 (identification), element < 0x0100
    if len(head) < 8 or head[0] not in (0x02, 0x08) or head[1] != 0 or head[3] != 0:
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, defer_size="4 KB", force=True)
    except Exception:  # four bytes are weak evidence: a file that does not parse is not DICOM
        return None
    if "SOPClassUID" not in ds and "Modality" not in ds:
        return None
    return ds


def _slice_from_header(path: Path, ds: pydicom.Dataset) -> _Slice:
    series_uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if series_uid:
        key = series_uid
    else:
        # Anonymisers sometimes blank every UID (the TotalSegmentator sample does): fall back to
        # what a series shares. Orientation is left out on purpose so mixed orientations are caught.
        key = ""
        fallback = [ds.get("FrameOfReferenceUID", ""), ds.get("SeriesNumber", ""), ds.get("SeriesDescription", "")]
        if any(str(v or "").strip() for v in fallback[1:]):
            key = "|".join(str(v or "") for v in fallback)
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    return _Slice(
        path=path,
        dataset=ds,
        series_key=key,
        modality=str(ds.get("Modality", "") or "").strip().upper() or "unknown",
        orientation=orientation,
        position=position,
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing is not None else None,
        frames=int(ds.get("NumberOfFrames", 1) or 1),
    )


def _floats(value, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.all(np.isfinite(out)) else None


def _collect_series(files: list[Path]) -> tuple[dict[str, _Series], list[str]]:
    notes: list[str] = []
    groups: dict[str, list[_Slice]] = {}
    not_dicom = non_image = localizer = preambleless = enhanced_files = 0
    for path in files:
        ds = _read_header(path)
        if ds is None:
            not_dicom += 1
            continue
        if _is_known_non_image(ds):
            non_image += 1  # an SR / RT structure set may copy the image's Rows and position tags
            continue
        if "Rows" not in ds or "Columns" not in ds:
            if _is_image_storage(ds):
                raise InputError(
                    f"{path.name}: DICOM image file without image size tags; the file is truncated or corrupt"
                )
            non_image += 1  # SR, SEG, RT structures, presentation states …
            continue
        preambleless += getattr(ds, "preamble", b"") is None
        frames = _enhanced_frames(ds)
        enhanced_files += frames is not None
        for frame, frame_ds in enumerate(frames or [ds]):
            image_type = {str(v).strip().upper() for v in (frame_ds.get("ImageType") or [])}
            if image_type & _LOCALIZER_TYPES:
                # scouts share the SeriesInstanceUID of the axial slices on many scanners, but lie
                # in another plane: stacking them would break the geometry
                localizer += 1
                continue
            item = _slice_from_header(path, frame_ds)
            groups.setdefault(item.series_key, []).append(replace(item, frame=frame) if frames else item)
    skipped = {"non-DICOM files": not_dicom, "non-image DICOM objects": non_image, "localizer images": localizer}
    notes += [f"{count} {what} ignored" for what, count in skipped.items() if count]
    if enhanced_files:
        notes.append(f"{enhanced_files} multi-frame (enhanced) files read frame by frame")
    if preambleless:
        notes.append(f"{preambleless} DICOM files without the 128-byte preamble read as DICOM")
    if not groups and localizer:
        raise InputError(
            f"only localizer (scout) images found ({localizer}), no tomographic CT slices; "
            "point to the folder of the axial series"
        )
    return {key: _Series(key, tuple(items)) for key, items in groups.items()}, notes


def _enhanced_frames(ds: pydicom.Dataset) -> list[pydicom.Dataset] | None:
    """One flat header per frame of an enhanced multi-frame image (PS3.3 C.7.6.16), else ``None``.

    Each frame's position, orientation, pixel measures, rescale and frame type are taken from
    its Per-Frame Functional Groups item, else from the Shared Functional Groups, and written as
    the classic single-frame tags, so that frames go through the same checks as single files.
    ``None`` (the file stays one multi-frame slice, refused if chosen) for single-frame files
    and when the per-frame items do not match NumberOfFrames.
    """
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    n_frames = _optional_float(ds.get("NumberOfFrames")) or 1
    if n_frames <= 1 or len(per_frame) != n_frames:
        return None
    shared = (ds.get("SharedFunctionalGroupsSequence") or [pydicom.Dataset()])[0]
    top = pydicom.Dataset()
    for element in ds:
        if element.keyword not in _MULTI_FRAME_KEYWORDS:
            top.add(element)
    frames = []
    for item in per_frame:
        frame = pydicom.Dataset()
        for element in top:  # shared elements; setattr below replaces, never mutates, them
            frame.add(element)
        if getattr(ds, "file_meta", None) is not None:
            frame.file_meta = ds.file_meta
        frame.preamble = getattr(ds, "preamble", None)
        for sequence, keywords in _FRAME_GROUPS.items():
            group = item.get(sequence) or shared.get(sequence)
            if group:
                for keyword in keywords:
                    if keyword in group[0]:
                        setattr(frame, "ImageType" if keyword == "FrameType" else keyword, group[0][keyword].value)
        frames.append(frame)
    return frames


_MULTI_FRAME_KEYWORDS = {"PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "NumberOfFrames"}
#: Functional group sequences and the single-frame tags they carry, for :func:`_enhanced_frames`.
_FRAME_GROUPS = {
    "PlanePositionSequence": ("ImagePositionPatient",),
    "PlaneOrientationSequence": ("ImageOrientationPatient",),
    "PixelMeasuresSequence": ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "CTImageFrameTypeSequence": ("FrameType",),
}


def _is_image_storage(ds: pydicom.Dataset) -> bool:
    """True when the file meta declares an image storage SOP class (CT Image Storage …)."""
    sop_class = ds.get("file_meta", pydicom.Dataset()).get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    return bool(sop_class) and "Image Storage" in getattr(sop_class, "name", "")


#: Words in the names of standard SOP classes that never hold pixels (reports, structures, states).
_PIXEL_LESS_CLASS_WORDS = ("SR Storage", "Structure Set", "Presentation State", "Encapsulated", "Key Object",
                           "Registration", "RT Plan", "Waveform")


def _is_known_non_image(ds: pydicom.Dataset) -> bool:
    """True for a standard SOP class that holds no pixels (SR, RTSTRUCT, presentation state, PDF …).

    Such objects may copy Rows and the position tags of the image they describe and would then be
    stacked as a slice. Pixel-bearing non-CT objects (SEG, RT dose) stay series of their own, so that
    the user is told what the folder holds; private or missing classes are judged by their tags."""
    sop_class = ds.get("file_meta", pydicom.Dataset()).get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    name = str(getattr(sop_class, "name", "") or "") if sop_class else ""
    return any(word in name for word in _PIXEL_LESS_CLASS_WORDS)


def _drop_repeated_instances(series: _Series) -> tuple[_Series, list[str]]:
    """Keep one file per SOPInstanceUID (and frame): the same image copied twice into a folder.

    Only identical instance UIDs are merged; different images at one position are left for the
    duplicate-position check to refuse. Files with a blank UID (some anonymisers) are all kept.
    """
    seen: set[tuple[str, int | None]] = set()
    kept = []
    for item in series.slices:
        uid = str(item.dataset.get("SOPInstanceUID", "") or "").strip()
        key = (uid, item.frame)
        if uid and key in seen:
            continue
        seen.add(key)
        kept.append(item)
    dropped = len(series.slices) - len(kept)
    if not dropped:
        return series, []
    note = f"{dropped} repeated copies of the same image (same SOPInstanceUID) ignored"
    return _Series(series.key, tuple(kept)), [note]


def _choose_series(series: dict[str, _Series], series_uid: str | None, where: str) -> tuple[_Series, list[str]]:
    """The asked-for series, else the CT series with most slices (ties: lowest key, for determinism)."""
    if not series:
        raise InputError(f"{where}: no DICOM images found; point to a folder of DICOM files or an image file")
    ranked = sorted(series.values(), key=lambda s: (-len(s.slices), s.key))
    listing = "; ".join(s.summary() for s in ranked)
    if series_uid is not None:
        if series_uid not in series:
            raise InputError(f"{where}: no series with UID {series_uid}; found: {listing}")
        chosen = series[series_uid]
    else:
        ct = [s for s in ranked if s.modality == "CT"]
        if not ct:
            raise InputError(f"{where}: no CT series (vascalc measures CT in HU only); found: {listing}")
        chosen = ct[0]
    if chosen.modality != "CT":
        raise InputError(
            f"{where}: series {chosen.label} is {chosen.modality}, not CT; vascalc measures CT in HU only"
        )
    notes = []
    if len(series) > 1:
        others = "; ".join(s.summary() for s in ranked if s is not chosen)
        how = "as asked" if series_uid is not None else "the CT series with most slices"
        notes.append(f"{len(series)} series found; took {chosen.summary()}, {how}; others: {others}")
    return chosen, notes


def _check_pixel_format(series: _Series) -> list[str]:
    """Refuse what cannot hold HU (colour, multi-frame); note MONOCHROME1, whose HU are not inverted."""
    label = series.label
    for item in series.slices:
        if item.frames > 1:
            raise InputError(
                f"series {label} is multi-frame DICOM ({item.frames} frames in one file) without per-frame "
                "positions (functional groups); convert it to single-frame slices or NIfTI (e.g. with dcm2niix) first"
            )
        ds = item.dataset
        rescale_type = str(ds.get("RescaleType", "HU") or "HU").strip().upper()
        if item.frame is not None and rescale_type != "HU":
            # the Enhanced CT IOD allows 'US' (unspecified) for derived frames: perfusion maps …
            raise InputError(
                f"{item.path.name} (series {label}): frame values are rescaled to '{rescale_type}', not HU "
                "(a derived map, e.g. perfusion?); vascalc needs a CT series in HU"
            )
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        photometric = _photometric(ds)
        if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise InputError(
                f"{item.path.name} (series {label}) is a {photometric or 'colour'} image with {samples} "
                "samples per pixel, not a greyscale CT slice in HU (a screenshot or secondary capture?)"
            )
    inverted = sum(_photometric(s.dataset) == "MONOCHROME1" for s in series.slices)
    if not inverted:
        return []
    # PS3.3 C.11.1: the rescale gives HU from the stored values; MONOCHROME1 only says how to
    # display them (low values white), so HU are not inverted (GDCM would invert them)
    return [f"{inverted} MONOCHROME1 slices: HU taken from the rescale of the stored values, not inverted"]


def _photometric(ds: pydicom.Dataset) -> str:
    return str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()


@dataclass(frozen=True)
class _StackGeometry:
    order: np.ndarray  # file indices sorted along the normal
    offsets_mm: np.ndarray  # (n,) positions along the normal, sorted
    positions: np.ndarray  # (n, 3) ImagePositionPatient, sorted
    row: np.ndarray
    col: np.ndarray
    normal: np.ndarray
    spacing_yx_mm: tuple[float, float]


def _stack_geometry(series: _Series) -> _StackGeometry:
    slices = series.slices
    label = series.label
    for item in slices:
        if item.orientation is None or item.position is None or item.pixel_spacing is None:
            raise GeometryError(
                f"{item.path.name} (series {label}) lacks ImageOrientationPatient, ImagePositionPatient or "
                "PixelSpacing; its position in space is unknown"
            )
        if min(item.pixel_spacing) <= 0:
            raise GeometryError(
                f"{item.path.name} (series {label}): PixelSpacing is {list(item.pixel_spacing)} mm; "
                "a zero pixel size cannot be measured — fix the header"
            )
    orientations = np.stack([s.orientation for s in slices])
    distinct = np.abs(orientations - orientations[0]).max(axis=1) > ORIENTATION_TOLERANCE
    if distinct.any():
        n_other = int(distinct.sum())
        raise GeometryError(
            f"series {label} mixes slice orientations ({n_other} of {len(slices)} slices differ from "
            f"{np.round(orientations[0], 3).tolist()}); export each orientation as its own series"
        )
    shapes = {(s.rows, s.columns) for s in slices}
    spacings = {s.pixel_spacing for s in slices}
    if len(shapes) > 1 or len(spacings) > 1:
        raise GeometryError(f"series {label} mixes image sizes {sorted(shapes)} or pixel spacings {sorted(spacings)}")
    row = orientations[0, :3] / np.linalg.norm(orientations[0, :3])
    col = orientations[0, 3:] / np.linalg.norm(orientations[0, 3:])
    if abs(float(row @ col)) > 1e-3:
        raise GeometryError(f"series {label}: ImageOrientationPatient row and column vectors are not perpendicular")
    normal = np.cross(row, col)
    positions = np.stack([s.position for s in slices])
    offsets = positions @ normal
    order = np.argsort(offsets, kind="stable")
    offsets, positions = offsets[order], positions[order]
    steps = np.diff(offsets)
    duplicate = np.flatnonzero(steps < DUPLICATE_TOLERANCE_MM)
    if duplicate.size:
        at = offsets[duplicate[0]]
        raise GeometryError(
            f"series {label}: {duplicate.size} slice(s) repeat the position of another "
            f"(first at {at:.2f} mm along the slice normal) — the series holds several acquisitions or phases; "
            "export them as separate series"
        )
    return _StackGeometry(order, offsets, positions, row, col, normal, slices[0].pixel_spacing)


def _uneven_gap(offsets: np.ndarray) -> tuple[float, int] | None:
    """``(median step, index of the worst step)`` when steps differ, else ``None``."""
    steps = np.diff(offsets)
    if steps.size < 2:
        return None
    step = float(np.median(steps))
    deviation = np.abs(steps - step)
    worst = int(np.argmax(deviation))
    return (step, worst) if deviation[worst] > SPACING_TOLERANCE_MM + 0.01 * step else None


def _shear_per_mm(geometry: _StackGeometry) -> np.ndarray:
    """In-plane drift of the slice positions per mm along the normal (zero for an untilted stack)."""
    along = geometry.offsets_mm - geometry.offsets_mm[0]
    sideways = geometry.positions - geometry.positions[0] - along[:, None] * geometry.normal
    denominator = float(along @ along)
    if denominator == 0:
        return np.zeros(3)
    shear = (along @ sideways) / denominator
    residual = np.abs(sideways - along[:, None] * shear).max()
    if residual > SHEAR_TOLERANCE_PIXELS * min(geometry.spacing_yx_mm) + SPACING_TOLERANCE_MM:
        raise GeometryError(
            f"slice positions do not lie on a line (sideways scatter {residual:.2f} mm); the series is not one stack"
        )
    return shear


def load_dicom_series(
    path: Path,
    *,
    series_uid: str | None = None,
    resample_tilt: bool = False,
    resample_uneven: bool = False,
) -> Volume:
    """Load one CT series from a DICOM folder (subfolders included) or from one of its files.

    Chooses ``series_uid`` when given, else the CT series with most slices (and says so in
    ``info.load_notes``). HU = stored × RescaleSlope + RescaleIntercept (PS3.3 C.11.1.1.2).
    Refuses non-CT series, mixed orientations, duplicate positions, uneven spacing (unless
    ``resample_uneven``) and gantry tilt (unless ``resample_tilt``) with a :class:`VascalcError`.
    """
    path = Path(path)
    if path.is_dir():
        folder, files = path, find_dicom_files(path)
        if not files:
            raise InputError(f"{path}: the folder is empty; point to a folder holding DICOM files")
    else:
        ds = _read_header(path)
        if ds is None:
            raise InputError(f"{path.name}: not a DICOM file nor a NIfTI/NRRD/MHA image")
        folder = path.parent
        if "Rows" in ds:  # an image: its series, from the files beside it
            files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
            if series_uid is None:
                series_uid = _slice_from_header(path, ds).series_key
        else:  # DICOMDIR or another non-image object: the whole folder, as for a folder path
            files = find_dicom_files(folder)
    series_map, notes = _collect_series(files)
    series, choose_notes = _choose_series(series_map, series_uid, folder.name or str(folder))
    notes = choose_notes + notes
    series, repeat_notes = _drop_repeated_instances(series)
    notes += repeat_notes
    notes += _check_pixel_format(series)
    geometry = _stack_geometry(series)
    ordered = [series.slices[i] for i in geometry.order]
    first = ordered[0].dataset
    # every geometric refusal happens here, before any pixel is decoded
    plan = _plan_stack(geometry, first, series.label, resample_uneven=resample_uneven, resample_tilt=resample_tilt)
    hu = _read_pixels([s.path for s in ordered], [s.dataset for s in ordered], [s.frame for s in ordered])
    expected = (len(ordered), ordered[0].rows, ordered[0].columns)
    if hu.shape != expected:
        raise InputError(f"series {series.label}: decoded pixel array {hu.shape} does not match the headers {expected}")
    if plan.regularise:
        hu, geometry = _regularise_stack(hu, geometry, plan.step_mm)
    grid = Grid(
        shape=tuple(int(n) for n in hu.shape),
        spacing_mm=(plan.step_mm, *geometry.spacing_yx_mm),
        origin_lps_mm=tuple(float(v) for v in geometry.positions[0]),
        direction=tuple(float(v) for v in np.column_stack([geometry.row, geometry.col, geometry.normal]).ravel()),
    )
    if plan.shear_per_mm is not None:
        hu, grid = _untilt(hu, grid, plan.shear_per_mm)
    notes += [note.replace("{shape}", str(grid.shape)).replace("{n_slices}", str(grid.shape[0])) for note in plan.notes]
    info = _scan_info(first, series, n_slices=grid.shape[0], increment=plan.step_mm, notes=notes)
    return Volume(hu=hu_array(hu), grid=grid, info=info)


@dataclass(frozen=True)
class _StackPlan:
    step_mm: float  # slice increment of the output grid
    regularise: bool  # interpolate an uneven stack onto ``step_mm``
    shear_per_mm: np.ndarray | None  # resample this gantry tilt away
    notes: tuple[str, ...]  # may hold {shape} / {n_slices}, known after resampling


def _plan_stack(
    geometry: _StackGeometry, first: pydicom.Dataset, label: str, *, resample_uneven: bool, resample_tilt: bool
) -> _StackPlan:
    """Decide slice increment, gap and tilt handling from the headers alone; refuse what is not allowed."""
    offsets = geometry.offsets_mm
    if len(offsets) == 1:
        step = _single_slice_spacing(first, label)
        return _StackPlan(step, False, None, (f"single slice; slice spacing {step:g} mm taken from the header",))
    notes: list[str] = []
    gap = _uneven_gap(offsets)
    if gap is not None:
        step, worst = gap
        lo, hi = offsets[worst], offsets[worst + 1]
        message = (
            f"series {label} has uneven slice spacing: slices are {step:g} mm apart but {hi - lo:g} mm between "
            f"{lo:.2f} and {hi:.2f} mm along the slice normal{' (a missing slice?)' if hi - lo > step else ''}"
        )
        if not resample_uneven:
            raise GeometryError(
                message + "; pass resample_uneven=True (--resample-uneven) to interpolate onto a regular "
                f"{step:g} mm grid"
            )
        notes.append(message + f"; interpolated linearly onto a regular {step:g} mm grid ({{n_slices}} slices)")
    else:
        # Mean over the whole stack, not the median step: positions written with 2 decimals
        # (0.62/0.63 for 0.625 mm) would otherwise put the last of 500 slices 2.5 mm off.
        step = float((offsets[-1] - offsets[0]) / (len(offsets) - 1))
    notes.append(f"slice increment {step:g} mm taken from ImagePositionPatient")

    shear = _shear_per_mm(geometry)  # the line fit does not need even spacing
    drift_mm = float(np.linalg.norm(shear) * (offsets[-1] - offsets[0]))
    tilt_tag = _optional_float(first.get("GantryDetectorTilt")) or 0.0
    if drift_mm > SHEAR_TOLERANCE_PIXELS * min(geometry.spacing_yx_mm):
        angle = float(np.degrees(np.arctan(np.linalg.norm(shear))))
        message = (
            f"series {label} is acquired with gantry tilt: the stack leans {angle:.2f}° from the slice normal "
            f"({drift_mm:.1f} mm sideways over its length)"
        )
        if not resample_tilt:
            raise GeometryError(
                message + "; pass resample_tilt=True (--resample-tilt) to resample onto an untilted grid"
            )
        notes.append(message + "; resampled linearly onto an untilted grid {shape}")
    else:
        shear = None
        if tilt_tag:
            # scanners that reconstruct along the tilted gantry still write a consistent geometry
            notes.append(
                f"GantryDetectorTilt is {tilt_tag:g}° but the slices are stacked along their normal; "
                "no resampling needed"
            )

    thickness = _optional_float(first.get("SliceThickness"))
    if thickness is not None and abs(thickness - step) > SPACING_TOLERANCE_MM:
        kind = "overlapping slices" if thickness > step else "gaps between slices"
        notes.append(f"slice thickness {thickness:g} mm differs from the slice increment {step:g} mm ({kind})")
    return _StackPlan(step, gap is not None, shear, tuple(notes))


def _single_slice_spacing(ds: pydicom.Dataset, label: str) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _optional_float(ds.get(keyword))
        if value and value > 0:
            return value
    raise GeometryError(f"series {label} has one slice and no SliceThickness; its slice spacing is unknown")


def _optional_float(value) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _read_pixels(
    paths: list[Path], datasets: list[pydicom.Dataset], frames: list[int | None] | None = None
) -> np.ndarray:
    """Rescaled pixel values ``(n, rows, columns)``: int16/int32 when exact in integers, else float32.

    ``frames[k]`` is the frame of ``paths[k]`` in a multi-frame file (``None`` for single-frame
    files); ``datasets[k]`` holds that slice's own rescale.
    """
    frames = frames if frames is not None else [None] * len(paths)
    integral = all(
        float(ds.get("RescaleSlope", 1) or 1).is_integer() and float(ds.get("RescaleIntercept", 0) or 0).is_integer()
        for ds in datasets
    )
    # GDCM inverts MONOCHROME1 and needs the preamble; pydicom reads both as stored
    pydicom_only = any(f is not None for f in frames) or any(  # per-frame geometry and rescale too
        _photometric(ds) == "MONOCHROME1" or getattr(ds, "preamble", b"") is None for ds in datasets
    )
    if not pydicom_only:
        stack = _read_pixels_sitk(paths, datasets, integral)
        if stack is not None:
            return stack
    out = np.empty((len(paths), int(datasets[0].Rows), int(datasets[0].Columns)), dtype=np.float32)
    decoded: dict[Path, tuple[np.ndarray, bool]] = {}  # the last multi-frame file, kept for its next frames
    for k, (path, frame) in enumerate(zip(paths, frames, strict=True)):
        try:
            if frame is None:
                ds = _read_dataset(path)
                _check_decoder(ds, path)
                out[k] = apply_rescale(ds.pixel_array, ds)
                continue
            if path not in decoded:
                decoded = {path: _decode_frames(path, [ds for p, ds in zip(paths, datasets) if p == path])}
            stored, rescaled = decoded[path]
            out[k] = stored[frame] if rescaled else apply_rescale(stored[frame], datasets[k])
        except InputError:
            raise
        except Exception as exc:  # decoders raise many types; the user needs the file and the reason
            raise InputError(
                f"{path.name}: pixel data cannot be decoded ({type(exc).__name__}: {exc}); "
                "the file may be truncated or damaged"
            ) from exc
    return out


def _decode_frames(path: Path, frames: list[pydicom.Dataset]) -> tuple[np.ndarray, bool]:
    """All frames of a multi-frame file: ``(values, already_rescaled)``.

    pydicom gives the stored values, rescaled per frame by the caller. When pydicom has no
    decoder for the transfer syntax, GDCM is used instead, but only if every frame shares one
    rescale: GDCM applies the first frame's rescale to all frames.
    """
    ds = _read_dataset(path)
    try:
        _check_decoder(ds, path)
    except InputError:
        slopes = {_optional_float(f.get("RescaleSlope")) for f in frames}
        intercepts = {_optional_float(f.get("RescaleIntercept")) for f in frames}
        if len(slopes) > 1 or len(intercepts) > 1:
            raise
        try:
            image = sitk.ReadImage(str(path), sitk.sitkFloat32)
        except RuntimeError:
            raise InputError(f"{path.name}: neither pydicom nor GDCM can decode its pixel data") from None
        return sitk.GetArrayFromImage(image).reshape(-1, int(ds.Rows), int(ds.Columns)), True
    return ds.pixel_array.reshape(-1, int(ds.Rows), int(ds.Columns)), False


def _read_pixels_sitk(paths: list[Path], datasets: list[pydicom.Dataset], integral: bool) -> np.ndarray | None:
    """Rescaled stack decoded by GDCM, or ``None`` when GDCM cannot decode it."""
    reader = sitk.ImageSeriesReader()  # SetImageIO("GDCMImageIO") would pick the same IO, 1.7× slower
    reader.SetFileNames([str(p) for p in paths])
    # The pixel type of the first file would be used for all; ask for one that holds every slice's
    # own rescale exactly — int16 whenever the stored bit depth allows it, so that the decoded stack
    # is never larger than the HU array itself (peak memory ≈ 1× instead of 3×).
    if integral and all(_rescaled_range_fits_int16(ds) for ds in datasets):
        reader.SetOutputPixelType(sitk.sitkInt16)
    else:
        reader.SetOutputPixelType(sitk.sitkInt32 if integral else sitk.sitkFloat32)
    # The geometry was checked above; ITK's own spacing warning (uneven stacks we were asked to
    # resample) would only repeat it on stderr.
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return sitk.GetArrayFromImage(reader.Execute())
    except RuntimeError:
        return None  # a transfer syntax GDCM cannot decode: the caller tries pydicom's decoders
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)


def _read_dataset(path: Path) -> pydicom.Dataset:
    """The whole file; a bare data set without file meta gets the transfer syntax it was read in."""
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # pydicom raises many types on damaged files
        raise InputError(f"{path.name}: DICOM file is corrupt or truncated ({type(exc).__name__}: {exc})") from exc
    if "TransferSyntaxUID" not in ds.get("file_meta", pydicom.Dataset()):
        implicit, little = ds.original_encoding
        if getattr(ds, "file_meta", None) is None:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    return ds


def _check_decoder(ds: pydicom.Dataset, path: Path) -> None:
    """Refuse, naming the packages to install, a transfer syntax pydicom has no usable decoder for."""
    syntax = ds.get("file_meta", pydicom.Dataset()).get("TransferSyntaxUID")
    if syntax is None or not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise InputError(
            f"{path.name}: pixel data in transfer syntax {syntax.name} ({syntax}) has no decoder in pydicom; "
            "export the series uncompressed (or as JPEG 2000 / JPEG lossless)"
        ) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise InputError(
            f"{path.name}: pixel data in transfer syntax {syntax.name} cannot be decoded here; "
            f"install one of the decoders pydicom lists for it ({missing}) — e.g. "
            "`pip install pylibjpeg-libjpeg` for JPEG, JPEG lossless and JPEG-LS"
        )


def _rescaled_range_fits_int16(ds: pydicom.Dataset) -> bool:
    """True when every value the stored bits can hold, after rescale, fits in int16."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = sorted((low * slope + intercept, high * slope + intercept))
    return np.iinfo(np.int16).min <= values[0] and values[1] <= np.iinfo(np.int16).max


def hu_array(values: np.ndarray) -> np.ndarray:
    """HU as int16 when every value is an integer within int16 range, else float32."""
    if values.size == 0:
        return values.astype(np.int16)
    lo, hi = float(values.min()), float(values.max())
    fits = np.iinfo(np.int16).min <= lo and hi <= np.iinfo(np.int16).max
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int16, copy=False) if fits else values.astype(np.float32)
    if fits and np.all(np.isfinite(values)) and np.array_equal(values, np.round(values)):
        return values.astype(np.int16)
    return values.astype(np.float32)


def _regularise_stack(hu: np.ndarray, geometry: _StackGeometry, step: float) -> tuple[np.ndarray, _StackGeometry]:
    """Linear interpolation between neighbouring slices onto positions ``offsets[0] + k·step``."""
    offsets = geometry.offsets_mm
    n_new = int(np.floor((offsets[-1] - offsets[0]) / step + 1e-6)) + 1
    targets = offsets[0] + step * np.arange(n_new)
    lower = np.clip(np.searchsorted(offsets, targets, side="right") - 1, 0, len(offsets) - 2)
    weight = np.clip((targets - offsets[lower]) / (offsets[lower + 1] - offsets[lower]), 0.0, 1.0)
    w = weight[:, None, None].astype(np.float32)
    values = hu[lower].astype(np.float32) * (1 - w) + hu[lower + 1].astype(np.float32) * w
    positions = geometry.positions[lower] * (1 - weight[:, None]) + geometry.positions[lower + 1] * weight[:, None]
    new = _StackGeometry(
        order=np.arange(n_new),
        offsets_mm=targets,
        positions=positions,
        row=geometry.row,
        col=geometry.col,
        normal=geometry.normal,
        spacing_yx_mm=geometry.spacing_yx_mm,
    )
    return values, new


def _untilt(hu: np.ndarray, grid: Grid, shear_per_mm: np.ndarray) -> tuple[np.ndarray, Grid]:
    """Resample a sheared (gantry-tilted) stack onto an orthogonal grid covering all of it.

    The true position of voxel (k, j, i) is ``origin + i·dx·row + j·dy·col + k·dz·(normal + shear)``;
    SimpleITK images cannot hold that non-orthogonal frame, so the affine map is handed to
    :func:`scipy.ndimage.affine_transform` (trilinear, ``order=1``).
    """
    dz, dy, dx = grid.spacing_mm
    frame = grid.direction_matrix  # columns: row (x), col (y), normal (z)
    row, col, normal = frame[:, 0], frame[:, 1], frame[:, 2]
    origin = np.asarray(grid.origin_lps_mm)
    # source: (z, y, x) index -> LPS
    source = np.eye(4)
    source[:3, :3] = np.column_stack([dz * (normal + shear_per_mm), dy * col, dx * row])
    source[:3, 3] = origin
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in grid.shape], indexing="ij")).reshape(3, -1).T
    corners_lps = corners @ source[:3, :3].T + origin
    local = (corners_lps - origin) @ frame  # coordinates along row, col, normal
    low, high = local.min(axis=0), local.max(axis=0)
    spacing_xyz = np.array([dx, dy, dz])
    shape_xyz = np.floor((high - low) / spacing_xyz + 1e-6).astype(int) + 1
    new_origin = origin + frame @ low
    target = np.eye(4)
    target[:3, :3] = np.column_stack([dz * normal, dy * col, dx * row])
    target[:3, 3] = new_origin
    source_from_target = np.linalg.inv(source) @ target
    cval = float(min(AIR_HU, hu.min()))
    values = ndimage.affine_transform(
        hu.astype(np.float32),
        source_from_target[:3, :3],
        offset=source_from_target[:3, 3],
        output_shape=tuple(int(n) for n in shape_xyz[::-1]),
        order=1,
        mode="constant",
        cval=cval,
    )
    new_grid = Grid(
        shape=tuple(int(n) for n in shape_xyz[::-1]),
        spacing_mm=grid.spacing_mm,
        origin_lps_mm=tuple(float(v) for v in new_origin),
        direction=grid.direction,
    )
    return values, new_grid


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    if isinstance(value, MultiValue):
        text = ", ".join(str(v).strip() for v in value if str(v).strip())
    else:
        text = str(value).strip()
    return text or None


def _scan_info(ds: pydicom.Dataset, series: _Series, *, n_slices: int, increment: float, notes: list[str]) -> ScanInfo:
    """Acquisition facts only — the allow-list below is the whole of what leaves the DICOM header."""
    return ScanInfo(
        source_format="dicom",
        modality=series.modality,
        kvp=_optional_float(ds.get("KVP")),
        slice_thickness_mm=_optional_float(ds.get("SliceThickness")),
        slice_increment_mm=increment,
        contrast_agent=_text(ds, "ContrastBolusAgent"),
        manufacturer=_text(ds, "Manufacturer"),
        manufacturer_model=_text(ds, "ManufacturerModelName"),
        convolution_kernel=_text(ds, "ConvolutionKernel"),
        series_uid=series.key if series.key and series.key == str(ds.get("SeriesInstanceUID", "")).strip() else None,
        series_description=_text(ds, "SeriesDescription"),
        n_slices=int(n_slices),
        load_notes=tuple(notes),
    )
