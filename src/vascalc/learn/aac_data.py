"""Labelled radiograph folders for ``vascalc train xray --data DIR`` (SCORING.md B).

``DIR`` holds the films (DICOM, PNG, TIFF, JPEG) and ``labels.csv`` with the columns

* ``image`` — file name relative to ``DIR`` (required);
* either the 8 segment grades ``L1_anterior, L1_posterior, …, L4_posterior`` (integers 0–3) or
  ``aac24`` (integer 0–24, the total only: then only the whole-score regressor can be trained);
* optional ``pixel_spacing_mm`` (bitmaps; overrides DICOM);
* optional landmarks ``L1_corners … L4_corners`` (and ``T12_corners``, ``L5_corners``): eight
  numbers ``r c r c r c r c`` in pixels, corners anterior-superior, posterior-superior,
  posterior-inferior, anterior-inferior. Without them the model-free localiser places L1–L4 and
  films it cannot localise are left out (listed in the report).

Every problem of the CSV is refused with one sentence naming the row and column.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vascalc.errors import InputError, VascalcError
from vascalc.phantoms.types import VertebraLandmark
from vascalc.radiograph.kauppila import LEVELS, SEGMENTS

LANDMARK_LEVELS = ("T12", *LEVELS, "L5")


@dataclass(frozen=True)
class LabelledFilm:
    """One labelled film: image [0, 1] (bone bright), spacing (mm, or ``None``), landmarks (pixels,
    ``None`` → model-free localiser), grades ``{segment: 0–3}`` or ``None``, and AAC-24."""

    name: str
    image: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    vertebrae: tuple[VertebraLandmark, ...] | None
    grades: dict[str, int] | None
    aac24: int


def _int_in(value: str, lo: int, hi: int, where: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"{where}: {value!r} is not a number; use an integer {lo}–{hi}") from None
    if number != int(number) or not lo <= number <= hi:
        raise InputError(f"{where}: {value!r} is out of range; grades must be integers {lo}–{hi}")
    return int(number)


def _corners(value: str, level: str, where: str) -> VertebraLandmark:
    try:
        v = [float(x) for x in value.replace(";", " ").replace(",", " ").split()]
    except ValueError:
        raise InputError(f"{where}: landmarks must be 8 numbers 'r c r c r c r c', got {value!r}") from None
    if len(v) != 8:
        raise InputError(f"{where}: landmarks must be 8 numbers 'r c r c r c r c', got {len(v)}")
    corners = tuple((v[i], v[i + 1]) for i in range(0, 8, 2))
    centre = tuple(float(x) for x in np.mean(corners, axis=0))
    return VertebraLandmark(name=level, corners_px=corners, centre_px=centre)


def read_labels(folder: str | Path) -> list[dict]:
    """Parse and check ``labels.csv`` (no images read): one dict per row with ``image`` (Path),
    ``grades`` or ``None``, ``aac24``, ``pixel_spacing_mm``, ``vertebrae`` or ``None``."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; --data needs a folder with the images and labels.csv")
    path = root / "labels.csv"
    if not path.is_file():
        raise InputError(f"{root} has no labels.csv; write one with an 'image' column and the 8 segment grades or 'aac24'")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if "image" not in columns:
        raise InputError(f"{path}: missing column 'image' (found: {', '.join(columns) or 'none'})")
    present = [s for s in SEGMENTS if s in columns]
    if present and len(present) < len(SEGMENTS):
        missing = [s for s in SEGMENTS if s not in columns]
        raise InputError(f"{path}: missing segment grade column(s) {', '.join(missing)}; give all 8 or only 'aac24'")
    if not present and "aac24" not in columns:
        raise InputError(f"{path}: missing label columns; give the 8 segment grades ({SEGMENTS[0]} … {SEGMENTS[-1]}) or 'aac24'")
    if not rows:
        raise InputError(f"{path} has no data rows")
    out = []
    for i, row in enumerate(rows, start=2):  # row 1 is the header
        where = f"{path.name} row {i}"
        name = row.get("image", "")
        image = root / name
        if not name or not image.is_file():
            raise InputError(f"{where}: image {name!r} not found in {root}")
        grades = None
        if present:
            grades = {s: _int_in(row[s], 0, 3, f"{where}, column {s}") for s in SEGMENTS}
            aac24 = sum(grades.values())
            if row.get("aac24"):
                given = _int_in(row["aac24"], 0, 24, f"{where}, column aac24")
                if given != aac24:
                    raise InputError(f"{where}: aac24 {given} differs from the sum of the 8 grades ({aac24})")
        else:
            aac24 = _int_in(row.get("aac24", ""), 0, 24, f"{where}, column aac24")
        spacing = None
        if row.get("pixel_spacing_mm"):
            try:
                spacing = float(row["pixel_spacing_mm"])
            except ValueError:
                spacing = -1.0
            if not spacing > 0:
                raise InputError(f"{where}, column pixel_spacing_mm: {row['pixel_spacing_mm']!r} is not a positive number")
        given = [lv for lv in LANDMARK_LEVELS if row.get(f"{lv}_corners")]
        vertebrae = None
        if given:
            if not all(lv in given for lv in LEVELS):
                raise InputError(f"{where}: landmark columns need all of L1_corners … L4_corners")
            vertebrae = tuple(_corners(row[f"{lv}_corners"], lv, f"{where}, column {lv}_corners") for lv in given)
        out.append({"image": image, "grades": grades, "aac24": int(aac24), "pixel_spacing_mm": spacing,
                    "vertebrae": vertebrae, "row": i})
    return out


def film_spacing_mm(film: LabelledFilm) -> tuple[float, float]:
    """The film's pixel spacing (mm); when the file and the CSV give none, its landmarks give it: the
    nominal adult gap between lumbar body centres (mm) over the film's gap (px), as
    :mod:`vascalc.radiograph.spacing` estimates it for unlabelled films (± 15 % anatomical spread)."""
    if film.pixel_spacing_mm is not None:
        return film.pixel_spacing_mm
    from vascalc.radiograph.spacing import pitch_from_landmarks

    measured_px, nominal_mm, _ = pitch_from_landmarks(film.vertebrae)
    return (nominal_mm / measured_px,) * 2


def load_labelled_folder(folder: str | Path, *, rows: list[dict] | None = None) -> tuple[list[LabelledFilm], list[str]]:
    """Read ``labels.csv`` (or the given ``rows`` of it, :func:`read_labels`) and the films; returns
    (films, notes). Films without landmarks are localised model-free; those that cannot be localised
    are left out and noted."""
    from vascalc.imaging.radiograph import load_radiograph
    from vascalc.radiograph.locate import locate_vertebrae

    films, notes = [], []
    for row in read_labels(folder) if rows is None else rows:
        rg = load_radiograph(row["image"], pixel_spacing_mm=row["pixel_spacing_mm"])
        vertebrae = row["vertebrae"]
        if vertebrae is None:
            try:
                vertebrae = locate_vertebrae(rg).vertebrae
            except VascalcError as error:
                notes.append(f"{row['image'].name}: left out, L1–L4 not located ({error})")
                continue
        films.append(LabelledFilm(name=row["image"].name, image=rg.image, pixel_spacing_mm=rg.pixel_spacing_mm,
                                  vertebrae=tuple(vertebrae), grades=row["grades"], aac24=row["aac24"]))
    return films, notes


def train_from_folder(folder: str | Path, out_dir: str | Path, config=None, *, seed: int = 0) -> dict:
    """Train the fold ensemble on a labelled folder (k-fold CV by image), save it to ``out_dir`` and
    write ``cv_report.json`` / ``.md``. Segment grades train the CORAL grader (and the regressor);
    totals only train the regressor. Returns the report."""
    from dataclasses import asdict

    from vascalc.learn.aac import AacConfig, case_inputs, config_dict, save_aac_ensemble, train_ensemble, write_report
    cfg = config or AacConfig()
    cfg = AacConfig(**{**asdict(cfg), "seed": seed})
    start = time.perf_counter()
    films, notes = load_labelled_folder(folder)
    if len(films) < 2 * cfg.n_folds:
        raise InputError(f"need at least {2 * cfg.n_folds} usable films for {cfg.n_folds} folds, got {len(films)}")
    with_grades = all(f.grades is not None for f in films)
    patches, crops = [], []
    for f in films:
        p, c = case_inputs(f.image, f.vertebrae, film_spacing_mm(f), cfg)
        patches.append(p)
        crops.append(c)
    grades = np.array([[f.grades[s] for s in SEGMENTS] for f in films]) if with_grades else None
    aac = np.array([f.aac24 for f in films], dtype=np.float32)
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    graders, regressors, cv = train_ensemble(np.stack(patches) if with_grades else None, np.stack(crops), grades, aac,
                                             cfg, seed=seed)
    report = {"config": config_dict(cfg), "n_train": len(films), "train_source": f"labelled folder {Path(folder).name}",
              "labels": "segment grades" if with_grades else "AAC-24 totals only (regressor only)",
              **cv, "data_generation_s": round(data_s, 2), "training_s": round(time.perf_counter() - start, 2),
              "notes": notes}
    save_aac_ensemble(Path(out_dir), graders, regressors, {"config": report["config"], "n_train": len(films),
                                                           "segments": list(SEGMENTS),
                                                           "trained_on": report["train_source"]})
    write_report(Path(out_dir), report)
    return report


__all__ = ["LabelledFilm", "film_spacing_mm", "load_labelled_folder", "read_labels", "train_from_folder"]
