"""``vascalc coronary …``: coronary calcium per artery on non-gated chest CT."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vascalc.cli.outcomes import finish_cases

app = typer.Typer(help="Coronary calcium per artery (RCA, LAD with left main, LCX) on chest CT.",
                  no_args_is_help=True)
console = Console(stderr=True)

EXAMPLE = """
Example:

  vascalc coronary score chest.nii.gz -o results/

  vascalc coronary score chest_dicom/ --heart totalseg/heart.nii.gz -o results/
"""


def print_summary(out: Console, data: dict) -> None:
    """Per-artery table of the main scores, then the warnings."""
    method = data["method"]
    table = Table(title=f"{data['case_id']} — coronary {method.get('policy')} ({method.get('slice_normalisation')}, "
                        f"{method.get('assignment')})")
    for column in ("artery", "Agatston", "volume mm³", "lesions", "band"):
        table.add_column(column, justify="left" if column == "artery" else "right")
    for row in list(data["structures"]) + [data["total"]]:
        table.add_row(str(row["name"]), f"{row['agatston_3mm']:.1f}", f"{row['calcium_volume_mm3']:.1f}",
                      str(row["n_lesions"]), row["risk_band"])
    out.print(table)
    cat = data.get("categories", {})
    out.print(f"CAC-DRS {cat.get('cac_drs_a')}/N{cat.get('cac_drs_n')}", highlight=False)
    for warning in data.get("warnings", []):
        out.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


@app.command("score", epilog=EXAMPLE)
def score(
    inputs: list[Path] = typer.Argument(..., help="Chest CT inputs: DICOM folder/file, NIfTI, NRRD, MHA/MHD."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (must not exist or be empty)."),
    heart: list[str] = typer.Option([], "--heart", help=(
        "Heart mask: TotalSegmentator multilabel file/folder or a binary mask. One for all inputs, one per "
        "input, or a template with {case}. Omitted: found in the image.")),
    segmenter: str = typer.Option("auto", "--segmenter", help="Without --heart: auto | builtin | totalsegmentator."),
    model: Optional[str] = typer.Option(None, "--model", help="Lesion classifier JSON ('vascalc train coronary'), "
                                                              "'rules', or seg3d:FOLDER (3-D segmentation backend, "
                                                              "'vascalc train coronary-seg3d'). Default: the shipped model."),
    method: str = typer.Option("agatston", "--method", "-m", help="agatston (130 HU, kV-adjusted) | hu=<N>"),
    slice_normalisation: str = typer.Option("auto", "--slice-normalisation", help="auto | none | increment"),
    min_area_mm2: float = typer.Option(1.0, "--min-area-mm2", help="Minimum 2-D lesion area (mm²)."),
    mass_calibration: Optional[float] = typer.Option(None, "--mass-calibration", help="c_HA in mg/cm³ per HU for mass_mg."),
    force: bool = typer.Option(False, "--force", help="Score even if the heart blood pool looks contrast-enhanced."),
    qc: bool = typer.Option(True, "--qc/--no-qc", help="Write QC pictures and the HTML page."),
) -> None:
    """Score coronary calcium per artery; writes result.json, arteries.csv, lesions.csv, the lesion map
    labelled by artery and QC pictures. Several inputs: one subfolder each plus cohort.csv."""
    from vascalc.coronary.options import CoronaryOptions
    from vascalc.workflows.coronary import score_coronary_cohort

    options = CoronaryOptions(slice_normalisation=slice_normalisation, min_area_mm2=min_area_mm2,
                              mass_calibration_mg_per_cm3_per_hu=mass_calibration)
    with console.status("scoring…") as status:
        outcomes = score_coronary_cohort(inputs, output, hearts=heart, segmenter=segmenter, model=model,
                                         method=method, options=options, force=force, qc=qc,
                                         progress=lambda message: status.update(message))
    finish_cases(outcomes, output, console, print_summary)
