"""User-facing error types.

Every error a user can cause (bad input, impossible geometry, unusable output folder, a method that
does not apply) raises a subclass of :class:`VascalcError`. The CLI prints its message as one line
and exits non-zero; anything else is a bug and keeps its traceback.
"""


class VascalcError(Exception):
    """Base class of all errors caused by input, options or the environment, not by a bug."""

    exit_code = 2


class InputError(VascalcError):
    """An input file or folder is missing, unreadable, or not what the command needs."""


class GeometryError(VascalcError):
    """Two images do not share a grid, or a grid is not usable (zero spacing, tilt, gaps)."""


class MaskError(VascalcError):
    """A mask or label map is empty, unknown, or inconsistent with its names table."""


class MethodError(VascalcError):
    """A scoring method or parameter does not apply to this scan (e.g. 130 HU on contrast CTA)."""


class OutputError(VascalcError):
    """The output location exists and is not empty, is not writable, or lies inside an input."""


class DependencyError(VascalcError):
    """An optional dependency (PyTorch, TotalSegmentator, weights) is not installed."""
