"""``vascalc xray …``: Kauppila AAC-24 on lateral radiographs and DXA VFA images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from vascalc.errors import InputError, VascalcError

app = typer.Typer(help="Abdominal aortic calcification (AAC-24) on lateral radiographs.", no_args_is_help=True)
console = Console(stderr=True)

EXAMPLE = """
Example:

  vascalc xray score lateral.dcm -o results/

  vascalc xray score film.png --pixel-spacing 0.15 --facing left -o results/
"""


@app.callback()
def main() -> None:
    """Abdominal aortic calcification (Kauppila AAC-24, AAC-8) on lateral radiographs and VFA images."""


@app.command("score", epilog=EXAMPLE)
def score(
    inputs: list[Path] = typer.Argument(..., help="Radiographs: DICOM (DX/CR/SC) or PNG/JPEG/TIFF."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (must not exist or be empty)."),
    pixel_spacing: Optional[float] = typer.Option(None, "--pixel-spacing",
                                                  help="Pixel spacing in mm (bitmaps, or override)."),
    facing: str = typer.Option("auto", help="Patient facing: auto, left or right."),
    lowest_level: str = typer.Option("L5", help="Lowest complete vertebral body in the image: L5 or L4."),
    bands: str = typer.Option("low_moderate_high", help="Severity bands: low_moderate_high, ge5, "
                              "four_band_0_4_15 or custom:0=low,2=moderate,6=high."),
    model: str = typer.Option("baseline", help="Grader: 'baseline' (model-free; the only one in this version)."),
    qc: bool = typer.Option(True, help="Write the QC PNG."),
) -> None:
    """Score AAC-24 / AAC-8 of each radiograph; one sub-folder per image when several are given."""
    from vascalc.report.output_folder import prepare_output_folder
    from vascalc.workflows.xray import case_id_for, score_radiograph, write_xray_outputs

    try:
        if model != "baseline":
            raise InputError(f"unknown model {model!r}: this version has only the model-free 'baseline'")
        names = [case_id_for(p) for p in inputs]
        if len(set(names)) != len(names):
            raise InputError("two inputs share a file name; their result folders would collide — rename one")
        out = prepare_output_folder(output, inputs)
        for path in inputs:
            target = out / case_id_for(path) if len(inputs) > 1 else out
            target.mkdir(exist_ok=True)
            result = score_radiograph(path, pixel_spacing_mm=pixel_spacing, facing=facing,
                                      lowest_level=lowest_level, bands=bands)
            write_xray_outputs(result, target, qc=qc)
            k = result.kauppila
            console.print(f"{escape(result.case_id)}: AAC-24 {k.aac24} ({k.severity}), AAC-8 {k.aac8}, "
                          f"facing {result.localisation.facing}", highlight=False)
            for warning in result.warnings:
                console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    except VascalcError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(error.exit_code) from None
