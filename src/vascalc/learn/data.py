"""Training data for 2-D segmentation: image/mask slice pairs from PNG files or NIfTI volumes.

Pure numpy; no torch. Images are returned normalised to [0, 1] (see :func:`normalise_slices`),
masks as booleans, each slice tagged with its case and slice index so that cross-validation can
keep neighbouring slices of one case out of each other's folds (:mod:`vascalc.learn.split`).

Orientation: slices are returned as displayed radiologically (anterior up, patient right on the
image left), which is how axial PNG exports are drawn; NIfTI/DICOM volumes are flipped into that
view by :func:`to_display_view` so that a model trained on either kind applies to both.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vascalc.errors import InputError
from vascalc.imaging.grid import Grid

PNG_SUFFIXES = (".png",)
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
#: Name parts that mark the image or the mask of a pair; removed to build the pairing key.
_ROLE_TOKENS = re.compile(r"[_\-.](img|image|ct|mask|seg|label|labels|gt)$", re.IGNORECASE)

#: Normalisation modes. ``slice_minmax``: each slice scaled so its minimum is 0 and maximum 1, as
#: 8-bit PNG exports are (DeepCalc's brightest pixel is 255 on every slice; data README §3).
#: ``window``: HU clipped to ``(lo, hi)`` and scaled linearly to [0, 1].
NORMALISATIONS = ("slice_minmax", "window")


@dataclass(frozen=True, eq=False)
class SliceSet:
    """Stacked 2-D training slices.

    ``images``: float32 ``(n, h, w)`` in [0, 1] (already normalised); ``masks``: bool ``(n, h, w)``;
    ``case_ids``: the case each slice comes from (file stem prefix / volume name), used only for
    splitting, never written to a model's metadata; ``slice_index``: the slice's number within its
    case (from the PNG name, or z); ``normalisation`` and ``window_hu`` say how grey levels were
    made; ``source_format``: ``'png'`` or ``'volume'``; ``pixel_spacing_mm``: in-plane spacing of
    volume slices (None for PNG, which records none).
    """

    images: np.ndarray
    masks: np.ndarray
    case_ids: tuple[str, ...]
    slice_index: np.ndarray
    normalisation: str
    window_hu: tuple[float, float] | None
    source_format: str
    pixel_spacing_mm: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.shape != self.masks.shape or len(self.case_ids) != n or len(self.slice_index) != n:
            raise ValueError("images, masks, case_ids and slice_index must describe the same slices")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_cases(self) -> int:
        return len(set(self.case_ids))

    def describe(self) -> dict:
        """Counts only (no file or case names: they may carry patient identifiers)."""
        return {
            "source_format": self.source_format,
            "n_cases": self.n_cases,
            "n_slices": len(self),
            "n_slices_with_mask": int(self.masks.reshape(len(self), -1).any(axis=1).sum()),
            "slice_shape_px": list(self.images.shape[1:]),
            "normalisation": self.normalisation,
            "window_hu": list(self.window_hu) if self.window_hu else None,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
        }


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers numerically (``6572_9`` before ``6572_80``)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def window_hu(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """HU clipped to ``window = (lo, hi)`` (HU) and scaled linearly to float32 [0, 1]."""
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        raise InputError(f"window must be 'lo,hi' with hi > lo, got {window}")
    return ((np.clip(hu.astype(np.float32), lo, hi) - lo) / (hi - lo)).astype(np.float32)


def slice_minmax(images: np.ndarray) -> np.ndarray:
    """Each 2-D slice of ``(n, h, w)`` scaled to [0, 1] by its own minimum and maximum (flat slices → 0)."""
    images = images.astype(np.float32)
    lo = images.min(axis=(1, 2), keepdims=True)
    span = images.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (images - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def normalise_slices(values: np.ndarray, normalisation: str, window: tuple[float, float] | None) -> np.ndarray:
    """Grey levels ``(n, h, w)`` to model input in [0, 1].

    ``window`` mode clips to the HU window; ``slice_minmax`` first clips to the window when one is
    given (so that a CT at inference time resembles a PNG export of the same window), then scales
    each slice by its own range.
    """
    if normalisation == "window":
        if window is None:
            raise InputError("normalisation 'window' needs a window 'lo,hi' in HU")
        return window_hu(values, window)
    if normalisation == "slice_minmax":
        if window is not None:
            values = np.clip(values.astype(np.float32), float(window[0]), float(window[1]))
        return slice_minmax(values)
    raise InputError(f"unknown normalisation {normalisation!r}; choose one of {', '.join(NORMALISATIONS)}")


def to_display_view(array_zyx: np.ndarray, grid: Grid) -> np.ndarray:
    """Flip the in-plane axes of ``(z, y, x)`` so rows run anterior→posterior and columns patient
    right→left (radiological display). Its own inverse. Uses the dominant direction component of each
    axis, so a slightly oblique grid is treated as the nearest axial one."""
    direction = grid.direction_matrix
    # columns of the direction matrix: LPS vectors of the x (col 0) and y (col 1) index axes
    flip_x = direction[int(np.argmax(np.abs(direction[:, 0]))), 0] < 0
    flip_y = direction[int(np.argmax(np.abs(direction[:, 1]))), 1] < 0
    view = array_zyx
    if flip_y:
        view = view[:, ::-1, :]
    if flip_x:
        view = view[:, :, ::-1]
    return np.ascontiguousarray(view)


def _expand(spec: str | Path | list) -> list[Path]:
    """A folder, a glob pattern, one file, or a list of them → sorted (natural order) files."""
    if isinstance(spec, (list, tuple)):
        return sorted({p for item in spec for p in _expand(item)}, key=lambda p: natural_key(p.name))
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file()]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in glob.glob(text) if Path(p).is_file()]
        if not files:
            raise InputError(f"{text}: no such file or folder, and no file matches it as a pattern")
    return sorted(files, key=lambda p: natural_key(p.name))


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in PNG_SUFFIXES + VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def _stem(path: Path) -> str:
    suffix = _suffix(path) or path.suffix
    return path.name[: len(path.name) - len(suffix)]


def _pair_key(path: Path) -> str:
    return _ROLE_TOKENS.sub("", _stem(path))


def _role(path: Path) -> str | None:
    match = _ROLE_TOKENS.search(_stem(path))
    if not match:
        return None
    return "mask" if match.group(1).lower() in ("mask", "seg", "label", "labels", "gt") else "image"


def pair_files(images: str | Path | list, masks: str | Path | list | None = None) -> list[tuple[Path, Path]]:
    """Image/mask file pairs, in natural order of their names.

    ``images`` and ``masks`` are folders, glob patterns or files. Pairs are matched by name once the
    role part (``_img``/``_image``/``_ct`` and ``_mask``/``_seg``/``_label``/``_gt``) is removed, so
    ``6572_25_img.png`` pairs with ``6572_25_mask.png``. With ``masks=None`` both come from
    ``images`` and are told apart by that role part. Raises :class:`InputError` when a file has no
    partner or the two lists mix PNG slices with volumes.
    """
    image_files = [p for p in _expand(images) if _suffix(p)]
    if masks is None:
        mask_files = [p for p in image_files if _role(p) == "mask"]
        image_files = [p for p in image_files if _role(p) != "mask"]
    else:
        mask_files = [p for p in _expand(masks) if _suffix(p)]
        if set(mask_files) == set(image_files):  # same folder given twice
            mask_files = [p for p in image_files if _role(p) == "mask"]
            image_files = [p for p in image_files if _role(p) != "mask"]
    if not image_files:
        raise InputError(f"{images}: no image files (.png, .nii, .nii.gz, .nrrd, .mha, .mhd) found")
    if not mask_files:
        raise InputError("no mask files found: name them *_mask.png / *_seg.nii.gz, or pass --masks")
    by_key = {}
    for path in mask_files:
        key = _pair_key(path)
        if key in by_key:
            raise InputError(f"two masks for the same image: {by_key[key].name} and {path.name}")
        by_key[key] = path
    pairs, missing = [], []
    for path in image_files:
        partner = by_key.get(_pair_key(path))
        (pairs.append((path, partner)) if partner is not None else missing.append(path.name))
    if missing:
        raise InputError(f"no mask for {len(missing)} image(s), e.g. {missing[0]}; masks pair by name ('x_img.png' ↔ 'x_mask.png')")
    kinds = {_suffix(a) in PNG_SUFFIXES for a, _ in pairs} | {_suffix(b) in PNG_SUFFIXES for _, b in pairs}
    if len(kinds) > 1:
        raise InputError("images and masks mix PNG slices with volumes; train on one kind at a time")
    return pairs


def read_png_grey(path: Path) -> np.ndarray:
    """A PNG as a float32 2-D grey array: RGB(A) → mean of R, G, B (alpha ignored); 16-bit kept."""
    from PIL import Image  # Pillow comes with matplotlib

    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except OSError as error:
        raise InputError(f"{path.name}: not a readable PNG ({error})") from None
    if array.ndim == 3:
        array = array[..., :3].astype(np.float32).mean(axis=2)
    return array.astype(np.float32)


def _case_and_index(key: str, position: int) -> tuple[str, int]:
    """``'6572_25'`` → (``'6572'``, 25): the last number in the name is the slice index."""
    numbers = list(re.finditer(r"\d+", key))
    if not numbers:
        return key, position
    last = numbers[-1]
    case = (key[: last.start()] + key[last.end():]).strip("_-. ") or "case"
    return case, int(last.group())


def load_png_pairs(
    pairs: list[tuple[Path, Path]], *, window: tuple[float, float] | None = None
) -> SliceSet:
    """PNG slice pairs → :class:`SliceSet` (``slice_minmax`` normalisation; masks = pixels > 0).

    The case is the name without its last number and the slice index is that number, so
    ``6572_25_img.png`` is slice 25 of case ``6572``. ``window`` is not applied to PNG grey levels
    (they are not HU); it is recorded so that inference on a CT clips to it before scaling.
    """
    images, masks, cases, index = [], [], [], []
    for position, (image_path, mask_path) in enumerate(pairs):
        image = read_png_grey(image_path)
        grey = read_png_grey(mask_path)
        levels = np.unique(grey)
        if levels.size > 2:
            # a grey image, an anti-aliased (resized) mask or a label map given as mask: "> 0" would
            # silently turn all of it into foreground
            raise InputError(f"{mask_path.name} is not a binary mask: it holds {levels.size} grey levels "
                             f"({', '.join(f'{v:g}' for v in levels[:4])}{', …' if levels.size > 4 else ''}); give masks of 0 and one foreground value")
        mask = grey > 0
        if image.shape != mask.shape:
            raise InputError(f"{image_path.name} is {image.shape} but its mask {mask_path.name} is {mask.shape}")
        case, number = _case_and_index(_pair_key(image_path), position)
        images.append(image), masks.append(mask), cases.append(case), index.append(number)
    if len({a.shape for a in images}) > 1:
        raise InputError(f"PNG slices differ in size ({sorted({a.shape for a in images})}); use slices of one size")
    stacked = np.stack(images)
    return SliceSet(
        images=normalise_slices(stacked, "slice_minmax", None),
        masks=np.stack(masks),
        case_ids=tuple(cases),
        slice_index=np.asarray(index, dtype=np.int64),
        normalisation="slice_minmax",
        window_hu=window,
        source_format="png",
    )


def load_volume_pairs(
    pairs: list[tuple[Path, Path]],
    *,
    window: tuple[float, float] = (-200.0, 1000.0),
    mask_labels: tuple[int, ...] | None = None,
) -> SliceSet:
    """CT/mask volume pairs → every axial slice, HU windowed to [0, 1], in display view.

    ``mask_labels`` picks the label values that count as foreground (default: any non-zero), so
    one structure can be taken from a multilabel file (e.g. ``(52,)`` for TotalSegmentator's
    aorta). Each volume is one case; the slice index is z. All volumes must have the same in-plane
    size.
    """
    from vascalc.imaging import load_labelmap, load_volume
    from vascalc.imaging.image_files import read_image

    images, masks, cases, index, spacings = [], [], [], [], []
    for image_path, mask_path in pairs:
        volume = load_volume(image_path)
        raw, _, _ = read_image(mask_path)
        present = [int(v) for v in np.unique(raw) if v != 0]
        if mask_labels is None and len(present) > 1:
            # a multilabel file: "any non-zero" would merge every structure into one foreground
            raise InputError(f"{mask_path.name} holds {len(present)} labels ({', '.join(map(str, present[:5]))}"
                             f"{', …' if len(present) > 5 else ''}); pick the structure with --mask-labels "
                             "(e.g. 52 for TotalSegmentator's aorta)")
        # generic names: only the ids matter here, and load_labelmap brings the mask onto the CT grid
        labels = load_labelmap(mask_path, volume.grid, names={v: f"label_{v}" for v in present}).labels
        mask = (labels != 0) if mask_labels is None else np.isin(labels, list(mask_labels))
        hu = to_display_view(volume.hu, volume.grid)
        images.append(window_hu(hu, window))
        masks.append(to_display_view(mask.astype(bool), volume.grid))
        cases += [_pair_key(image_path)] * hu.shape[0]
        index.append(np.arange(hu.shape[0]))
        spacings.append(volume.grid.spacing_mm[1:])
    if len({a.shape[1:] for a in images}) > 1:
        raise InputError(f"volumes differ in slice size ({sorted({a.shape[1:] for a in images})}); resample them to one size")
    spacing = tuple(float(v) for v in np.median(np.asarray(spacings), axis=0))
    return SliceSet(
        images=np.concatenate(images),
        masks=np.concatenate(masks),
        case_ids=tuple(cases),
        slice_index=np.concatenate(index).astype(np.int64),
        normalisation="window",
        window_hu=(float(window[0]), float(window[1])),
        source_format="volume",
        pixel_spacing_mm=(spacing[0], spacing[1]),
    )


def load_slices(
    images: str | Path | list,
    masks: str | Path | list | None = None,
    *,
    window: tuple[float, float] | None = None,
    mask_labels: tuple[int, ...] | None = None,
) -> SliceSet:
    """PNG slices or CT volumes with their masks (see :func:`pair_files`) as one :class:`SliceSet`.

    ``window`` (HU): for volumes the training window (default -200..1000 HU); for PNG slices the
    window applied to a CT before per-slice scaling when the model is later used on a CT
    (default -1000..3000 HU: air black, the brightest tissue white, as the PNG exports are).
    """
    pairs = pair_files(images, masks)
    if _suffix(pairs[0][0]) in PNG_SUFFIXES:
        if mask_labels is not None:
            raise InputError("mask labels select structures in multilabel volumes; PNG masks are binary")
        return load_png_pairs(pairs, window=window or (-1000.0, 3000.0))
    return load_volume_pairs(pairs, window=window or (-200.0, 1000.0), mask_labels=mask_labels)
