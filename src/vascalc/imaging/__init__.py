"""Images in and out: the :class:`Volume`, :class:`LabelMap` and :class:`Grid` types and their readers."""

from vascalc.imaging.grid import Grid
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import ScanInfo, Volume

__all__ = ["Grid", "LabelMap", "ScanInfo", "Volume"]
