"""Label maps: integer masks with a table of canonical structure names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vascalc.errors import MaskError
from vascalc.imaging.grid import Grid


@dataclass(frozen=True, eq=False)
class LabelMap:
    """An integer label array ``(z, y, x)`` on a :class:`Grid`, with ``{id: canonical_name}``.

    Canonical names follow TotalSegmentator's (``aorta``, ``iliac_artery_left``, ``vertebrae_L1``,
    ``heart`` …). Label 0 is background. ``uncertain_slices`` optionally lists, per structure, the
    slice indices where a segmenter had too little evidence to trust its mask. A name whose mask
    is empty is an *absent* structure: known, looked for, not found (see :meth:`absent_names`).
    ``load_notes`` says how the map was brought onto its grid (reoriented, resampled).
    """

    labels: np.ndarray
    grid: Grid
    names: dict[int, str]
    uncertain_slices: dict[str, tuple[int, ...]] = field(default_factory=dict)
    load_notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if tuple(self.labels.shape) != tuple(self.grid.shape):
            raise ValueError(f"label shape {self.labels.shape} does not match grid {self.grid.shape}")
        if 0 in self.names:
            raise MaskError("label 0 is background and cannot carry a structure name")

    @property
    def ids_by_name(self) -> dict[str, int]:
        return {name: label for label, name in self.names.items()}

    def has(self, name: str) -> bool:
        return name in self.ids_by_name

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of one structure; raises :class:`MaskError` if the name is unknown."""
        ids = self.ids_by_name
        if name not in ids:
            raise MaskError(f"no structure named {name!r}; known: {', '.join(sorted(ids)) or 'none'}")
        return self.labels == ids[name]

    def present_names(self) -> list[str]:
        """Names whose mask has at least one voxel, in label-id order."""
        present = set(np.unique(self.labels).tolist())
        return [self.names[i] for i in sorted(self.names) if i in present]

    def absent_names(self) -> list[str]:
        """Names in the table whose mask is empty, in label-id order."""
        present = set(self.present_names())
        return [self.names[i] for i in sorted(self.names) if self.names[i] not in present]

    def voxel_counts(self) -> dict[str, int]:
        """Voxel count of every named structure (0 for absent ones), in label-id order."""
        counts = np.bincount(self.labels.ravel().astype(np.int64), minlength=max(self.names, default=0) + 1)
        return {self.names[i]: int(counts[i]) for i in sorted(self.names)}

    def subset(self, names: list[str]) -> "LabelMap":
        """A label map holding only ``names`` (ids kept)."""
        ids = self.ids_by_name
        keep = {ids[n]: n for n in names if n in ids}
        labels = np.where(np.isin(self.labels, list(keep)), self.labels, 0).astype(self.labels.dtype)
        uncertain = {n: s for n, s in self.uncertain_slices.items() if n in names}
        return LabelMap(
            labels=labels, grid=self.grid, names=keep, uncertain_slices=uncertain, load_notes=self.load_notes
        )
