"""Run one job over many cases: one subfolder per case, one cohort CSV, failures recorded.

A failing case (unreadable file, geometry mismatch, empty mask …) never stops the cohort: its
row in ``cohort.csv`` has ``status = failed`` and the one-line reason, and the other cases go on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from vascalc.errors import InputError, VascalcError
from vascalc.report.output_folder import check_output_folder, prepare_output_folder
from vascalc.report.tables import flatten_record


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one case: ``status`` is ``ok`` or ``failed`` (with ``error``)."""

    case_id: str
    status: str
    error: str = ""
    rows: tuple[dict, ...] = ()


def unique_case_ids(inputs: Sequence[Path], case_id_for: Callable[[Path], str]) -> list[str]:
    """Case names from input paths, made filesystem-safe and unique (``name``, ``name-2`` …)."""
    seen: dict[str, int] = {}
    ids = []
    for path in inputs:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", case_id_for(path)).strip("._") or "case"
        count = seen.get(base, 0) + 1
        seen[base] = count
        ids.append(base if count == 1 else f"{base}-{count}")
    return ids


def vessels_for_inputs(inputs: Sequence[Path], vessels: Sequence[str], case_ids: Sequence[str],
                       option: str = "--vessels") -> list[Path | None]:
    """Pair each input with its masks (vessel masks, or a heart mask: ``option`` names the CLI option).

    ``vessels`` is empty (none given), one path (used for every input, or a template containing
    ``{case}`` replaced by each case id), or one path per input in the same order.
    """
    if not vessels:
        return [None] * len(inputs)
    if len(vessels) == 1:
        template = vessels[0]
        return [Path(template.replace("{case}", case)) for case in case_ids]
    if len(vessels) != len(inputs):
        raise InputError(f"{len(vessels)} {option} paths for {len(inputs)} inputs: give one per input "
                         "(same order), one for all, or one template containing {case}")
    return [Path(v) for v in vessels]


#: Single-file formats whose folder is not part of the input (a DICOM file's series is its folder).
_STANDALONE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def input_folders_of(paths: Sequence[Path]) -> list[Path]:
    """The folders an output must stay out of: every input folder, and the folder of every DICOM
    file given alone (its series, or its neighbours, are read from that folder)."""
    folders = []
    for path in paths:
        if path.is_dir():
            folders.append(path)
        elif path.is_file() and not path.name.lower().endswith(_STANDALONE_SUFFIXES):
            folders.append(path.parent)
    return folders


def run_cohort(
    case_ids: Sequence[str],
    run_case: Callable[[int, str], list[dict]],
    cohort_csv: Path,
) -> list[CaseOutcome]:
    """Call ``run_case(index, case_id)`` for each case; collect its CSV rows or its failure.

    ``run_case`` returns the rows this case contributes to the cohort table. User errors
    (:class:`VascalcError`) and unexpected exceptions alike are recorded and the run goes on.
    """
    outcomes = []
    for index, case_id in enumerate(case_ids):
        try:
            rows = run_case(index, case_id)
            outcomes.append(CaseOutcome(case_id, "ok", rows=tuple(rows)))
        except VascalcError as error:
            outcomes.append(CaseOutcome(case_id, "failed", error=str(error)))
        except Exception as error:  # a bug in one case must not lose the others' results
            outcomes.append(CaseOutcome(case_id, "failed", error=f"internal error: {type(error).__name__}: {error}"))
    rows = []
    for outcome in outcomes:
        if outcome.rows:
            rows += [{"case_id": outcome.case_id, "status": outcome.status, "error": "", **r} for r in outcome.rows]
        else:
            rows.append({"case_id": outcome.case_id, "status": outcome.status, "error": outcome.error})
    pd.DataFrame(rows).to_csv(cohort_csv, index=False, lineterminator="\n")
    return outcomes


@dataclass(frozen=True)
class ScoredCase:
    """One case of :func:`score_cases`: ``result`` is the ``result.json`` dict when ``ok``."""

    case_id: str
    status: str
    error: str = ""
    result: dict | None = None


def score_cases(
    inputs: Sequence[str | Path],
    masks: Sequence[str],
    output: str | Path,
    *,
    case_id_for: Callable[[Path], str],
    score: Callable[[Path, Path | None, str, Callable[[str], None]], object],
    write: Callable[[object, Path], None],
    progress: Callable[[str], None] | None = None,
    mask_option: str = "--vessels",
) -> list[ScoredCase]:
    """Score one or several scans and write their outputs (the CT and the coronary cohorts alike).

    ``score(input, mask, case_id, progress)`` returns a result with ``to_dict()`` whose ``structures``
    and ``total`` rows make the cohort table; ``write(result, folder)`` writes its files. One input:
    its files go straight into ``output`` and a user error is raised (nothing is written for a case
    that fails). Several: one subfolder per case plus ``cohort.csv`` (one row per case and structure;
    failed cases one row with the reason), and the run goes on past failures. Inputs are never
    written to; ``output`` must not exist or be empty.
    """
    paths = [Path(p) for p in inputs]
    input_folders = input_folders_of(paths) + [Path(m) for m in masks if Path(m).is_dir()]
    check_output_folder(output, input_folders)
    case_ids = unique_case_ids(paths, case_id_for)
    mask_paths = vessels_for_inputs(paths, list(masks), case_ids, mask_option)
    report = progress or (lambda message: None)

    if len(paths) == 1:
        result = score(paths[0], mask_paths[0], case_ids[0], report)
        out = prepare_output_folder(output, input_folders)
        report("writing outputs")
        write(result, out)
        return [ScoredCase(case_ids[0], "ok", result=result.to_dict())]

    out = prepare_output_folder(output, input_folders)
    results: dict[str, dict] = {}

    def run_case(index: int, case_id: str) -> list[dict]:
        report(f"case {index + 1}/{len(paths)}: {case_id}")
        result = score(paths[index], mask_paths[index], case_id, report)
        case_dir = out / case_id
        case_dir.mkdir()
        write(result, case_dir)
        data = result.to_dict()
        results[case_id] = data
        return [flatten_record(row) for row in list(data["structures"]) + [data["total"]]]

    outcomes = run_cohort(case_ids, run_case, out / "cohort.csv")
    return [ScoredCase(o.case_id, o.status, o.error, results.get(o.case_id)) for o in outcomes]
