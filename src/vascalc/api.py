"""The public Python API: what the ``vascalc`` command does, in a few lines of Python.

>>> import vascalc
>>> result = vascalc.score_ct("scan.nii.gz", "totalseg_masks/")          # doctest: +SKIP
>>> result.calcium.total.agatston_raw                                     # doctest: +SKIP
>>> vascalc.write_ct_outputs(result, vascalc.prepare_output_folder("out"))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vascalc.batch import run_cohort, unique_case_ids, vessels_for_inputs
from vascalc.calcium import ScoringOptions
from vascalc.report.ct_outputs import write_ct_outputs
from vascalc.report.output_folder import check_output_folder, prepare_output_folder
from vascalc.report.tables import flatten_record
from vascalc.workflows.ct import CtResult, ProgressCallback, case_id_for, score_ct


@dataclass(frozen=True)
class CtCaseOutcome:
    """One case of :func:`score_ct_cohort`: ``result`` is the ``result.json`` dict when ``ok``."""

    case_id: str
    status: str
    error: str = ""
    result: dict | None = None


def score_ct_cohort(
    inputs: Sequence[str | Path],
    output: str | Path,
    *,
    vessels: Sequence[str],
    vessel_names=None,
    qc: bool = True,
    progress: ProgressCallback | None = None,
    **score_options,
) -> list[CtCaseOutcome]:
    """Score one or several CTs and write their outputs.

    One input: its files go straight into ``output`` and a user error is raised (nothing is written
    for a case that fails). Several inputs: one subfolder per case plus ``cohort.csv`` (one row per
    case and structure; failed cases get one row with the reason) and the run goes on past failures.
    Inputs are never written to; ``output`` must not exist or be empty.
    """
    inputs = [Path(p) for p in inputs]
    input_folders = [p for p in inputs if p.is_dir()] + [Path(v) for v in vessels if Path(v).is_dir()]
    check_output_folder(output, input_folders)
    case_ids = unique_case_ids(inputs, case_id_for)
    vessel_paths = vessels_for_inputs(inputs, list(vessels), case_ids)
    report = progress or (lambda message: None)

    def run_one(index: int) -> CtResult:
        return score_ct(inputs[index], vessel_paths[index], vessel_names=vessel_names,
                        case_id=case_ids[index], progress=report, **score_options)

    if len(inputs) == 1:
        result = run_one(0)
        out = prepare_output_folder(output, input_folders)
        report("writing outputs")
        write_ct_outputs(result, out, qc=qc)
        return [CtCaseOutcome(case_ids[0], "ok", result=result.to_dict())]

    out = prepare_output_folder(output, input_folders)
    results: dict[str, dict] = {}

    def run_case(index: int, case_id: str) -> list[dict]:
        report(f"case {index + 1}/{len(inputs)}: {case_id}")
        result = run_one(index)
        case_dir = out / case_id
        case_dir.mkdir()
        write_ct_outputs(result, case_dir, qc=qc)
        data = result.to_dict()
        results[case_id] = data
        return [flatten_record(row) for row in list(data["structures"]) + [data["total"]]]

    outcomes = run_cohort(case_ids, run_case, out / "cohort.csv")
    return [CtCaseOutcome(o.case_id, o.status, o.error, results.get(o.case_id)) for o in outcomes]


__all__ = ["CtCaseOutcome", "CtResult", "ScoringOptions", "prepare_output_folder", "score_ct",
           "score_ct_cohort", "write_ct_outputs"]
