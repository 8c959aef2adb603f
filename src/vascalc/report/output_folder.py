"""Safe output folders: never overwrite, never write into an input."""

from __future__ import annotations

import os
from pathlib import Path

from vascalc.errors import OutputError


def check_output_folder(out_dir: Path | str, inputs: list[Path | str] = ()) -> Path:
    """Check, without creating anything, that ``out_dir`` may receive results; return it resolved.

    Refuses, with :class:`OutputError`, a folder that holds files, a path that is a file, a folder
    that cannot be written, and any folder inside (or equal to) an input folder, so that a run never
    loses or mixes results and never writes into the source images' folders.
    """
    out = Path(out_dir).expanduser().resolve()
    for source in inputs:
        source_dir = Path(source).expanduser().resolve()
        if source_dir.is_dir() and (out == source_dir or source_dir in out.parents):
            raise OutputError(f"output folder {out} lies inside the input folder {source_dir}; "
                              "choose an output folder outside the inputs")
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"output path {out} exists and is a file; give a folder that does not exist or is empty")
        if any(out.iterdir()):
            raise OutputError(f"output folder {out} is not empty; give a new or empty folder (nothing is overwritten)")
        if not os.access(out, os.W_OK):
            raise OutputError(f"output folder {out} is not writable")
    else:
        parent = next((p for p in out.parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
            raise OutputError(f"cannot create output folder {out}: {parent} is not a writable folder")
    return out


def prepare_output_folder(out_dir: Path | str, inputs: list[Path | str] = ()) -> Path:
    """:func:`check_output_folder`, then create the folder; returns it resolved."""
    out = check_output_folder(out_dir, inputs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create output folder {out}: {error.strerror or error}") from None
    return out
