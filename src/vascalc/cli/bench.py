"""``vascalc bench …``: accuracy of the calcium scores against digital-phantom truth."""

from __future__ import annotations

import shlex
import sys
import time
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vascalc.errors import InputError

app = typer.Typer(
    name="bench",
    help="Benchmarks against phantom truth.\n\nExample: vascalc bench accuracy -o accuracy/ --cases 4 --seed 0",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _bench() -> None:
    """Benchmarks against phantom truth."""
    # a callback keeps ``accuracy`` a sub-command even while it is the only one


class Kind(str, Enum):
    vascular = "vascular"
    inserts = "inserts"
    both = "both"


@app.command("accuracy")
def accuracy(
    output: Path = typer.Option(..., "-o", "--output", help="New or empty output folder."),
    cases: int = typer.Option(4, "--cases", min=1,
                              help="Vascular phantoms per (slice thickness, noise) cell, alternately "
                                   "non-contrast and contrast."),
    seed: int = typer.Option(0, "--seed", help="Cohort seed: same seed and options → identical tables."),
    slice_thickness: str = typer.Option("1,2,3", "--slice-thickness", help="Slice thicknesses (mm), comma-separated."),
    noise: str = typer.Option("10,20", "--noise", help="Noise SDs (HU), comma-separated."),
    methods: str = typer.Option("agatston,adaptive", "--methods",
                                help="Detection policies: agatston (non-contrast and inserts), adaptive, "
                                     "hu=<N>, window8bit… (contrast)."),
    kind: Kind = typer.Option(Kind.vascular, "--kind", help="vascular phantoms, insert phantoms, or both."),
) -> None:
    """Score a phantom cohort with every policy and write cases.csv, summary.csv/.md, detection.csv
    and agreement plots (threshold vs partial-volume-aware, against the exact truth)."""
    from vascalc.bench.accuracy import build_cohort, methods_for, parse_floats, run_accuracy

    thick = parse_floats(slice_thickness, "slice-thickness")
    noises = parse_floats(noise, "noise")
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    cohort = build_cohort(cases, seed, thick, noises, kind.value)
    steps = sum(1 + len(methods_for(c, method_list)) for c in cohort)
    console = Console(stderr=True)
    # the equivalent full command, recorded in summary.md so the table can be reproduced
    command = (f"vascalc bench accuracy -o {shlex.quote(str(output))} --cases {cases} --seed {seed} "
               f"--slice-thickness {slice_thickness} --noise {noise} --methods {shlex.quote(methods)} "
               f"--kind {kind.value}")
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("accuracy", total=steps)

        def report(message: str) -> None:
            bar.update(task, description=message, advance=1)

        result = run_accuracy(output, n_cases=cases, seed=seed, thicknesses_mm=thick, noises_hu=noises,
                              methods=method_list, kind=kind.value, command=command, progress=report)
    console.print(f"{len(result.cases)} phantoms, {len(result.rows)} vessel rows in "
                  f"{time.perf_counter() - start:.0f} s → {output}: {', '.join(result.files)}")
    pooled = [s for s in result.summary if s.pooled == "thickness<=3mm,noise"
              and s.quantity in ("classic_volume", "integrated_volume", "classic_mass", "integrated_mass")]
    for s in pooled:
        console.print(f"  {s.kind:8s} {s.method:10s} {s.quantity:18s} n={s.n:3d}  MAPE {s.mape_percent:6.1f} %  "
                      f"zero-calcium max {s.zero_max:.2f} {s.unit}", highlight=False)


@app.command("segmentation")
def segmentation(
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (must not exist or be empty)."),
    segmenter: str = typer.Option("builtin", "--segmenter", help="builtin | totalsegmentator | model:PATH"),
    seeds: str = typer.Option("0", "--seeds", help="Phantom seeds, comma-separated (each: non-contrast, contrast, screw)."),
    real_data: Path = typer.Option(None, "--real-data", help=(
        "Folder holding ct/totalseg_example and ct/totalseg_dicom (the sample scans with TotalSegmentator "
        "masks); default: ../shared/data beside the current folder when present.")),
    phantoms: bool = typer.Option(True, "--phantoms/--no-phantoms", help="Include the phantom cases."),
) -> None:
    """Dice, HD95, vertebra levels and runtime of a segmenter against phantom truth and real masks.

    Writes segmentation.csv (one row per case × structure) and segmentation.md (the table, then the
    mean Dice per structure).
    """
    from vascalc.bench.segmentation import phantom_cases, real_cases, run_segmentation_bench, summary_markdown
    from vascalc.report.output_folder import prepare_output_folder
    from vascalc.report.tables import write_csv

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds must be comma-separated whole numbers ≥ 0, e.g. 0,1,2; got {seeds!r}") from None
    if any(s < 0 for s in seed_list):
        raise InputError(f"--seeds must be whole numbers ≥ 0, got {seeds!r}")
    out = prepare_output_folder(output)
    folder = real_data if real_data is not None else Path.cwd().parent / "shared" / "data"
    with Console(stderr=True).status("building cases…") as status:
        cases = (phantom_cases(seed_list) if phantoms else []) + (real_cases(folder) if folder.is_dir() else [])
        rows = run_segmentation_bench(cases, backend=segmenter, progress=status.update)
    write_csv([r.to_dict() for r in rows], out / "segmentation.csv")
    table = summary_markdown(rows)
    command = "vascalc " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    (out / "segmentation.md").write_text(f"Command: `{command}`\n\n{table}", encoding="utf-8")
    Console().print(table)


@app.command("coronary")
def coronary(
    output: Path = typer.Option(..., "-o", "--output", help="New or empty output folder."),
    cases: int = typer.Option(100, "--cases", min=1, max=1000, help="Chest phantoms in the cohort."),
    seed: int = typer.Option(0, "--seed", min=0, help="Cohort seed: phantoms 900000 + 1000·seed + k (never training seeds)."),
    model: str = typer.Option(None, "--model", help="Lesion classifier JSON, or 'rules'. Default: the shipped model."),
    workers: int = typer.Option(1, "--workers", min=1, max=16, help="Processes scoring cases (same tables)."),
) -> None:
    """Per-artery coronary calcium against chest-phantom truth: presence Se/Sp/PPV/NPV/κ, Agatston and
    volume error, risk-band accuracy, distractors counted and runtime. Writes cases.csv, summary.csv/.md.
    References: the scan reader (primary: the scan scored by the standard rules on each artery's
    plaques), then the noise-free image and the blur-free phantom (docs/coronary.md)."""
    from vascalc.bench.coronary import run_coronary_bench
    from vascalc.report.output_folder import prepare_output_folder

    from vascalc.workflows.coronary import resolve_model

    resolve_model(model)  # a missing or unreadable model fails before the output folder is made
    out = prepare_output_folder(output)
    command = f"vascalc bench coronary -o {shlex.quote(str(output))} --cases {cases} --seed {seed}" + \
        (f" --model {shlex.quote(model)}" if model else "") + (f" --workers {workers}" if workers > 1 else "")
    with Console(stderr=True).status("coronary bench…") as status:
        result = run_coronary_bench(out, cases, seed, model=model, command=command, progress=status.update,
                                    workers=workers)
    Console().print(result.markdown)
