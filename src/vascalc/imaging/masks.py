"""``load_labelmap``: vessel and landmark masks brought onto the CT grid.

Three inputs are understood:

* a label-map file plus a names table (``{id: name}``, a JSON object or a CSV/TSV with id and
  name columns);
* a TotalSegmentator multilabel file with no table: the label table TotalSegmentator embeds in
  the NIfTI header is used, else the TotalSegmentator v2 ``total`` table shipped with vascalc;
* a folder of per-structure binary masks named as TotalSegmentator writes them
  (``aorta.nii.gz``, ``iliac_artery_left.nii.gz`` …); empty masks are kept as absent structures.

The mask grid must coincide with the CT grid in space. A grid that is the same set of voxel
centres with axes flipped or permuted (e.g. LAS NIfTI against an LPS DICOM series) is reoriented
exactly; anything else is resampled with nearest neighbour only when asked, otherwise refused.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Mapping

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from vascalc.errors import GeometryError, InputError, MaskError
from vascalc.imaging.geometry import (
    corner_positions_lps,
    describe_grid_difference,
    exact_axis_mapping,
    resample_to_grid,
)
from vascalc.imaging.grid import Grid
from vascalc.imaging.image_files import NIFTI_SUFFIXES, image_stem, image_suffix, read_image
from vascalc.imaging.labelmap import LabelMap

NamesSource = Mapping[int, str] | str | Path | None


def default_tolerance_mm(reference: Grid) -> float:
    """Half the smallest voxel spacing of ``reference`` (mm): a larger offset moves a voxel."""
    return 0.5 * float(min(reference.spacing_mm))


def load_labelmap(
    source: str | Path,
    reference: Grid,
    *,
    names: NamesSource = None,
    resample: bool = False,
    tolerance_mm: float | None = None,
) -> LabelMap:
    """Load a label map, a TotalSegmentator multilabel file or a folder of binary masks onto ``reference``.

    ``names`` maps label ids to canonical names (dict, or a path to JSON ``{"1": "aorta"}`` or to
    CSV/TSV with ``id,name`` columns). ``tolerance_mm`` (default half the smallest reference
    spacing) is how far apart, in mm, corresponding corner voxel centres may be for two grids to
    count as the same. ``resample=True`` resamples a mask on another grid with nearest neighbour.

    Raises :class:`InputError` (unreadable, not 3-D, empty folder), :class:`GeometryError` (grid
    differs and ``resample`` is false) or :class:`MaskError` (label ids without a name, overlapping
    binary masks, non-integer labels).
    """
    source = Path(source)
    tolerance = default_tolerance_mm(reference) if tolerance_mm is None else float(tolerance_mm)
    if not source.exists():
        raise InputError(f"{source}: no such mask file or folder")
    if source.is_dir():
        if names is not None:
            raise InputError(f"{source.name}: a names table applies to one label-map file, not to a folder of masks")
        return _load_mask_folder(source, reference, resample, tolerance)
    return _load_label_file(source, reference, names, resample, tolerance)


def _load_label_file(path: Path, reference: Grid, names: NamesSource, resample: bool, tolerance: float) -> LabelMap:
    values, grid, _ = read_image(path)
    labels = _integer_labels(values, path.name)
    notes: list[str] = []
    present = set(np.unique(labels).tolist()) - {0}
    if names is not None:
        table = read_names_table(names)
    else:
        table, how = _infer_names(path, present)
        notes.append(f"label names {how}")
    missing = sorted(present - set(table))
    if missing:
        raise MaskError(
            f"{path.name}: label ids {missing[:10]}{' …' if len(missing) > 10 else ''} have no name in the "
            "names table; add them to the table or pass the right table"
        )
    labels, geometry_note = _onto_reference(labels, grid, reference, resample, tolerance, path.name)
    # notes travel into results: name the map, not the file (file names may identify a patient)
    notes += [note.replace(path.name, "label map", 1) for note in geometry_note]
    return LabelMap(labels=_compact(labels), grid=reference, names=dict(sorted(table.items())), load_notes=tuple(notes))


def _infer_names(path: Path, present: set[int]) -> tuple[dict[int, str], str]:
    from vascalc.anatomy.taxonomy import known_names, totalseg_total_v2  # lazy: anatomy imports imaging

    embedded = nifti_label_table(path)
    if embedded:
        return embedded, "read from the label table in its NIfTI header"
    stem = image_stem(path)
    if present <= {1} and stem in known_names():
        return {1: stem}, f"binary mask named after its file ('{stem}')"
    table = dict(totalseg_total_v2())
    if present <= set(table):
        return table, "taken from the TotalSegmentator v2 'total' table (no names given)"
    raise MaskError(
        f"{path.name}: label ids {sorted(present - set(table))[:10]} are not TotalSegmentator 'total' ids and no "
        "names table was given; pass names (a JSON or CSV id→name table)"
    )


def nifti_label_table(path: Path) -> dict[int, str] | None:
    """The ``{id: name}`` table TotalSegmentator writes into a NIfTI header (a CaretExtension
    ``LabelTable``), or ``None`` when there is none."""
    if image_suffix(path) not in NIFTI_SUFFIXES:
        return None
    try:
        header = nib.load(str(path)).header
    except Exception:  # the image itself is read (and errors reported) elsewhere
        return None
    for extension in header.extensions:
        content = extension.get_content()
        if not isinstance(content, bytes) or b"<LabelTable>" not in content:
            continue
        try:
            root = ElementTree.fromstring(content.decode("utf-8", errors="replace").strip())
        except ElementTree.ParseError:
            return None
        table = {}
        for label in root.iter("Label"):
            key, name = label.get("Key"), (label.text or "").strip()
            if key is not None and key.lstrip("-").isdigit() and int(key) != 0 and name:
                table[int(key)] = name
        return table or None
    return None


def read_names_table(names: Mapping[int, str] | str | Path) -> dict[int, str]:
    """``{id: name}`` from a mapping, a JSON file (``{"1": "aorta"}``, ``{"aorta": 1}`` or
    ``{"labels": {"1": "aorta"}, …}`` as vascalc writes them) or a
    CSV/TSV file with id and name columns (a header row is optional). Id 0 (background) is dropped."""
    if isinstance(names, Mapping):
        raw = list(names.items())
        where = "names table"
    else:
        path = Path(names)
        where = path.name
        if not path.is_file():
            raise InputError(f"{path}: names table not found")
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name}: not valid JSON ({exc})") from exc
            if not isinstance(data, dict):
                raise InputError(f"{path.name}: expected a JSON object {{\"1\": \"aorta\", …}}")
            if isinstance(data.get("labels"), dict):  # {"labels": {...}, …}: vascalc's own tables
                data = data["labels"]
            raw = list(data.items())
            if raw and all(isinstance(v, int) for _, v in raw):
                raw = [(v, k) for k, v in raw]
        else:
            delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
            rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if r and any(c.strip() for c in r)]
            if rows and not rows[0][0].strip().lstrip("-").isdigit():
                rows = rows[1:]
            if any(len(r) < 2 for r in rows):
                raise InputError(f"{path.name}: every row needs an id and a name")
            raw = [(r[0], r[1]) for r in rows]
    table: dict[int, str] = {}
    for key, value in raw:
        try:
            label = int(str(key).strip())
        except ValueError:
            raise InputError(f"{where}: label id {key!r} is not an integer") from None
        name = str(value).strip()
        if label == 0:
            continue
        if not name:
            raise MaskError(f"{where}: label {label} has an empty name")
        table[label] = name
    if not table:
        raise InputError(f"{where}: the names table holds no 'id, name' entry (besides 0); give a JSON object "
                         "{\"1\": \"aorta\", …} or a CSV with id and name columns")
    duplicated = sorted({n for n in table.values() if list(table.values()).count(n) > 1})
    if duplicated:
        raise MaskError(f"{where}: names used for more than one id: {duplicated}")
    return table


def _integer_labels(values: np.ndarray, what: str) -> np.ndarray:
    if values.dtype == bool:
        return values.astype(np.uint8)
    if np.issubdtype(values.dtype, np.floating):
        # some tools write masks as float; accept them only when they hold whole numbers
        if not (np.all(np.isfinite(values)) and np.array_equal(values, np.round(values))):
            raise MaskError(f"{what}: label values are not whole numbers; a label map or binary mask is needed")
        values = values.astype(np.int64)
    elif not np.issubdtype(values.dtype, np.integer):
        raise MaskError(f"{what}: voxel type {values.dtype} is not a label type")
    if values.size and values.min() < 0:
        raise MaskError(f"{what}: negative label values; label ids must be ≥ 0")
    return values


def _compact(labels: np.ndarray) -> np.ndarray:
    top = int(labels.max()) if labels.size else 0
    return labels.astype(np.uint8 if top < 256 else np.uint16 if top < 65536 else np.int32, copy=False)


def _onto_reference(
    labels: np.ndarray, grid: Grid, reference: Grid, resample: bool, tolerance: float, what: str
) -> tuple[np.ndarray, list[str]]:
    mapping = exact_axis_mapping(grid, reference, tolerance)
    if mapping is not None:
        notes = []
        # accepted within tolerance, but a reader of the results should see any offset
        offset_mm = float(
            np.abs(np.sort(corner_positions_lps(grid), axis=0) - np.sort(corner_positions_lps(reference), axis=0)).max()
        )
        if offset_mm > 1e-3:
            notes.append(
                f"{what}: grid offset by up to {offset_mm:.3f} mm from the CT grid, within the "
                f"{tolerance:.3f} mm tolerance; taken as the same voxels"
            )
        if mapping.is_identity:
            return labels, notes
        return mapping.apply(labels), notes + [
            f"{what}: axes reoriented onto the CT grid ({grid.axis_codes()} → {reference.axis_codes()}), "
            "no interpolation"
        ]
    difference = describe_grid_difference(grid, reference)
    if not resample:
        raise GeometryError(
            f"{what} is not on the CT grid ({difference}); pass resample=True (--resample-masks) to "
            "resample it with nearest neighbour"
        )
    out = resample_to_grid(_compact(labels), grid, reference, interpolator=sitk.sitkNearestNeighbor, default_value=0)
    return out, [f"{what}: resampled with nearest neighbour onto the CT grid ({difference})"]


def _load_mask_folder(folder: Path, reference: Grid, resample: bool, tolerance: float) -> LabelMap:
    files = sorted(p for p in folder.iterdir() if p.is_file() and image_suffix(p) is not None)
    if not files:
        raise InputError(f"{folder}: no mask files (.nii.gz, .nii, .nrrd, .mha) in this folder")
    stems = [image_stem(p) for p in files]
    duplicated = sorted({s for s in stems if stems.count(s) > 1})
    if duplicated:
        raise MaskError(f"{folder.name}: several files for the same structure: {duplicated}")
    from vascalc.anatomy.taxonomy import totalseg_total_v2  # lazy: anatomy imports imaging

    totalseg_ids = {name: label for label, name in totalseg_total_v2().items()}
    next_id = max(totalseg_ids.values()) + 1
    ids: dict[str, int] = {}
    for stem in sorted(stems):  # TotalSegmentator names keep their ids; others follow in name order
        if stem in totalseg_ids:
            ids[stem] = totalseg_ids[stem]
    for stem in sorted(stems):
        if stem not in ids:
            ids[stem], next_id = next_id, next_id + 1
    labels = np.zeros(reference.shape, dtype=np.uint16)
    notes: list[str] = []
    empty: set[str] = set()
    for path, stem in zip(files, stems):
        values, grid, _ = read_image(path)
        values = _integer_labels(values, path.name)
        nonzero = values != 0
        # binary = one non-zero value (1 or 255); min/max instead of np.unique: a TotalSegmentator
        # folder holds 117 full-size masks
        inside = values[nonzero]
        if inside.size and inside.min() != inside.max():
            distinct = np.unique(inside)
            raise MaskError(
                f"{path.name}: not a binary mask (values {([0] if inside.size < values.size else []) + distinct[:5].tolist()}…); "
                "pass a label map with a names table instead"
            )
        binary = nonzero.view(np.uint8)
        mask, geometry_note = _onto_reference(binary, grid, reference, resample, tolerance, path.name)
        notes += [note.replace(path.name, f"mask {stem}", 1) for note in geometry_note]
        mask = mask.astype(bool)
        clash = mask & (labels != 0)
        if clash.any():
            other = {v: k for k, v in ids.items()}[int(labels[clash][0])]
            raise MaskError(
                f"masks {stem} and {other} overlap in {int(clash.sum())} voxels; one label map cannot hold both — "
                "remove one of them from the folder"
            )
        labels[mask] = ids[stem]
        if not mask.any():
            empty.add(stem)
    names = {label: name for name, label in sorted(ids.items(), key=lambda item: item[1])}
    absent = [name for name in names.values() if name in empty]
    if absent:
        notes.append(f"empty masks kept as absent structures: {', '.join(absent)}")
    return LabelMap(labels=_compact(labels), grid=reference, names=names, load_notes=tuple(notes))
