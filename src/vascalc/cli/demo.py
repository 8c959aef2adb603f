"""``vascalc demo``: the README's first command — phantom → score → report, with the truth beside it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vascalc.errors import OutputError


def demo(
    output: Path = typer.Option(Path("vascalc-demo"), "-o", "--output", help="Output folder (must not exist or be empty)."),
    seed: int = typer.Option(0, "--seed", help="Phantom seed (same seed, same bytes)."),
    method: str = typer.Option("agatston", "--method", "-m", help="Detection method, as for `vascalc ct score`."),
) -> None:
    """Generate a small abdominal CT phantom, score its calcium per vessel and write the report.

    Writes ``OUT/phantom`` (CT as NIfTI, masks, truth.json) and ``OUT/result`` (result.json,
    vessels.csv, lesions.csv, calcium_lesions.nii.gz, QC pictures), then prints the scores next to
    the phantom's true calcium volumes.
    """
    from vascalc.api import score_ct_cohort
    from vascalc.phantoms import make_vascular_phantom, write_phantom
    from vascalc.report.output_folder import prepare_output_folder

    from vascalc.calcium.policies import parse_method
    from vascalc.errors import InputError

    # bad options fail before the output folder is made, so a corrected rerun can use the same folder
    if seed < 0:
        raise InputError(f"--seed must be 0 or a positive integer, got {seed}")
    parse_method(method)
    console = Console()
    out = prepare_output_folder(output)
    if any(out.iterdir()):
        raise OutputError(f"output folder {out} is not empty")
    with console.status("generating phantom…"):
        phantom = make_vascular_phantom(seed=seed)
        write_phantom(phantom, out / "phantom", masks=False)
    with console.status("scoring…") as status:
        outcome = score_ct_cohort([out / "phantom" / "ct.nii.gz"], out / "result",
                                  vessels=[str(out / "phantom" / "labels.nii.gz")], vessel_names=out / "phantom" / "labels.json",
                                  method=method, regions=("thoracic_abdominal", "infrarenal", "renal_to_knee"),
                                  progress=lambda message: status.update(message))[0]
    result = outcome.result
    truth = phantom.truth.get("structures", {})
    table = Table(title=f"vascalc demo — phantom seed {seed}, method {method}")
    for column in ("structure", "Agatston", "volume mm³", "true volume mm³", "PV-aware mass mg", "true mass mg"):
        table.add_column(column, justify="left" if column == "structure" else "right")
    for row in result["structures"]:
        true = truth.get(row["name"], {})
        table.add_row(
            row["name"], f"{row.get('agatston_raw') or 0:.1f}", f"{row.get('calcium_volume_mm3') or 0:.1f}",
            f"{true.get('calcium_volume_mm3', float('nan')):.1f}" if true else "–",
            f"{row.get('integrated_mass_mg') or 0:.1f}",
            f"{true.get('mass_mg', float('nan')):.1f}" if true else "–",
        )
    console.print(table)
    console.print(f"report: {out / 'result' / 'result.json'} (QC pictures beside it); phantom and truth: {out / 'phantom'}")
