"""Segmentation quality: Dice, HD95 and runtime of a segmenter against phantom truth and real masks.

``vascalc bench segmentation`` runs the chosen backend (:func:`vascalc.anatomy.segment.segment`)
on (a) digital phantoms with exact labels — non-contrast and contrast, with metal — and (b) real
scans with reference masks (the TotalSegmentator masks beside the sample CTs), and writes one row per
case × structure. Vertebra levels are checked too: a level is correct when the centroid of the
predicted vertebra lies inside the reference vertebra of the same name. Where the segmenter marks
slices of a structure uncertain (too little evidence, e.g. metal streaks: left undrawn rather than
guessed), the row also gives the Dice over the other slices, beside the Dice over all of them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from vascalc.imaging import LabelMap, Volume

#: Structures compared when both sides have them (TotalSegmentator names).
COMPARED = (
    "aorta", "iliac_artery_left", "iliac_artery_right", "femoral_artery_left", "femoral_artery_right",
    "vertebrae_T12", "vertebrae_L1", "vertebrae_L2", "vertebrae_L3", "vertebrae_L4", "vertebrae_L5",
    "sacrum", "hip_left", "hip_right", "femur_left", "femur_right",
    "inferior_vena_cava", "iliac_vena_left", "iliac_vena_right",
)

#: Veins asked of the segmenter besides the CT job's structures (they are measured, not scored).
VEINS = ("inferior_vena_cava", "iliac_vena_left", "iliac_vena_right")


@dataclass(frozen=True)
class StructureQuality:
    """Agreement of one predicted structure with its reference on one case."""

    case: str
    structure: str
    reference_voxels: int
    predicted_voxels: int
    dice: float
    hd95_mm: float
    level_correct: bool | None
    runtime_s: float
    uncertain_slices: int = 0               # slices the segmenter marked uncertain for this structure
    dice_outside_uncertain: float = float("nan")  # Dice over the other slices (= dice when none; NaN when
                                                  # the reference has nothing there)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BenchCase:
    """A CT with reference labels (TotalSegmentator names) and where it came from."""

    name: str
    volume: Volume
    reference: LabelMap
    description: str


def compare(case: str, predicted: LabelMap, reference: LabelMap, runtime_s: float,
            structures: Iterable[str] = COMPARED) -> list[StructureQuality]:
    """Dice and HD95 (MONAI convention, mm) per structure present in the reference."""
    from vascalc.stats import overlap_metrics, surface_distances

    rows = []
    spacing = reference.grid.spacing_mm
    present = set(reference.present_names())
    for name in structures:
        if name not in present:
            continue
        ref = reference.mask(name)
        pred = predicted.mask(name) if predicted.has(name) else np.zeros_like(ref)
        dice = overlap_metrics(pred, ref).dice
        hd95 = surface_distances(pred, ref, spacing).hd95_mm if pred.any() else float("nan")
        level = None
        if name.startswith("vertebrae_") and pred.any():
            centre = np.round(np.argwhere(pred).mean(axis=0)).astype(int)
            level = bool(ref[tuple(centre)])
        elif name.startswith("vertebrae_"):
            level = False
        uncertain = sorted(set(predicted.uncertain_slices.get(name, ())))
        certain = np.ones(ref.shape[0], bool)
        certain[uncertain] = False
        if not uncertain:
            dice_certain = dice
        elif ref[certain].any():
            dice_certain = overlap_metrics(pred[certain], ref[certain]).dice
        else:  # marked uncertain over its whole extent: nothing the segmenter drew to judge
            dice_certain = float("nan")
        rows.append(StructureQuality(case, name, int(ref.sum()), int(pred.sum()), float(dice), float(hd95),
                                     level, runtime_s, len(uncertain), float(dice_certain)))
    return rows


def phantom_cases(seeds: Iterable[int] = (0,), *, shape=(120, 256, 256), spacing_mm=(2.5, 1.5, 1.5),
                  legs_shape=(300, 180, 180), legs_spacing_mm=(2.5, 2.0, 2.0)) -> list[BenchCase]:
    """Vascular phantoms per seed: abdomen–pelvis (T12 to the hips) non-contrast, contrast, and
    non-contrast with a spinal screw; then T12 to the knees (``legs_shape``, coarser in-plane, so
    that the femoral arteries are measured) non-contrast and contrast."""
    from vascalc.phantoms import make_vascular_phantom

    cases = []
    for seed in seeds:
        for label, kwargs in (("noncontrast", {"lumen_hu": 40.0}), ("contrast", {"lumen_hu": 350.0}),
                              ("screw", {"lumen_hu": 40.0, "metal": "screw"}),
                              ("legs-noncontrast", {"lumen_hu": 40.0, "shape": legs_shape,
                                                    "spacing_mm": legs_spacing_mm}),
                              ("legs-contrast", {"lumen_hu": 350.0, "shape": legs_shape,
                                                 "spacing_mm": legs_spacing_mm})):
            kwargs = {"shape": shape, "spacing_mm": spacing_mm, **kwargs}
            phantom = make_vascular_phantom(seed, **kwargs)
            cases.append(BenchCase(f"phantom-{label}-{seed}", phantom.volume, phantom.totalseg_labels(),
                                   f"vascular phantom seed {seed}, {label}"))
    return cases


def real_cases(shared_data: Path) -> list[BenchCase]:
    """The sample scans with TotalSegmentator masks in ``shared/data`` (skipped when absent)."""
    from vascalc.imaging import load_labelmap, load_volume

    cases = []
    example = shared_data / "ct" / "totalseg_example"
    if (example / "example_ct.nii.gz").is_file():
        volume = load_volume(example / "example_ct.nii.gz")
        reference = load_labelmap(example / "example_seg_fast_force_split.nii.gz", volume.grid)
        cases.append(BenchCase("totalseg_example", volume, reference, "non-contrast abdomen-pelvis, 3 mm"))
    dicom = shared_data / "ct" / "totalseg_dicom"
    if (dicom / "example_ct_dicom").is_dir():
        volume = load_volume(dicom / "example_ct_dicom")
        reference = load_labelmap(dicom / "example_seg_dicom.nii.gz", volume.grid)
        cases.append(BenchCase("totalseg_dicom", volume, reference, "contrast CT at T11-T12, 20 slices"))
    return cases


def run_segmentation_bench(cases: Iterable[BenchCase], backend: str = "builtin",
                           progress: Callable[[str], None] | None = None) -> list[StructureQuality]:
    """Segment every case with ``backend`` and compare it with its reference."""
    from vascalc.anatomy.segment import CT_STRUCTURES, segment

    rows: list[StructureQuality] = []
    for case in cases:
        if progress:
            progress(f"segmenting {case.name}")
        start = time.perf_counter()
        predicted = segment(case.volume, structures=CT_STRUCTURES + VEINS, backend=backend)
        runtime = time.perf_counter() - start
        rows += compare(case.name, predicted, case.reference, runtime)
    return rows


def summary_markdown(rows: list[StructureQuality]) -> str:
    """A Markdown table: one line per case × structure, then mean Dice per structure, then the rows
    with slices marked uncertain (Dice over all slices and over the others)."""
    lines = ["| case | structure | Dice | HD95 mm | level correct | runtime s |", "|---|---|---|---|---|---|"]
    for r in rows:
        level = "" if r.level_correct is None else ("yes" if r.level_correct else "no")
        lines.append(f"| {r.case} | {r.structure} | {r.dice:.3f} | {r.hd95_mm:.1f} | {level} | {r.runtime_s:.1f} |")
    lines += ["", "| structure | cases | mean Dice | min Dice |", "|---|---|---|---|"]
    for name in dict.fromkeys(r.structure for r in rows):
        dice = [r.dice for r in rows if r.structure == name]
        lines.append(f"| {name} | {len(dice)} | {np.mean(dice):.3f} | {np.min(dice):.3f} |")
    marked = [r for r in rows if r.uncertain_slices]
    if marked:
        lines += ["", "| case | structure | slices marked uncertain | Dice, all slices | Dice, other slices |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r.case} | {r.structure} | {r.uncertain_slices} | {r.dice:.3f} | {r.dice_outside_uncertain:.3f} |"
                  for r in marked]
    return "\n".join(lines) + "\n"
