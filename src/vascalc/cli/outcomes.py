"""How a scoring command ends: each case's summary or failure, one closing line, the exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import typer
from rich.console import Console
from rich.markup import escape

from vascalc.batch import ScoredCase


def finish_cases(outcomes: Sequence[ScoredCase], output: Path, console: Console,
                 print_summary: Callable[[Console, dict], None]) -> None:
    """Print every case (summary on stdout, failures on ``console``) and exit non-zero when all failed:
    2 for a single case (a user error), 1 for a cohort in which every case failed."""
    out = Console()
    for outcome in outcomes:
        if outcome.status == "ok" and outcome.result is not None:
            print_summary(out, outcome.result)
        else:
            console.print(f"[red]{outcome.case_id}: failed[/]: {escape(outcome.error)}", highlight=False)
    failed = [o for o in outcomes if o.status != "ok"]
    console.print(f"results in {output}" + (f" ({len(failed)} of {len(outcomes)} failed)" if failed else ""))
    if len(failed) == len(outcomes):
        raise typer.Exit(code=1 if len(outcomes) > 1 else 2)
