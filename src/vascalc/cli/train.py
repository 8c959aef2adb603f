"""``vascalc train``: train segmentation models (registered by the lead as ``vascalc train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vascalc.errors import InputError

app = typer.Typer(
    name="train",
    help="Train segmentation models and the AAC-24 radiograph models.\n\nExample: vascalc train seg2d --images slices/ -o /tmp/model --epochs 30",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _train() -> None:
    """Train segmentation models (k-fold cross-validation, fold ensembles)."""


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--window must be two HU values 'lo,hi', e.g. -200,1000; got {text!r}") from None
    if not hi > lo:
        raise InputError(f"--window needs lo < hi, got {text!r}")
    return lo, hi


def _labels(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--mask-labels must be label ids 'a,b,…', e.g. 52; got {text!r}") from None


@app.command("seg2d")
def seg2d(
    images: list[str] = typer.Option(..., "--images", "-i",
                                     help="Folder, glob or files of images: *_img.png slices or CT volumes (.nii.gz …)."),
    masks: list[str] | None = typer.Option(None, "--masks", "-m",
                                           help="Folder, glob or files of masks (default: *_mask/*_seg files beside the images)."),
    output: Path = typer.Option(..., "-o", "--output", help="New or empty model folder."),
    folds: int = typer.Option(4, "--folds", help="Cross-validation folds (= ensemble members)."),
    epochs: int = typer.Option(40, "--epochs", help="Training epochs per fold."),
    size: int = typer.Option(256, "--size", help="Square network input in pixels, a multiple of 32 (slices are padded and resized)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Slices per optimiser step."),
    learning_rate: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    window: str | None = typer.Option(None, "--window",
                                      help="HU window 'lo,hi' (volumes: training window, default -200,1000; "
                                           "PNG: window used on CTs at inference, default -1000,3000)."),
    mask_labels: str | None = typer.Option(None, "--mask-labels", help="Label ids counted as foreground in multilabel masks, e.g. 52."),
    label: str = typer.Option("aorta", "--label", help="Canonical name of the segmented structure (generic 'vessels' → aorta)."),
    backbone: str = typer.Option("resnet34", "--backbone", help="ResNet encoder: resnet10, resnet18, resnet34, resnet50."),
    gap: int = typer.Option(2, "--gap", help="Slices dropped from training each side of a contiguous validation block."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same data, options and seed → same models."),
    flip: bool = typer.Option(False, "--flip/--no-flip", help="Left-right flip augmentation (off: it mirrors anatomy)."),
    time_budget: float | None = typer.Option(None, "--time-budget", help="Stop training after this many seconds in all (split over folds)."),
    description: str = typer.Option("", "--description", help="Free text describing the training data (saved in the model)."),
) -> None:
    """Train a 2-D U-Net (ResNet encoder) with k-fold cross-validation and save the fold ensemble.

    Writes model.json, fold_<k>.pt and cv_report.json/md (per-fold Dice beside S4's 83.4 %) into
    the model folder; use it with 'vascalc ct score --segmenter model:FOLDER'.
    """
    from vascalc.learn import load_slices, require_monai
    from vascalc.learn.infer import canonical_label
    from vascalc.learn.models import NetworkSpec
    from vascalc.learn.seg2d import Seg2DConfig, train_seg2d

    require_monai("vascalc train seg2d")
    if output.exists() and any(output.iterdir()):
        raise InputError(f"{output}: folder exists and is not empty; choose a new model folder")
    from vascalc.report.output_folder import check_output_folder

    # the model folder must not land inside the training data (globs and files: their folder)
    check_output_folder(output, [Path(s) if Path(s).is_dir() else Path(s).parent for s in [*images, *(masks or [])]])
    config = Seg2DConfig(
        size_px=size, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, n_folds=folds,
        gap_slices=gap, seed=seed, flip_lr=flip, label_name=canonical_label(label),
        network=NetworkSpec(backbone=backbone), time_budget_s=time_budget,
    )
    slices = load_slices(images if len(images) > 1 else images[0], (masks if len(masks) > 1 else masks[0]) if masks else None,
                         window=_window(window), mask_labels=_labels(mask_labels))
    typer.echo(f"{len(slices)} slices from {slices.n_cases} case(s); {folds}-fold cross-validation, "
               f"{backbone} U-Net, {size} px, {epochs} epochs")
    report = train_seg2d(slices, output, config, description=description, on_progress=typer.echo)
    mean, oof = report["mean_over_folds"], report["out_of_fold_pooled"]
    typer.echo(
        f"mean of folds: per-slice mean Dice {100 * mean['per_slice_mean_dice']:.1f} %, global Dice "
        f"{100 * mean['global_dice']:.1f} % (S4: 83.4 % per-slice mean); out-of-fold pooled "
        f"{100 * oof['per_slice_mean_dice']:.1f} % / {100 * oof['global_dice']:.1f} %"
    )
    typer.echo(f"model and cv_report.md written to {output}")


# AAC-24 on lateral radiographs: the command lives with the other xray commands (with --localiser it
# trains the whole demo model in one run, vascalc.learn.aac_recipe)
from vascalc.cli.xray import train_xray as _train_xray  # noqa: E402

app.command("xray")(_train_xray)


@app.command("coronary")
def coronary(
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.json, or .json.gz compressed), "
                                                            "or a new folder."),
    cohort: int = typer.Option(1500, "--cohort", min=2, help="Chest phantoms to train on (ignored with --lesions)."),
    seed: int = typer.Option(0, "--seed", min=0, max=79, help="Seed: training phantoms are 100000 + 10000·seed + k."),
    lesions: Optional[Path] = typer.Option(None, "--lesions", help="Train on labelled lesions instead: a CSV "
                                                                   "(or folder of CSVs) with the feature columns and 'artery'."),
    export_lesions: Optional[Path] = typer.Option(None, "--export-lesions", help="Also write the labelled lesions as CSV."),
    description: str = typer.Option("", "--description", help="Free text saved in the model."),
) -> None:
    """Train the coronary lesion classifier (random forest → JSON) on chest phantoms or a lesion CSV.

    Example: vascalc train coronary --cohort 1500 --seed 0 -o coronary_model.json.gz   (the shipped model; ≈ 1.5 h on one idle core)
    """
    from vascalc.coronary.training import TRAIN_SEED_BASE, lesions_from_csv, phantom_lesions, train_lesion_model

    target = output if output.name.lower().endswith((".json", ".json.gz")) else output / "coronary_model.json"
    if target.exists():
        raise InputError(f"{target} exists; choose a new model file (nothing is overwritten)")
    if lesions is not None:
        table = lesions_from_csv(lesions)
        seeds_range = None
    else:
        first = TRAIN_SEED_BASE + 10_000 * seed
        seeds = list(range(first, first + cohort))
        seeds_range = [seeds[0], seeds[-1]]
        table = phantom_lesions(seeds, progress=typer.echo)
    model, report = train_lesion_model(table, seed=seed, description=description)
    model.info["training_seeds"] = seeds_range
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save(target)
    if export_lesions is not None:
        table.to_frame().to_csv(export_lesions, index=False, lineterminator="\n")
    typer.echo(f"{report.get('n_lesions', table.classes.size)} lesions; grouped {report.get('folds')}-fold accuracy "
               f"{100 * report.get('accuracy', float('nan')):.1f} %, recall {report.get('recall')}; model → {target}")


@app.command("coronary-seg3d")
def coronary_seg3d(
    output: Path = typer.Option(..., "-o", "--output", help="New or empty model folder."),
    cohort: int = typer.Option(48, "--cohort", min=1, help="Chest phantoms to train on."),
    seed: int = typer.Option(0, "--seed", min=0, max=79, help="Seed: phantoms 100000 + 10000·seed + k; also the network's seed."),
    iterations: int = typer.Option(5000, "--iterations", min=1, help="Optimiser steps (2 patches each)."),
    time_budget: Optional[float] = typer.Option(900.0, "--time-budget", help="Stop training after this many seconds "
                                                                            "(the data preparation is not counted)."),
    description: str = typer.Option("", "--description", help="Free text saved in the model."),
) -> None:
    """Train the optional 3-D segmentation backend for coronary assignment (MONAI DynUNet, CPU) on chest
    phantoms; use it with 'vascalc coronary score --model seg3d:FOLDER'. Needs the learn extra (torch, MONAI).

    Example: vascalc train coronary-seg3d --cohort 48 --seed 0 -o /tmp/coronary_seg3d
    """
    from vascalc.coronary.seg3d_backend import coronary_seg3d_config, train_coronary_seg3d
    from vascalc.coronary.training import TRAIN_SEED_BASE
    from vascalc.learn import require_monai

    require_monai("vascalc train coronary-seg3d")
    if output.exists() and any(output.iterdir()):
        raise InputError(f"{output}: folder exists and is not empty; choose a new model folder")
    first = TRAIN_SEED_BASE + 10_000 * seed
    config = coronary_seg3d_config(iterations=iterations, time_budget_s=time_budget, seed=seed)
    report = train_coronary_seg3d(range(first, first + cohort), output, config, description=description,
                                  progress=typer.echo)
    losses = report["loss_per_10_steps"]
    typer.echo(f"{report['steps_run']} steps in {report['train_seconds']:.0f} s (data {report['data_seconds']:.0f} s); "
               f"loss {losses[0]:.3f} → {losses[-1]:.3f}; model → {output}")
