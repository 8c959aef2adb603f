"""``vascalc stats …``: agreement tables and plots of a validation study (SCORING.md §D)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vascalc.errors import InputError
from vascalc.jsonable import to_jsonable

app = typer.Typer(help="Agreement statistics: tables with CIs and plots, as in a paper's results section.",
                  no_args_is_help=True)

FORMATS = ("table", "md", "csv", "json")

EXAMPLE_AGREEMENT = """
Example:

  vascalc stats agreement scores.csv --reference expert --predicted model_a --predicted model_b \\
      --category-bands 0,1,100,400 -o agreement/
"""


def _read_csv(path: Path, columns: list[str]):
    import pandas as pd

    if not path.is_file():
        raise InputError(f"{path.name}: no such CSV file")
    import csv

    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty; give a CSV with a header row and one row per case")
    try:
        frame = pd.read_csv(path, sep=None, engine="python")
    except (OSError, ValueError, UnicodeDecodeError, csv.Error) as error:
        # csv.Error: the delimiter sniffer found no consistent separator (one column, binary, …)
        raise InputError(f"{path.name}: cannot read as CSV ({error}); give comma-, semicolon- or "
                         "tab-separated text with a header row") from None
    if len(frame) == 0:
        raise InputError(f"{path.name} has a header but no rows; give one row per case")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"column {missing[0]!r} is not in {path.name}; its columns are: "
                         f"{', '.join(map(str, frame.columns[:20]))}")
    return frame


def _numeric(frame, column: str) -> list:
    from vascalc.stats._common import as_float_array

    values = frame[column].tolist()
    try:
        return as_float_array(values, column).tolist()
    except InputError:
        bad = next(v for v in values if not _is_number(v))
        raise InputError(f"column {column!r} holds a value that is not a number ({str(bad)[:20]!r}); "
                         "give numeric scores (empty cells count as missing)") from None


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return value is None


def _label(value) -> str | None:
    """A category label as text; integral floats lose their ".0"; missing stays None."""
    if value is None or value != value:  # value != value: NaN
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "method"


def _print(tables, report, fmt: str) -> None:
    console = Console()
    if fmt == "json":
        typer.echo(json.dumps(report.to_dict(), indent=2, allow_nan=False))
        return
    for table in tables:
        if table is None:
            continue
        if fmt == "md":
            typer.echo(table.to_markdown())
        elif fmt == "csv":
            typer.echo(table.to_csv(), nl=False)
        else:
            console.print(_rich_table(table))
            for note in table.notes:
                console.print(f"  • {escape(note)}", highlight=False)


def _rich_table(table) -> Table:
    """A terminal table; wide tables are transposed (one column per method) so they fit a terminal.

    Cells are escaped: band labels such as "[0, 1)" must not be read as rich markup.
    """
    title = escape(table.title)
    if len(table.columns) <= 8:
        rich_table = Table(title=title, title_justify="left")
        for i, column in enumerate(table.columns):
            rich_table.add_column(escape(column), justify="left" if i == 0 else "right")
        for row in table.rows:
            rich_table.add_row(*map(escape, row))
        return rich_table
    rich_table = Table(title=title, title_justify="left")
    rich_table.add_column(escape(table.columns[0]), justify="left")
    for row in table.rows:
        rich_table.add_column(escape(row[0]), justify="right")
    for i, column in enumerate(table.columns[1:], start=1):
        rich_table.add_row(escape(column), *(escape(row[i]) for row in table.rows))
    return rich_table


def _write_tables(out: Path, stem: str, tables, report) -> list[Path]:
    from vascalc.report.output_folder import prepare_output_folder

    prepare_output_folder(out)
    written = []
    for suffix, table in tables:
        if table is None:
            continue
        for ext, text in (("md", table.to_markdown()), ("csv", table.to_csv())):
            path = out / f"{stem}{suffix}.{ext}"
            path.write_text(text, encoding="utf-8")
            written.append(path)
    path = out / f"{stem}.json"
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False), encoding="utf-8")
    return written + [path]


def _prepare(output: Optional[Path], inputs: list[Path]) -> Optional[Path]:
    """Check the output folder before the work; it is made only when there is something to write
    (in :func:`_write_tables`), so a statistic that fails leaves no empty folder behind."""
    if output is None:
        return None
    from vascalc.report.output_folder import check_output_folder

    return check_output_folder(output, inputs)


@app.command("agreement", epilog=EXAMPLE_AGREEMENT)
def agreement(
    csv_file: Path = typer.Argument(..., help="CSV with one row per case."),
    reference: str = typer.Option(..., "--reference", "-r", help="Column of the reference (expert) scores."),
    predicted: list[str] = typer.Option(..., "--predicted", "-p", help="Column of a method's scores; repeat for several methods."),
    category_bands: Optional[str] = typer.Option(None, "--category-bands", help="Lower edges of score categories, e.g. 0,1,100,400: adds linear κ, accuracy and confusion matrices."),
    loa: float = typer.Option(1.96, "--loa-multiplier", help="Limits of agreement = bias ± this × SD (1.96; 2 as in Bland & Altman 1986)."),
    unit: str = typer.Option("", "--unit", help="Unit of the scores (e.g. mm³), shown in the table notes and plot axes."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | md | csv | json (what is printed)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder for tables, JSON and plots (must not exist or be empty)."),
) -> None:
    """Agreement of predicted scores with a reference: errors, R², Bland–Altman, correlations, ICC, Wilcoxon."""
    from vascalc.stats.tables import agreement_report, band_labels

    _check_format(fmt)
    frame = _read_csv(csv_file, [reference, *predicted])
    if len(set(predicted)) != len(predicted) or reference in predicted:
        raise InputError("each --predicted column must be named once and differ from --reference")
    ref = _numeric(frame, reference)
    methods = {name: _numeric(frame, name) for name in predicted}
    for name, values in methods.items():  # name the column, not just "reference and predicted"
        pairs = sum(1 for a, b in zip(ref, values) if a == a and b == b)  # x == x: not NaN
        if pairs < 2:
            raise InputError(f"columns {reference!r} and {name!r} share {pairs} row(s) with both values; "
                             "agreement needs at least 2 complete rows")
    out = _prepare(output, [csv_file])
    report = agreement_report(ref, methods, reference_name=reference, unit=unit, category_bands=category_bands,
                              loa_multiplier=loa)
    _print([report.table, report.comparisons_table], report, fmt)
    if out is None:
        return
    from vascalc.stats.plots import bland_altman_plot, confusion_matrix_plot, scatter_plot

    _write_tables(out, "agreement", [("", report.table), ("_comparisons", report.comparisons_table)], report)
    for method in report.methods:
        name = _safe_name(method.name)
        values = methods[method.name]
        bland_altman_plot(ref, values, method.bland_altman, out / f"bland_altman_{name}",
                          title=f"Bland–Altman: {method.name} − {reference}", unit=unit)
        if method.bland_altman_percent is not None:
            bland_altman_plot(ref, values, method.bland_altman_percent, out / f"bland_altman_percent_{name}",
                              title=f"Bland–Altman (%): {method.name} vs {reference}")
        scatter_plot(ref, values, out / f"scatter_{name}", unit=unit, reference_name=reference,
                     predicted_name=method.name)
        if method.categories is not None:
            confusion_matrix_plot(method.categories.confusion, band_labels(report.category_bands),
                                  out / f"confusion_{name}", title=f"{method.name} vs {reference}")
    Console(stderr=True).print(f"results written to {out}", highlight=False)


@app.command("detection")
def detection(
    csv_file: Path = typer.Argument(..., help="CSV with one row per case."),
    reference: str = typer.Option(..., "--reference", "-r", help="Column of the reference: 1 positive, 0 negative."),
    predicted: list[str] = typer.Option(..., "--predicted", "-p", help="Column of a method's 0/1 decisions or scores; repeatable."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="For score columns: positive when score ≥ this."),
    ci: str = typer.Option("wilson", "--ci", help="Proportion CIs: wilson | clopper_pearson."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | md | csv | json (what is printed)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder for tables, JSON and plots (must not exist or be empty)."),
) -> None:
    """Sensitivity, specificity, PPV, NPV, accuracy (CIs), Cohen's κ and ROC AUC with DeLong CI."""
    from vascalc.stats.tables import detection_report

    _check_format(fmt)
    if ci not in ("wilson", "clopper_pearson"):
        raise InputError(f"unknown proportion CI {ci!r}; use wilson or clopper_pearson")
    frame = _read_csv(csv_file, [reference, *predicted])
    ref = _numeric(frame, reference)
    methods = {name: _numeric(frame, name) for name in predicted}
    out = _prepare(output, [csv_file])
    report = detection_report(ref, methods, reference_name=reference, threshold=threshold, proportion_method=ci)
    _print([report.table], report, fmt)
    if out is None:
        return
    from vascalc.stats.plots import confusion_matrix_plot, roc_plot

    _write_tables(out, "detection", [("", report.table)], report)
    for m in report.methods:
        d = m.diagnostic
        confusion_matrix_plot([[d.tp, d.fn], [d.fp, d.tn]], ("positive", "negative"),
                              out / f"confusion_{_safe_name(m.name)}", title=f"{m.name} vs {reference}")
    roc_plot([(m.name, ref, methods[m.name], m.auc) for m in report.methods], out / "roc",
             title=f"ROC against {reference}")
    Console(stderr=True).print(f"results written to {out}", highlight=False)


@app.command("segmentation")
def segmentation(
    predicted: Path = typer.Argument(..., help="Predicted mask file, or folder of <structure>.nii.gz masks."),
    reference: Path = typer.Argument(..., help="Reference mask file, or folder of <structure>.nii.gz masks."),
    hd95: str = typer.Option("monai", "--hd95", help="HD95 convention: monai (max of directed P95) | medpy (pooled)."),
    per_slice: bool = typer.Option(False, "--per-slice", help="Dice/IoU/VS averaged over axial slices (as S4) instead of over the volume."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | md | csv | json (what is printed)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder for the table and JSON (must not exist or be empty)."),
) -> None:
    """Per structure: Dice, IoU, volumetric similarity, sensitivity, precision, HD and HD95 in mm."""
    from vascalc.stats.segmentation import segmentation_report

    _check_format(fmt)
    if hd95 not in ("monai", "medpy"):
        raise InputError(f"unknown HD95 convention {hd95!r}; use monai or medpy")
    out = _prepare(output, [predicted, reference])
    report = segmentation_report(predicted, reference, hd95=hd95,
                                 aggregation="per_slice_mean" if per_slice else "volume")
    _print([report.table], report, fmt)
    if out is not None:
        _write_tables(out, "segmentation", [("", report.table)], report)
        Console(stderr=True).print(f"results written to {out}", highlight=False)


@dataclass(frozen=True)
class _Report:
    """What ``ordinal`` and ``raters`` write as JSON: the results and their table."""

    results: tuple
    table: object

    def to_dict(self) -> dict:
        return to_jsonable(self)


@app.command("ordinal")
def ordinal(
    csv_file: Path = typer.Argument(..., help="CSV with one row per case."),
    outcome: str = typer.Option(..., "--outcome", help="Column of the ordered outcome (e.g. severity 1, 2, 3)."),
    predictor: list[str] = typer.Option(..., "--predictor", help="Numeric predictor column; repeatable."),
    unit: list[str] = typer.Option([], "--unit", help="Unit of each predictor, in the same order (e.g. mL)."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Outcome categories in order, comma-separated (default: sorted values)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | md | csv | json (what is printed)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder for the table and JSON (must not exist or be empty)."),
) -> None:
    """Proportional-odds (ordinal logistic) regression: B, 95 % CI, Wald, p, odds ratio (as SPSS PLUM)."""
    from vascalc.stats.ordinal import proportional_odds
    from vascalc.stats.tables import ordinal_table

    _check_format(fmt)
    if unit and len(unit) != len(predictor):
        raise InputError(f"give one --unit per --predictor ({len(predictor)}), or none")
    frame = _read_csv(csv_file, [outcome, *predictor])
    values = frame[outcome].tolist()
    declared = None
    if categories:
        declared = [c.strip() for c in categories.split(",")]
        values = [None if v != v else str(v).strip() for v in values]  # v != v: NaN
        if all(_is_number(c) for c in declared):
            declared = [float(c) for c in declared]
            values = [None if v is None else float(v) for v in values]
    out = _prepare(output, [csv_file])
    result = proportional_odds(values, {name: _numeric(frame, name) for name in predictor},
                               units=dict(zip(predictor, unit)), categories=declared)
    report = _Report((result,), ordinal_table(result, outcome))
    _print([report.table], report, fmt)
    if out is not None:
        _write_tables(out, "ordinal", [("", report.table)], report)


@app.command("raters")
def raters(
    csv_file: Path = typer.Argument(..., help="CSV with one row per subject and one column per rater."),
    rater: list[str] = typer.Option(..., "--rater", help="Column of one rater's category; give ≥ 2."),
    categories: Optional[str] = typer.Option(None, "--categories", help="All categories offered to the raters, comma-separated (Randolph's q counts these)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap CI (2000 resamples)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | md | csv | json (what is printed)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder for the table and JSON (must not exist or be empty)."),
) -> None:
    """Fleiss' κ and Randolph's free-marginal κ of several raters, with bootstrap CIs."""
    from vascalc.stats.kappa import category_counts, multirater_kappa
    from vascalc.stats.tables import multirater_table

    _check_format(fmt)
    if len(rater) < 2:
        raise InputError("give at least two --rater columns")
    if len(set(rater)) != len(rater):
        raise InputError("each --rater column must be named once; give two or more different columns")
    frame = _read_csv(csv_file, rater)
    # A column with a gap is read as floats: 4.0 must still match the category "4".
    labels = frame[rater].apply(lambda col: col.map(_label))
    complete = ~frame[rater].isna().any(axis=1)
    dropped = int((~complete).sum())
    declared = [c.strip() for c in categories.split(",")] if categories else None
    counts, _ = category_counts(labels[complete].to_numpy(dtype=object), declared)
    out = _prepare(output, [csv_file])
    results = tuple(multirater_kappa(counts, method=m, seed=seed) for m in ("fleiss", "randolph"))
    table = multirater_table(results)
    if dropped:
        table = type(table)(table.title, table.columns, table.rows, table.notes + (f"{dropped} subject(s) with a missing rating left out.",))
    report = _Report(results, table)
    _print([report.table], report, fmt)
    if out is not None:
        _write_tables(out, "raters", [("", report.table)], report)
