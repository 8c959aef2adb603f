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
                                                  help="Pixel spacing in mm (bitmaps, or override); without it (and none in the file) it is estimated "
                                                       "from the vertebral pitch (± 15 %)."),
    facing: str = typer.Option("auto", help="Patient facing: auto, left or right."),
    lowest_level: str = typer.Option("L5", help="Lowest complete vertebral body in the image: L5 or L4."),
    bands: str = typer.Option("low_moderate_high", help="Severity bands: low_moderate_high, ge5, "
                              "four_band_0_4_15 or custom:0=low,2=moderate,6=high."),
    model: str = typer.Option("bundled", help="Grader: 'bundled' (the demo model trained on synthetic films, "
                              "see its MODEL_CARD.md), a model folder from 'vascalc train xray', or 'baseline' "
                              "(model-free)."),
    qc: bool = typer.Option(True, help="Write the QC PNG."),
) -> None:
    """Score AAC-24 / AAC-8 of each radiograph. Several inputs: one sub-folder per image plus
    cohort.csv; a film that fails is recorded there with its reason and the others go on."""
    from vascalc.batch import score_cases
    from vascalc.cli.outcomes import finish_cases
    from vascalc.radiograph.kauppila import parse_bands
    from vascalc.radiograph.learned import score_radiograph_learned
    from vascalc.workflows.xray import case_id_for, score_radiograph, write_xray_outputs

    try:
        parse_bands(bands)  # a bad option fails once, not once per film
        if facing not in ("auto", "left", "right"):
            raise InputError(f"--facing must be 'auto', 'left' or 'right', got {facing!r}")
        if lowest_level not in ("L4", "L5"):
            raise InputError(f"--lowest-level must be 'L4' or 'L5', got {lowest_level!r}")
        model_dir = None
        if model not in ("baseline", "bundled"):
            model_dir = Path(model)
            if not (model_dir / "model.json").is_file():
                raise InputError(f"--model {model!r} is not a model folder (no model.json); use 'bundled', "
                                 "'baseline' or a folder written by 'vascalc train xray'")

        def score_one(path: Path, _mask, case_id: str, _report):
            if model == "baseline":
                return score_radiograph(path, pixel_spacing_mm=pixel_spacing, facing=facing,
                                        lowest_level=lowest_level, bands=bands, case_id=case_id)
            return score_radiograph_learned(path, model_dir=model_dir, pixel_spacing_mm=pixel_spacing, facing=facing,
                                            lowest_level=lowest_level, bands=bands, case_id=case_id)

        with console.status("scoring…") as status:
            outcomes = score_cases(inputs, [], output, case_id_for=case_id_for, score=score_one,
                                   write=lambda result, folder: write_xray_outputs(result, folder, qc=qc),
                                   progress=lambda message: status.update(message))
    except VascalcError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(error.exit_code) from None
    finish_cases(outcomes, output, console, print_summary)


def print_summary(out: Console, data: dict) -> None:
    """One line per film (AAC-24, severity, AAC-8, facing, grader), then its warnings."""
    total = data["total"]
    severity = data.get("categories", {}).get("aac24_severity", {}).get("class")
    out.print(f"{escape(str(data['case_id']))}: AAC-24 {total['aac24']} ({severity}), AAC-8 {total['aac8']}, "
              f"facing {data['input']['geometry']['facing']}, grader {data['method'].get('model_id')}", highlight=False)
    for warning in data.get("warnings", []):
        out.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def train_xray(
    output: Path = typer.Option(..., "-o", "--output", help="New or empty model folder."),
    data: Optional[Path] = typer.Option(None, "--data", help="Folder of films + labels.csv (image, the 8 segment "
                                        "grades L1_anterior … L4_posterior or aac24, optional pixel_spacing_mm, "
                                        "optional L1_corners … L4_corners)."),
    synthetic: int = typer.Option(0, "--synthetic", help="Train on N generated lateral films instead of --data."),
    folds: int = typer.Option(3, "--folds", help="Cross-validation folds (= ensemble members)."),
    epochs: int = typer.Option(25, "--epochs", help="Training epochs per fold."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same data, options and seed → same models."),
    width: int = typer.Option(8, "--width", help="Channels of the first ResNet stage."),
    test: int = typer.Option(0, "--test", help="With --synthetic: held-out films per test set (new seeds, "
                             "training chain, fine pixels, DXA chain, 3-D phantom DRRs)."),
    no_regressor: bool = typer.Option(False, "--no-regressor", help="Skip the whole-score regressor."),
    localiser: bool = typer.Option(False, "--localiser", help="Also train the learned landmark localiser into the "
                                   "same folder: the coarse corner-heatmap networks and the local corner stage "
                                   "(demo recipe: 2 networks × 1000 films × 24 epochs, stage 1500 films × 12 "
                                   "epochs; with --data: the films with L1_corners … L4_corners). 'xray score' "
                                   "then places the landmarks with them instead of the model-free localiser."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes with --localiser "
                                       "(default: min(2, CPU cores)): the grader in one, the localiser then its "
                                       "stage in another, one thread each; 1 = in order, in this process. The "
                                       "weights do not depend on it."),
) -> None:
    """Train the AAC-24 models (CORAL per-segment grader + whole-score regressor) with k-fold
    cross-validation and save the fold ensemble (use it with 'vascalc xray score --model FOLDER');
    with --localiser also the learned localiser (the whole demo model in one command).

    Example (the bundled demo model's recipe): vascalc train xray --synthetic 2400 --epochs 18 --width 16 --seed 0 --localiser -o models/aac
    """
    from vascalc.learn import require_monai
    from vascalc.learn.aac import TEST_SETS, AacConfig, train_aac_grader
    from vascalc.learn.aac_data import train_from_folder

    try:
        if (data is None) == (synthetic <= 0):
            raise InputError("give exactly one of --data DIR (labelled films) or --synthetic N (generated films)")
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise InputError(f"{output}: exists and is not an empty folder; choose a new model folder")
        if data is not None and test:
            raise InputError("--test applies to --synthetic only (held-out generated films)")
        require_monai("vascalc train xray")
        config = AacConfig(n_folds=folds, epochs=epochs, seed=seed, width=width, regressor=not no_regressor)
        if localiser:
            from vascalc.learn.aac_recipe import (LocaliserRecipe, default_jobs, train_folder_aac_model,
                                                  train_synthetic_aac_model)

            workers = default_jobs() if jobs is None else jobs
            typer.echo(f"training the grader, the localiser and its local stage ({workers} worker process"
                       f"{'es' if workers > 1 else ''}, one thread each)")
            if data is not None:
                run = train_folder_aac_model(data, output, seed=seed, grader=config, localiser=LocaliserRecipe(),
                                             jobs=workers, progress=typer.echo)
            else:
                run = train_synthetic_aac_model(output, synthetic, seed=seed, grader=config,
                                                localiser=LocaliserRecipe(), n_test=test, jobs=workers,
                                                progress=typer.echo)
            report = run.grader_report
            written = f"model (grader, localiser and its local stage) and cv_report.md written to " \
                      f"{escape(str(output))} in {run.wall_s:.0f} s wall"
        else:
            if data is not None:
                report = train_from_folder(data, output, config, seed=seed)
            else:
                report = train_aac_grader(output, n_train=synthetic, seed=seed, epochs=epochs, config=config,
                                          n_test=test, test_sets=TEST_SETS if test else ())
            written = f"model and cv_report.md written to {escape(str(output))} (training {report['training_s']} s)"
        for model, m in report["cross_validation"].items():
            console.print(f"CV {model}: MAE {m['mae']}, ICC(A,1) {m['icc_a1']}, 3-class accuracy "
                          f"{m['accuracy_3class']} (n = {m['n']})", highlight=False)
        for note in report.get("notes", []):
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
        console.print(written, highlight=False)
    except VascalcError as error:
        console.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)  # one line
        raise typer.Exit(error.exit_code) from None
