"""The ``vascalc`` command: parses arguments, calls the public API, prints. No logic of its own."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from vascalc import __version__
from vascalc.errors import VascalcError

app = typer.Typer(
    name="vascalc",
    help="Measure arterial calcification in CT, CTA and radiographs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
error_console = Console(stderr=True)


def _version_callback(value: bool) -> None:
    if value:
        print(f"vascalc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """vascalc: automatic, reproducible arterial calcium scoring."""


def _register() -> None:
    from vascalc.cli import bench, ct, demo, phantom, stats, train, xray

    app.command("demo")(demo.demo)
    app.add_typer(ct.app, name="ct")
    app.add_typer(phantom.app, name="phantom", help="Digital phantoms with exact calcium truth.")
    app.add_typer(stats.app, name="stats", help="Agreement statistics: the tables of a validation study.")
    app.add_typer(train.app, name="train", help="Train segmentation models (needs the [learn] extra).")
    app.add_typer(bench.app, name="bench", help="Accuracy and segmentation benchmarks against truth.")
    app.add_typer(xray.app, name="xray", help="Abdominal aortic calcification (Kauppila AAC-24) on lateral radiographs.")
    from vascalc.cli import coronary

    app.add_typer(coronary.app, name="coronary", help="Coronary calcium per artery (RCA, LAD, LCX) on chest CT.")


_register()


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback.

    Usage errors (unknown option, missing argument) are reported by Typer itself with exit code 2.
    """
    try:
        app(prog_name="vascalc")
    except VascalcError as error:
        error_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
    except Exception as error:  # a bug, not a user error: one line, the traceback only when asked for
        import os

        if os.environ.get("VASCALC_DEBUG"):
            raise
        error_console.print(f"[bold red]internal error:[/] {escape(type(error).__name__)}: {escape(str(error))} "
                            "(a bug in vascalc; rerun with VASCALC_DEBUG=1 for the traceback and report it)",
                            highlight=False, soft_wrap=True)
        sys.exit(1)
