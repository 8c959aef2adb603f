"""``vascalc ct …``: calcium scoring of CT and CTA volumes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vascalc.calcium import ScoringOptions
from vascalc.cli.outcomes import finish_cases

app = typer.Typer(help="Calcium in the aorta and its branches on CT and CTA.", no_args_is_help=True)
console = Console(stderr=True)

EXAMPLE = """
Example:

  vascalc ct score scan.nii.gz --vessels totalseg_masks/ -o results/

  vascalc ct score dicom_folder/ --vessels seg.nii.gz --method adaptive -o results/
"""


def scoring_options(wall_mm: float, min_area_mm2: float, connectivity_2d: int, slice_normalisation: str,
                    mass_calibration: Optional[float], force: bool, strict: bool) -> ScoringOptions:
    """Build :class:`ScoringOptions` from CLI flags (values checked there)."""
    return ScoringOptions(
        wall_mm=wall_mm, min_area_mm2=min_area_mm2, connectivity_2d=connectivity_2d,
        slice_normalisation=slice_normalisation,
        mass_calibration_mg_per_cm3_per_hu=mass_calibration, force=force, strict=strict,
    )


def print_summary(console_out: Console, result_dict: dict) -> None:
    """A per-structure table of the main scores."""
    table = Table(title=f"{result_dict['case_id']} — {result_dict['method'].get('policy', '')}")
    for column in ("structure", "Agatston", "volume mm³", "lesions", "burden %"):
        table.add_column(column, justify="right" if column != "structure" else "left")
    for row in list(result_dict["structures"]) + [result_dict["total"]]:
        table.add_row(
            str(row.get("name")),
            f"{row.get('agatston_raw') or 0:.1f}",
            f"{row.get('calcium_volume_mm3') or 0:.1f}",
            str(row.get("n_clusters_3d", "")),
            "" if row.get("burden_percent") is None else f"{row['burden_percent']:.2f}",
        )
    console_out.print(table)
    for note in result_dict["input"].get("notes", []):
        console_out.print(f"[dim]note:[/] {escape(note)}", highlight=False)
    for warning in result_dict.get("warnings", []):
        console_out.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


@app.command("score", epilog=EXAMPLE)
def score(
    inputs: list[Path] = typer.Argument(..., help="CT inputs: DICOM folder/file, NIfTI, NRRD, MHA/MHD."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (must not exist or be empty)."),
    vessels: list[str] = typer.Option([], "--vessels", "-v", help=(
        "Vessel masks: label map, TotalSegmentator multilabel file or folder of masks. One for all "
        "inputs, one per input (same order), or a template with {case}. Omitted: segment the CT.")),
    segmenter: str = typer.Option("auto", "--segmenter", help=(
        "Without --vessels: auto | builtin | totalsegmentator | model:PATH (a `vascalc train seg2d` folder).")),
    vessel_names: Optional[Path] = typer.Option(None, "--vessel-names", help="Names table (JSON/CSV id,name) for a plain label map."),
    method: str = typer.Option("agatston", "--method", "-m", help="agatston[:kv_adjust=false,bands_hu=D/W2/W3/W4] | hu=<N> | window8bit[:lo=,hi=,threshold=] | adaptive[:k=,scope=]"),
    series: Optional[str] = typer.Option(None, "--series", help="SeriesInstanceUID to take from a folder with several series."),
    resample_masks: bool = typer.Option(False, "--resample-masks", help="Resample masks (nearest neighbour) when their grid differs."),
    resample_tilt: bool = typer.Option(False, "--resample-tilt", help="Resample a gantry-tilted series onto an untilted grid."),
    resample_uneven: bool = typer.Option(False, "--resample-uneven", help="Interpolate a series with uneven slice spacing."),
    region: list[str] = typer.Option(["thoracic_abdominal"], "--region", help=(
        "Named parts to score as well (repeatable): thoracic_abdominal (at T12/L1), infrarenal "
        "(below the lowest renal artery origin), renal_to_knee (the aorta-to-patella study's range).")),
    wall_mm: float = typer.Option(1.0, "--wall-mm", help="Dilation of the vessel masks to take in the wall (mm)."),
    min_area_mm2: float = typer.Option(1.0, "--min-area-mm2", help="Minimum 2-D lesion area (mm²)."),
    connectivity: int = typer.Option(8, "--connectivity", help="2-D lesion connectivity: 8 or 4."),
    slice_normalisation: str = typer.Option("auto", "--slice-normalisation", help="auto | none | increment | resample3mm"),
    mass_calibration: Optional[float] = typer.Option(None, "--mass-calibration", help="c_HA in mg/cm³ per HU for mass_mg."),
    strict: bool = typer.Option(False, "--strict", help="Use > threshold instead of ≥ threshold."),
    force: bool = typer.Option(False, "--force", help="Score with 130 HU even if the lumen looks contrast-enhanced."),
    qc: bool = typer.Option(True, "--qc/--no-qc", help="Write QC pictures."),
) -> None:
    """Score calcium per vessel; writes result.json, CSVs, the lesion map and QC pictures."""
    from vascalc.anatomy.regions import NAMED_REGIONS
    from vascalc.api import score_ct_cohort
    from vascalc.calcium import parse_method
    from vascalc.errors import InputError

    parse_method(method)  # option errors once, before any case is read, not once per case of a cohort
    unknown = [r for r in region if r not in NAMED_REGIONS]
    if unknown:
        raise InputError(f"unknown region {unknown[0]!r}; choose from {', '.join(NAMED_REGIONS)}")
    options = scoring_options(wall_mm, min_area_mm2, connectivity, slice_normalisation, mass_calibration, force, strict)
    with console.status("scoring…") as status:
        outcomes = score_ct_cohort(
            inputs, output, vessels=vessels, vessel_names=vessel_names, segmenter=segmenter, method=method,
            series_uid=series, regions=tuple(region),
            resample_masks=resample_masks, resample_tilt=resample_tilt, resample_uneven=resample_uneven,
            options=options, qc=qc, progress=lambda message: status.update(message),
        )
    finish_cases(outcomes, output, console, print_summary)
