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


def vessels_for_inputs(inputs: Sequence[Path], vessels: Sequence[str], case_ids: Sequence[str]) -> list[Path | None]:
    """Pair each input with its vessel masks.

    ``vessels`` is empty (none given), one path (used for every input, or a template containing
    ``{case}`` replaced by each case id), or one path per input in the same order.
    """
    if not vessels:
        return [None] * len(inputs)
    if len(vessels) == 1:
        template = vessels[0]
        return [Path(template.replace("{case}", case)) for case in case_ids]
    if len(vessels) != len(inputs):
        raise InputError(f"{len(vessels)} --vessels paths for {len(inputs)} inputs: give one per input "
                         "(same order), one for all, or one template containing {case}")
    return [Path(v) for v in vessels]


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
