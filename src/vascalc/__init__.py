"""vascalc: automatic, reproducible measurement of arterial calcification.

The public API lives here; the ``vascalc`` command calls exactly these functions::

    import vascalc
    result = vascalc.score_ct("scan.nii.gz", "totalseg_masks/", method="agatston")
    print(result.calcium.total.agatston_raw, result.calcium.total.calcium_volume_mm3)
    vascalc.write_ct_outputs(result, vascalc.prepare_output_folder("out"))

Names are imported on first use, so that ``import vascalc.stats`` (say) does not pull in the CT
readers and plotting libraries.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vascalc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

_API = {
    "CtCaseOutcome": "vascalc.api",
    "CtResult": "vascalc.api",
    "ScoringOptions": "vascalc.api",
    "prepare_output_folder": "vascalc.api",
    "score_ct": "vascalc.api",
    "score_ct_cohort": "vascalc.api",
    "write_ct_outputs": "vascalc.api",
    "CoronaryOptions": "vascalc.coronary.options",
    "CoronaryResult": "vascalc.coronary.results",
    "score_coronary": "vascalc.workflows.coronary",
    "score_coronary_cohort": "vascalc.workflows.coronary",
    "write_coronary_outputs": "vascalc.coronary.outputs",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'vascalc' has no attribute {name!r}")
