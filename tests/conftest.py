"""Shared test fixtures: where the real sample data lives (``../shared/data`` beside the repository)."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real CT samples; tests that need them are skipped when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def vascalc_cli(monkeypatch, capsys):
    """Run the ``vascalc`` entry point in-process: ``run(*argv) -> (exit code, stdout, non-blank stderr lines)``."""
    import sys

    import vascalc.cli as cli

    def run(*argv: str) -> tuple[int, str, list[str]]:
        monkeypatch.delenv("VASCALC_DEBUG", raising=False)
        monkeypatch.setattr(sys, "argv", ["vascalc", *argv])
        code = 0
        try:
            cli.main()
        except SystemExit as stop:
            code = stop.code or 0
        captured = capsys.readouterr()
        return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]

    return run
