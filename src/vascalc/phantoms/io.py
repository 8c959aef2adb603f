"""Write phantoms to disk: NIfTI CT, label maps with names tables, TotalSegmentator-style masks,
truth.json, optional DICOM series; and the lateral radiograph as a 16-bit PNG with its truth."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from vascalc.errors import OutputError
from vascalc.imaging.dicom_writer import write_dicom_series
from vascalc.imaging.grid import Grid
from vascalc.phantoms.types import ILIAC_GROUPS, Phantom, RadiographPhantom


def _prepare(out_dir: Path | str) -> Path:
    # Local import: the output-folder rule (new or empty, never overwrite) lives with the writers.
    from vascalc.report.output_folder import prepare_output_folder
    return prepare_output_folder(out_dir)


def _save_nifti(array: np.ndarray, grid: Grid, path: Path) -> Path:
    """Save a (z, y, x) array as NIfTI-1 with the grid's RAS affine (array transposed to (x, y, z))."""
    img = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), grid.affine_ras())
    img.header.set_xyzt_units("mm")
    img.set_qform(grid.affine_ras(), code=1)
    img.set_sform(grid.affine_ras(), code=1)
    nib.save(img, path)
    return path


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def write_json(obj: dict, path: Path) -> Path:
    path.write_text(json.dumps(obj, indent=1, default=_json_default, sort_keys=False) + "\n", encoding="utf-8")
    return path


def write_phantom(phantom: Phantom, out_dir: Path | str, *, dicom: bool = False, masks: bool = True) -> list[Path]:
    """Write a phantom into a new or empty folder; returns the files written.

    ``ct.nii.gz`` (int16 HU), ``labels.nii.gz`` + ``labels.json`` (every structure),
    ``vessels.nii.gz``/``landmarks.nii.gz`` with their ``.json`` names tables, ``calcium_fraction.nii.gz``
    (float32 true calcium fraction), ``plaque_ids.nii.gz`` (int16), for a chest phantom
    ``distractor_ids.nii.gz`` (int16, the ``truth["distractors"]`` ids), ``truth.json``; with ``masks``
    a TotalSegmentator-style ``masks/<name>.nii.gz`` per structure, with ``iliac_artery_left/right``
    (common + external iliac) in place of the finer iliac labels so that no two masks overlap; with ``dicom`` the CT as a DICOM series in ``dicom/``.
    """
    out = _prepare(out_dir)
    grid = phantom.volume.grid
    written = [_save_nifti(phantom.volume.hu.astype(np.int16), grid, out / "ct.nii.gz")]
    lab = phantom.labels
    dtype = np.uint8 if max(lab.names, default=0) < 256 else np.uint16
    vessel_names = [n for n in lab.names.values() if n in phantom.truth.get("structures", {})
                    or n in ("rca", "lad", "lcx", "aorta")]
    groups = {"labels": lab, "vessels": lab.subset(vessel_names),
              "landmarks": lab.subset([n for n in lab.names.values() if n not in vessel_names])}
    for stem, lm in groups.items():
        written.append(_save_nifti(lm.labels.astype(dtype), grid, out / f"{stem}.nii.gz"))
        table = {"labels": {str(i): n for i, n in sorted(lm.names.items())},
                 "groups": {g: list(p) for g, p in ILIAC_GROUPS.items() if any(n in lm.names.values() for n in p)},
                 "mask_definition": phantom.truth.get("mask_definition")}
        written.append(write_json(table, out / f"{stem}.json"))
    written.append(_save_nifti(phantom.calcium_fraction.astype(np.float32), grid, out / "calcium_fraction.nii.gz"))
    written.append(_save_nifti(phantom.plaque_ids.astype(np.int16), grid, out / "plaque_ids.nii.gz"))
    if phantom.distractor_ids is not None:
        written.append(_save_nifti(phantom.distractor_ids.astype(np.int16), grid, out / "distractor_ids.nii.gz"))
    if masks:
        mdir = out / "masks"
        mdir.mkdir()
        ids = lab.ids_by_name
        grouped = {part for parts in ILIAC_GROUPS.values() for part in parts}
        # one file per structure without overlaps, as TotalSegmentator writes them: its iliac label is
        # common + external iliac, so the finer parts stay in labels.nii.gz only
        for name, label in ids.items():
            if name not in grouped:
                written.append(_save_nifti((lab.labels == label).astype(np.uint8), grid, mdir / f"{name}.nii.gz"))
        for group, parts in ILIAC_GROUPS.items():
            members = [ids[p] for p in parts if p in ids]
            if members:
                written.append(_save_nifti(np.isin(lab.labels, members).astype(np.uint8), grid,
                                           mdir / f"{group}.nii.gz"))
    if dicom:
        seed = f"{phantom.truth.get('kind')}-{phantom.truth.get('parameters_hash')}"
        written += write_dicom_series(phantom.volume, out / "dicom", uid_seed=seed,
                                      series_description=phantom.volume.info.series_description or "vascalc phantom")
    written.append(write_json(phantom.truth, out / "truth.json"))
    return written


def write_radiograph(radiograph: RadiographPhantom, out_dir: Path | str) -> list[Path]:
    """Write ``radiograph.png`` (16-bit greyscale, 0–65535 for the 0–1 display image) and ``truth.json``."""
    from PIL import Image

    out = _prepare(out_dir)
    img16 = np.rint(np.clip(radiograph.image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    png = out / "radiograph.png"
    try:
        Image.fromarray(img16).save(png)
    except OSError as error:
        raise OutputError(f"cannot write {png}: {error}") from None
    truth = dict(radiograph.truth)
    truth["pixel_spacing_mm"] = list(radiograph.pixel_spacing_mm)
    truth["segment_grades"] = radiograph.segment_grades
    truth["image_shape"] = list(radiograph.image.shape)
    return [png, write_json(truth, out / "truth.json")]
