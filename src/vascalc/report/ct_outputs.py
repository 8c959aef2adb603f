"""Write one CT result into its output folder.

Files (all on the input's grid; names are fixed so that cohort tools can find them):

==========================  ===============================================================
``result.json``             the full result (schema: ``docs/result-schema.md``)
``vessels.csv``             one row per structure (and region part) plus a ``total`` row
``lesions.csv``             one row per 3-D calcium cluster
``calcium_lesions.nii.gz``  int32 lesion label map (cluster ids of ``lesions.csv``)
``vessel_masks.nii.gz``     the vessel label map that was scored (+ ``vessel_masks.json``)
``segmentation/``           one ``<name>.nii.gz`` per structure, when vascalc segmented the CT
``qc_*.png``                coronal / sagittal MIPs and an axial mosaic for a visual check
``report.html``             the scores, warnings and QC pictures on one page
==========================  ===============================================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vascalc.anatomy import taxonomy
from vascalc.imaging import save_labels_nifti
from vascalc.report.html import write_ct_html
from vascalc.report.qc import write_ct_qc
from vascalc.report.tables import write_csv, write_json
from vascalc.workflows.ct import CtResult


def _qc_title(result: CtResult) -> str:
    total = result.calcium.total
    return (f"{result.case_id}: calcium {total.calcium_volume_mm3:.1f} mm³, "
            f"Agatston {total.agatston_raw:.1f} ({result.method.get('policy', '')})")


def write_ct_outputs(result: CtResult, out_dir: Path, qc: bool = True) -> list[Path]:
    """Write every output file of one CT result into the existing folder ``out_dir``."""
    data = result.to_dict()
    written = [write_json(data, out_dir / "result.json")]
    rows = list(data["structures"]) + [data["total"]]
    written.append(write_csv(rows, out_dir / "vessels.csv", leading={"case_id": result.case_id}))
    written.append(write_csv(data["lesions"], out_dir / "lesions.csv", leading={"case_id": result.case_id}))
    grid = result.volume.grid
    written.append(save_labels_nifti(result.calcium.lesion_labels.astype(np.int32), grid,
                                     out_dir / "calcium_lesions.nii.gz"))
    written.append(save_labels_nifti(result.vessels.labels, grid, out_dir / "vessel_masks.nii.gz"))
    written.append(write_json({str(k): v for k, v in sorted(result.vessels.names.items())},
                              out_dir / "vessel_masks.json"))
    if result.vessel_source.get("kind") == "segmenter":
        # masks made by vascalc: one file per structure, as TotalSegmentator writes them (Slicer, ITK-SNAP)
        masks_dir = out_dir / "segmentation"
        masks_dir.mkdir()
        for label, name in sorted(result.vessels.names.items()):
            written.append(save_labels_nifti((result.vessels.labels == label).astype(np.uint8), grid,
                                             masks_dir / f"{name}.nii.gz"))
    if qc:
        arteries = {i: n for i, n in result.vessels.names.items() if taxonomy.is_scored_artery(n)}
        qc_images = write_ct_qc(result.volume.hu, grid, result.vessels.labels, arteries,
                                result.calcium.lesion_labels, out_dir, title=_qc_title(result))
        written += qc_images
        written.append(write_ct_html(data, out_dir, qc_images))
    return [Path(p) for p in written]
