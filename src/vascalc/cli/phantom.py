"""``vascalc phantom``: write digital phantoms with exact truth (CT and lateral radiograph)."""

from __future__ import annotations

import math
import time
from enum import Enum
from pathlib import Path

import numpy as np
import typer

from vascalc.errors import InputError

app = typer.Typer(
    name="phantom",
    help="Digital phantoms with exact calcium truth.\n\nExample: vascalc phantom ct -o phantom1 --seed 1 --dicom",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Kind(str, Enum):
    vascular = "vascular"
    inserts = "inserts"
    chest = "chest"


class Metal(str, Enum):
    stent = "stent"
    screw = "screw"


class Size(str, Enum):
    small = "small"
    full = "full"


#: Grid presets per kind: (shape, spacing mm). "small" is the few-second demo; "full" is 512² in-plane.
PRESETS = {
    ("vascular", "small"): ((100, 128, 128), (3.0, 3.2, 3.2)),
    ("vascular", "full"): ((300, 512, 512), (2.5, 0.8, 0.8)),
    ("chest", "small"): ((64, 256, 256), (2.5, 1.25, 1.25)),
    ("chest", "full"): ((64, 512, 512), (2.5, 0.7, 0.7)),
    ("inserts", "small"): ((16, 400, 400), (3.0, 0.8, 0.8)),
    ("inserts", "full"): ((48, 512, 512), (1.0, 0.7, 0.7)),
}


def _triple(text: str | None, what: str, cast=float):
    if text is None:
        return None
    try:
        values = tuple(cast(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise InputError(f"--{what} must be three numbers 'z,y,x', got {text!r}") from None
    if len(values) != 3 or any(v <= 0 for v in values):
        raise InputError(f"--{what} must be three positive numbers 'z,y,x', got {text!r}")
    return values


def _check_seed(seed: int) -> None:
    if seed < 0:  # numpy's SeedSequence takes non-negative entropy only
        raise InputError(f"--seed must be 0 or a positive integer, got {seed}")


def _finite(**values: float | None) -> None:
    """Refuse NaN/inf options: typer parses 'nan' as a float and the phantom would carry it silently."""
    for name, value in values.items():
        if value is not None and not math.isfinite(value):
            raise InputError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


#: The structure each kind of phantom exists for: a grid that misses it is too small for the anatomy.
REQUIRED_STRUCTURE = {"vascular": "aorta", "chest": "heart"}


def check_anatomy_in_grid(phantom, kind: str) -> None:
    """Refuse a phantom whose grid cannot hold its anatomy (InputError naming what is missing).

    Two failures of a too-small ``--shape``/``--spacing``: the defining structure (aorta, heart) has no
    voxel, or ``truth.json`` would count calcium that lies entirely outside the image (true volume > 0,
    voxelised volume 0), so that the "exact truth" no longer describes the image.
    """
    grid = phantom.labels.grid
    fov = "×".join(f"{n * d:g}" for n, d in zip(grid.shape, grid.spacing_mm))
    advice = f"; the grid covers only {fov} mm (z,y,x): use a larger --shape or --spacing, or drop them for the preset"
    required = REQUIRED_STRUCTURE.get(kind)
    if required is not None:
        ids = [i for i, name in phantom.labels.names.items() if name == required]
        if not np.isin(phantom.labels.labels, ids).any():
            raise InputError(f"the {kind} phantom's grid holds no {required}{advice}")
    outside = [name for name, rec in phantom.truth.get("structures", {}).items()
               if rec.get("calcium_volume_mm3", 0) > 0 and rec.get("calcium_volume_voxelised_mm3", 1) == 0]
    if outside:
        raise InputError(f"the calcium of {outside[0]} ({len(outside)} structure(s)) lies outside the grid{advice}")


@app.command("ct")
def ct(
    output: Path = typer.Option(..., "-o", "--output", help="New or empty output folder."),
    kind: Kind = typer.Option(Kind.vascular, "--kind",
                              help="vascular (abdomen–pelvis–legs), chest (coronary) or inserts (QRM-like)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed and options → identical files."),
    contrast: bool = typer.Option(False, "--contrast/--no-contrast",
                                  help="Contrast-enhanced lumen (350 HU) or not (40 HU)."),
    lumen_hu: float | None = typer.Option(None, "--lumen-hu", help="Lumen HU (overrides --contrast)."),
    size: Size = typer.Option(Size.small, "--size", help="Grid preset: small (fast demo) or full (512² in-plane)."),
    shape: str | None = typer.Option(None, "--shape", help="Grid shape 'nz,ny,nx' (overrides --size)."),
    spacing: str | None = typer.Option(None, "--spacing",
                                       help="Voxel spacing 'dz,dy,dx' in mm; dz is the slice increment."),
    slice_thickness: float | None = typer.Option(None, "--slice-thickness",
                                                 help="Reconstructed slice thickness (mm); default = increment."),
    noise: float = typer.Option(15.0, "--noise", help="Noise SD (HU)."),
    psf_fwhm: float = typer.Option(1.0, "--psf-fwhm", help="In-plane PSF FWHM (mm)."),
    supersample: int = typer.Option(4, "--supersample", help="Partial-volume samples per voxel edge."),
    metal: Metal | None = typer.Option(None, "--metal", help="Add a stent or a spinal screw (vascular only)."),
    distractors: str = typer.Option("random", "--distractors",
                                    help="Chest only: non-coronary calcium: random, none, all, or kinds separated "
                                         "by commas (aortic_valve, mitral_annulus, pericardium, …)."),
    dicom: bool = typer.Option(False, "--dicom", help="Also write the CT as a DICOM series in dicom/."),
    masks: bool = typer.Option(True, "--masks/--no-masks", help="Write masks/<name>.nii.gz per structure."),
) -> None:
    """Write a CT phantom: ct.nii.gz, labels, masks/, truth.json (and dicom/)."""
    from vascalc.phantoms import make_chest_phantom, make_insert_phantom, make_vascular_phantom, write_phantom
    from vascalc.report.output_folder import check_output_folder

    check_output_folder(output)
    _check_seed(seed)
    _finite(lumen_hu=lumen_hu, slice_thickness=slice_thickness, noise=noise, psf_fwhm=psf_fwhm)
    preset_shape, preset_spacing = PRESETS[(kind.value, size.value)]
    grid_shape = _triple(shape, "shape", int) or preset_shape
    grid_spacing = _triple(spacing, "spacing") or preset_spacing
    common = dict(shape=grid_shape, spacing_mm=grid_spacing, slice_thickness_mm=slice_thickness, noise_sd_hu=noise,
                  psf_fwhm_mm=psf_fwhm, supersample=supersample)
    lumen = lumen_hu if lumen_hu is not None else (350.0 if contrast else 40.0)
    if metal is not None and kind is not Kind.vascular:
        raise InputError("--metal is available for the vascular phantom only")
    start = time.perf_counter()
    if kind is Kind.vascular:
        phantom = make_vascular_phantom(seed, lumen_hu=lumen, metal=metal.value if metal else None, **common)
    elif kind is Kind.chest:
        kinds = distractors if distractors in ("random", "none", "all") else [
            k.strip() for k in distractors.split(",") if k.strip()]
        phantom = make_chest_phantom(seed, lumen_hu=lumen, distractors=kinds, **common)
    else:
        phantom = make_insert_phantom(seed, **common)
    generated = time.perf_counter() - start
    check_anatomy_in_grid(phantom, kind.value)
    write_phantom(phantom, output, dicom=dicom, masks=masks)
    total = phantom.truth.get("total") or {}
    typer.echo(f"{kind.value} phantom {'×'.join(map(str, grid_shape))} written to {output} "
               f"(generated in {generated:.1f} s)")
    if total:
        typer.echo(f"true calcium: {total['calcium_volume_mm3']:.1f} mm³, {total['mass_mg']:.1f} mg, "
                   f"{total['n_lesions']} lesions (see truth.json)")


@app.command("xray")
def xray(
    output: Path = typer.Option(..., "-o", "--output", help="New or empty output folder."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the phantom and of the quantum noise."),
    plaque_rate: float = typer.Option(1.5, "--plaque-rate", help="Scale of the random plaque counts (0 = no calcium)."),
    pixel_spacing: float = typer.Option(0.5, "--pixel-spacing", help="Radiograph pixel size (mm)."),
    photons: float = typer.Option(2.0e6, "--photons",
                                  help="Photons per pixel before the body (sets quantum noise)."),
    blur_fwhm: float = typer.Option(0.6, "--blur-fwhm", help="Detector blur FWHM (mm)."),
) -> None:
    """Write a lateral lumbar radiograph (radiograph.png) with true L1–L4 positions and Kauppila grades."""
    from vascalc.phantoms import make_vascular_phantom, project_lateral_radiograph, write_radiograph
    from vascalc.report.output_folder import check_output_folder

    check_output_folder(output)
    _check_seed(seed)
    _finite(plaque_rate=plaque_rate, pixel_spacing=pixel_spacing, photons=photons, blur_fwhm=blur_fwhm)
    if plaque_rate < 0:
        raise InputError("--plaque-rate must not be negative")
    if pixel_spacing <= 0 or photons <= 0 or blur_fwhm < 0:
        raise InputError("--pixel-spacing and --photons must be positive and --blur-fwhm not negative; got "
                         f"{pixel_spacing:g} mm, {photons:g}, {blur_fwhm:g} mm")
    phantom = make_vascular_phantom(seed, shape=(260, 280, 232), spacing_mm=(1.0, 1.0, 1.5), noise_sd_hu=10.0,
                                    plaque_rate=plaque_rate, plaques="random" if plaque_rate > 0 else "none")
    radiograph = project_lateral_radiograph(phantom, pixel_spacing_mm=pixel_spacing, photons_per_pixel=photons,
                                            blur_fwhm_mm=blur_fwhm, seed=seed)
    write_radiograph(radiograph, output)
    grades = " ".join(f"{k}={v}" for k, v in radiograph.segment_grades.items())
    typer.echo(f"radiograph {radiograph.image.shape[0]}×{radiograph.image.shape[1]} written to {output}; "
               f"true AAC-24 = {radiograph.aac24} ({grades})")
