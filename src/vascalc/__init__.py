"""vascalc: automatic, reproducible measurement of arterial calcification.

The public API lives here; the ``vascalc`` command calls exactly these functions.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vascalc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
