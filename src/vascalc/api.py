"""The public Python API: what the ``vascalc`` command does, in a few lines of Python.

>>> import vascalc
>>> result = vascalc.score_ct("scan.nii.gz", "totalseg_masks/")          # doctest: +SKIP
>>> result.calcium.total.agatston_raw                                     # doctest: +SKIP
>>> vascalc.write_ct_outputs(result, vascalc.prepare_output_folder("out"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vascalc.batch import ScoredCase, score_cases
from vascalc.calcium import ScoringOptions
from vascalc.report.ct_outputs import write_ct_outputs
from vascalc.report.output_folder import prepare_output_folder
from vascalc.workflows.ct import CtResult, ProgressCallback, case_id_for, score_ct


#: One case of :func:`score_ct_cohort` (``result`` is the ``result.json`` dict when ``ok``).
CtCaseOutcome = ScoredCase


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
    def score(path: Path, masks: Path | None, case_id: str, report) -> CtResult:
        return score_ct(path, masks, vessel_names=vessel_names, case_id=case_id, progress=report, **score_options)

    return score_cases(inputs, vessels, output, case_id_for=case_id_for, score=score,
                       write=lambda result, folder: write_ct_outputs(result, folder, qc=qc), progress=progress)


__all__ = ["CtCaseOutcome", "CtResult", "ScoringOptions", "prepare_output_folder", "score_ct",
           "score_ct_cohort", "write_ct_outputs"]
