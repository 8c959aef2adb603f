"""Quality-control images of a CT calcium result, for a radiologist to check at a glance.

Three PNG files, modelled on Comp2Comp's QC figures:

``qc_coronal_mip.png``, ``qc_sagittal_mip.png``
    Maximum-intensity projections (window −200…1000 HU) of a box around the vessels. A plain MIP of
    the body is dominated by the spine and pelvis, which hide the aortic wall, so the projection is
    split in two: *inside* the projected vessel region (the vessel masks dilated by
    :data:`VESSEL_HALO_MM` in-plane, plus every calcium lesion) the image is the MIP of those voxels
    only, at full brightness — wall calcium stands out, bone behind it does not; *outside* that
    region the plain MIP of the box is shown dimmed (× :data:`CONTEXT_DIM`) as anatomical context
    (vertebral levels, pelvis). Each vessel's projected outline is drawn in its own colour (legend
    on the right) just outside its silhouette, so the outline never covers the wall; detected
    calcium is painted red (70 % opacity) on top. Pixels are square in millimetres whatever the
    voxel spacing, so 3 mm slices are not squashed; a scale bar gives the size.
``qc_axial_mosaic.png``
    The ``max_mosaic_slices`` axial slices with the most calcium voxels (all calcified slices if
    fewer; if there is no calcium, slices spread evenly through the vessels), ordered head to feet,
    each cropped to the same field of view around that slice's vessels (so every tile has the same
    scale), in a soft-tissue window suited to calcium (W 800 / L 200 HU, −200…600), with the
    vessel outlines and the calcium in red. Each tile is labelled with its stored slice index, the
    LPS z position of the tile centre in mm and its number of calcium voxels.

Orientation is anatomical whatever the storage order: images are shown head up, patient right on
the image left (radiological convention), anterior up on axial slices and anterior on the left of
the sagittal view. The storage axes are mapped to the nearest patient axes (the grid's
:meth:`~vascalc.imaging.Grid.axis_codes`); an oblique grid is shown on its nearest axes, unresampled.

Only the caller's ``title`` is written into the images; it must never carry a patient identifier.
The same inputs give byte-identical files (Agg backend, fixed size and dpi, no PNG software/date
metadata). Work is done on a crop around the vessels and lesions, with vectorised numpy/scipy.

The pure part, :func:`render_ct_qc_panels`, returns the image arrays (``uint8`` RGB) so that they
can be tested or embedded elsewhere; :func:`write_ct_qc` lays them out, pixel for pixel, in the
PNG files (the MIP panel's top-left corner lies at :data:`PANEL_OFFSET_PX`; the mosaic tiles at
:func:`mosaic_tile_offsets_px`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from vascalc.errors import GeometryError, InputError, OutputError
from vascalc.imaging.grid import Grid

#: MIP display window in HU (bone/calcium window, W 1200 / L 400).
WINDOW_MIP_HU = (-200.0, 1000.0)
#: Axial display window in HU (W 800 / L 200): soft tissue stays grey, calcium is bright.
WINDOW_AXIAL_HU = (-200.0, 600.0)
#: In-plane dilation of the vessel masks that defines the projected vessel region (mm).
VESSEL_HALO_MM = 3.0
#: Margin around the vessels (and lesions) of the box shown in the MIPs (mm), in-plane / along z.
CROP_MARGIN_MM = 25.0
CROP_MARGIN_Z_MM = 10.0
#: Brightness factor of the context outside the vessel region in the MIPs.
CONTEXT_DIM = 0.45
#: Calcium overlay colour and opacity.
CALCIUM_RGB = (255, 0, 0)
CALCIUM_ALPHA = 0.7
#: Vessel outline colours, in label order; none of them is close to the calcium red.
VESSEL_PALETTE = (
    (0, 200, 255), (255, 215, 0), (60, 220, 60), (200, 110, 255), (255, 120, 200),
    (255, 175, 90), (0, 120, 255), (0, 255, 190), (190, 170, 255), (170, 255, 120),
)
#: Outline thickness in display pixels.
OUTLINE_PX = 2
#: Longest side of a MIP panel is scaled into this range of pixels.
PANEL_PX_RANGE = (420, 760)
#: Side of an axial mosaic tile (pixels), the margin around its vessels and its smallest field of view (mm).
TILE_PX = 240
TILE_MARGIN_MM = 15.0
TILE_MIN_FOV_MM = 60.0

_DPI = 100
_TITLE_H = 56          # title band above everything (px)
_PAD = 26              # band around a MIP panel holding the orientation letters (px)
_BOTTOM_H = _PAD + 30  # band below a MIP panel: orientation letter, then the scale bar (px)
_LEGEND_W = 200        # legend column on the right (px)
_MIN_FIG_W = 660
_TILE_LABEL_H = 20     # label band above each mosaic tile (px)
_TILE_GAP = 8
_MOSAIC_COLS = 4

#: (row, column) of the top-left pixel of the MIP panel in ``qc_coronal_mip.png`` / ``qc_sagittal_mip.png``.
PANEL_OFFSET_PX = (_TITLE_H + _PAD, _PAD)


@dataclass(frozen=True)
class DisplayOrientation:
    """How a stored ``(z, y, x)`` array maps onto display axes (superior→inferior, anterior→posterior,
    right→left): display axis ``c`` is stored axis ``axes[c]``, reversed when ``flips[c]``."""

    axes: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    spacing_mm: tuple[float, float, float]

    def to_display(self, array: np.ndarray) -> np.ndarray:
        """A view of ``array`` in display order (no copy)."""
        view = np.transpose(array, self.axes)
        return view[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def stored_index(self, display_index: tuple[int, int, int], shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The stored ``(z, y, x)`` index of a display index, for a stored array of ``shape``."""
        stored = [0, 0, 0]
        for c, (axis, flip) in enumerate(zip(self.axes, self.flips)):
            n = shape[axis]
            stored[axis] = n - 1 - display_index[c] if flip else display_index[c]
        return (stored[0], stored[1], stored[2])


def display_orientation(grid: Grid) -> DisplayOrientation:
    """Map the grid's storage axes to the display axes (S→I, A→P, R→L) by their nearest LPS axis.

    LPS: +x points to the patient's left, +y posterior, +z superior, so the display axes are
    −z, +y and +x. Raises :class:`GeometryError` when two storage axes share one patient axis
    (a grid tilted by about 45°), which cannot be shown without resampling.
    """
    direction = grid.direction_matrix
    want_component = (2, 1, 0)
    want_sign = (-1.0, 1.0, 1.0)
    axes: list[int] = []
    flips: list[bool] = []
    for component, sign in zip(want_component, want_sign):
        # stored array axis a (z, y, x) runs along direction column 2 - a (i, j, k order)
        weights = [abs(direction[component, 2 - a]) for a in range(3)]
        axis = int(np.argmax(weights))
        axes.append(axis)
        flips.append(bool(np.sign(direction[component, 2 - axis]) != sign))
    if sorted(axes) != [0, 1, 2]:
        raise GeometryError(f"the grid direction {grid.direction} is too oblique to display; "
                            "resample the scan to axis-aligned slices first")
    spacing = tuple(float(grid.spacing_mm[a]) for a in axes)
    return DisplayOrientation(axes=(axes[0], axes[1], axes[2]), flips=(flips[0], flips[1], flips[2]),
                              spacing_mm=(spacing[0], spacing[1], spacing[2]))


@dataclass(frozen=True)
class AxialTile:
    """One mosaic tile: RGB image, its slice and position, and how much calcium it holds."""

    rgb: np.ndarray
    stored_slice_index: int
    stored_axis: int
    z_lps_mm: float
    calcium_voxel_count: int


@dataclass(frozen=True)
class QcPanels:
    """The QC images as ``uint8`` RGB arrays ``(rows, cols, 3)``, before layout.

    ``mip_pixel_mm`` is the (square) pixel size of both MIP panels and ``tile_pixel_mm`` that of
    every axial tile; ``colours`` maps each vessel label shown to its outline colour.
    """

    coronal_rgb: np.ndarray
    sagittal_rgb: np.ndarray
    axial_tiles: tuple[AxialTile, ...]
    mip_pixel_mm: float
    tile_pixel_mm: float
    colours: dict[int, tuple[int, int, int]]
    names: dict[int, str]
    has_vessels: bool


# --------------------------------------------------------------------------------------------- core

def _bbox(mask_any_axes: list[np.ndarray]) -> list[tuple[int, int]] | None:
    """Inclusive-exclusive ranges from per-axis 'any' profiles, or None if empty."""
    ranges = []
    for profile in mask_any_axes:
        idx = np.flatnonzero(profile)
        if idx.size == 0:
            return None
        ranges.append((int(idx[0]), int(idx[-1]) + 1))
    return ranges


def _display_box(stored_boxes: list[tuple[slice, ...]], orient: DisplayOrientation,
                 shape: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """Union of stored-index boxes (from :func:`scipy.ndimage.find_objects`) as display ranges."""
    if not stored_boxes:
        return None
    ranges = []
    for axis, flip in zip(orient.axes, orient.flips):
        start = min(b[axis].start for b in stored_boxes)
        stop = max(b[axis].stop for b in stored_boxes)
        n = shape[axis]
        ranges.append((n - stop, n - start) if flip else (start, stop))
    return ranges


def _profiles(mask: np.ndarray) -> list[np.ndarray]:
    """Per-axis 'any' profiles of a 3-D boolean mask in two passes over the data."""
    zy = mask.any(axis=2)
    return [zy.any(axis=1), zy.any(axis=0), mask.any(axis=(0, 1))]


def _window(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return np.clip((np.asarray(hu, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)


def _resample_grey(img: np.ndarray, row_coords: np.ndarray, col_coords: np.ndarray, cval: float) -> np.ndarray:
    """Bilinear samples of a 2-D image at the outer product of fractional row/column coordinates."""
    rr, cc = np.meshgrid(row_coords, col_coords, indexing="ij")
    return ndimage.map_coordinates(np.asarray(img, dtype=np.float32), [rr, cc], order=1,
                                   mode="constant" if np.isfinite(cval) else "nearest",
                                   cval=cval if np.isfinite(cval) else 0.0)


def _resample_nearest(img: np.ndarray, row_coords: np.ndarray, col_coords: np.ndarray, fill=0) -> np.ndarray:
    """Nearest-neighbour samples; coordinates outside the image give ``fill``."""
    ri = np.floor(row_coords + 0.5).astype(np.int64)
    ci = np.floor(col_coords + 0.5).astype(np.int64)
    r_ok = (ri >= 0) & (ri < img.shape[0])
    c_ok = (ci >= 0) & (ci < img.shape[1])
    out = img[np.ix_(np.clip(ri, 0, img.shape[0] - 1), np.clip(ci, 0, img.shape[1] - 1))]
    if not (r_ok.all() and c_ok.all()):
        out = np.where(np.outer(r_ok, c_ok), out, fill)
    return out


def _compose(grey: np.ndarray, silhouettes: dict[int, np.ndarray], colours: dict[int, tuple[int, int, int]],
             calcium: np.ndarray) -> np.ndarray:
    """Grey image [0, 1] + vessel outlines (drawn outside each silhouette) + red calcium → RGB uint8."""
    rgb = np.repeat(np.round(grey * 255.0).astype(np.uint8)[..., None], 3, axis=2)
    for label in sorted(silhouettes):
        sil = silhouettes[label]
        if not sil.any():
            continue
        ring = ndimage.binary_dilation(sil, iterations=OUTLINE_PX) & ~sil
        rgb[ring] = colours[label]
    if calcium.any():
        base = rgb[calcium].astype(np.float32)
        rgb[calcium] = np.round((1.0 - CALCIUM_ALPHA) * base
                                + CALCIUM_ALPHA * np.asarray(CALCIUM_RGB, dtype=np.float32)).astype(np.uint8)
    return rgb


def _panel_coords(n: int, spacing_mm: float, pixel_mm: float) -> np.ndarray:
    """Fractional source indices of the display pixel centres along one axis."""
    extent_mm = n * spacing_mm
    m = max(1, int(round(extent_mm / pixel_mm)))
    return (np.arange(m) + 0.5) * (extent_mm / m) / spacing_mm - 0.5


def _label_silhouettes(labels: np.ndarray, axis: int, objects: list) -> dict[int, np.ndarray]:
    """Projection (any along ``axis``) of each label, computed within its bounding box from
    :func:`scipy.ndimage.find_objects` (``objects``)."""
    out: dict[int, np.ndarray] = {}
    plane_shape = tuple(s for a, s in enumerate(labels.shape) if a != axis)
    for index, box in enumerate(objects):
        if box is None:
            continue
        label = index + 1
        proj = np.zeros(plane_shape, dtype=bool)
        plane_box = tuple(s for a, s in enumerate(box) if a != axis)
        proj[plane_box] = (labels[box] == label).any(axis=axis)
        out[label] = proj
    return out


def _mosaic_slices(lesion_labels: np.ndarray, counts: np.ndarray, n_max: int) -> np.ndarray:
    """Slices for the axial mosaic: first the most calcified slice of each lesion (largest lesions
    first), so that every lesion is seen before any lesion gets a second tile, then the remaining
    slices by calcium count. Returned in stored order."""
    ids = np.unique(lesion_labels[lesion_labels != 0])
    z_of = np.nonzero(lesion_labels != 0)[0]
    lab_of = lesion_labels[lesion_labels != 0]
    picked: list[int] = []
    if ids.size:
        per_slice = np.zeros((ids.size, lesion_labels.shape[0]), dtype=np.int64)
        np.add.at(per_slice, (np.searchsorted(ids, lab_of), z_of), 1)
        for row in np.argsort(-per_slice.sum(axis=1), kind="stable"):
            best = int(np.argmax(per_slice[row]))
            if best not in picked:
                picked.append(best)
            if len(picked) == n_max:
                break
    calcified = np.flatnonzero(counts)
    for z in calcified[np.argsort(-counts[calcified], kind="stable")]:
        if len(picked) >= n_max:
            break
        if int(z) not in picked:
            picked.append(int(z))
    return np.sort(np.asarray(picked[:n_max], dtype=int))


def render_ct_qc_panels(hu: np.ndarray, grid: Grid, vessels: np.ndarray, vessel_names: dict[int, str],
                        lesions: np.ndarray, max_mosaic_slices: int = 12) -> QcPanels:
    """Render the coronal and sagittal MIP panels and the axial mosaic tiles (see module docstring).

    Parameters: ``hu`` HU array ``(z, y, x)``; ``grid`` its geometry; ``vessels`` integer vessel
    labels (0 = background) named by ``vessel_names`` (other labels are ignored); ``lesions``
    integer calcium lesion labels (0 = none) on the same grid; ``max_mosaic_slices`` the most
    axial tiles. Raises :class:`GeometryError` if an array does not match ``grid`` or the grid is
    too oblique to display, :class:`InputError` for a non-integer vessel map.
    """
    shape = tuple(int(s) for s in grid.shape)
    for name, arr in (("HU volume", hu), ("vessel label map", vessels), ("lesion label map", lesions)):
        if tuple(arr.shape) != shape:
            raise GeometryError(f"the {name} has shape {tuple(arr.shape)} but the grid is {shape}; "
                                "pass arrays on the scan's grid")
    if max_mosaic_slices < 1:
        raise InputError(f"max_mosaic_slices must be at least 1, got {max_mosaic_slices}")
    if not np.issubdtype(vessels.dtype, np.integer) and vessels.dtype != bool:
        raise InputError("the vessel label map must hold integer labels")
    orient = display_orientation(grid)
    s0, s1, s2 = orient.spacing_mm
    hu_d = orient.to_display(hu)
    ves_d = orient.to_display(vessels)
    les_d = orient.to_display(lesions)
    dshape = hu_d.shape

    # one pass over the stored labels gives every structure's box; labels without a name are not
    # vessels to show (e.g. vertebrae in a TotalSegmentator map) and are ignored
    stored_objects = ndimage.find_objects(vessels.view(np.uint8) if vessels.dtype == bool else vessels)
    name_of = {int(k): str(v) for k, v in vessel_names.items()}
    named = set(name_of)
    ids = [i + 1 for i, box in enumerate(stored_objects) if box is not None and i + 1 in named]
    unnamed_present = any(box is not None and i + 1 not in named for i, box in enumerate(stored_objects))
    ves_box = _display_box([stored_objects[i - 1] for i in ids], orient, shape)
    les_mask = les_d != 0
    les_box = _bbox(_profiles(les_mask))
    has_vessels = ves_box is not None
    boxes = [b for b in (ves_box, les_box) if b is not None]
    if boxes:
        margins = (CROP_MARGIN_Z_MM / s0, CROP_MARGIN_MM / s1, CROP_MARGIN_MM / s2)
        crop = tuple(slice(max(0, min(b[a][0] for b in boxes) - int(math.ceil(margins[a]))),
                           min(dshape[a], max(b[a][1] for b in boxes) + int(math.ceil(margins[a]))))
                     for a in range(3))
    else:
        crop = (slice(0, dshape[0]), slice(0, dshape[1]), slice(0, dshape[2]))
    hu_c = np.ascontiguousarray(hu_d[crop])
    ves_c = np.ascontiguousarray(ves_d[crop]).astype(np.int32, copy=False)
    if unnamed_present:
        ves_c = np.where(np.isin(ves_c, ids), ves_c, 0).astype(np.int32)
    les_c = np.ascontiguousarray(les_mask[crop])
    objects = ndimage.find_objects(ves_c)
    # colours by rank among the vessels shown: neighbouring ranks get the most distinct colours
    colours = {label: VESSEL_PALETTE[rank % len(VESSEL_PALETTE)] for rank, label in enumerate(ids)}
    names = {label: name_of[label] for label in ids}

    # -- MIPs: vessel-region MIP at full brightness over the dimmed plain MIP of the box
    if boxes:
        halo = (1, 2 * int(math.ceil(VESSEL_HALO_MM / s1)) + 1, 2 * int(math.ceil(VESSEL_HALO_MM / s2)) + 1)
        region = ndimage.maximum_filter((ves_c != 0).view(np.uint8), size=halo).astype(bool) | les_c
        floor = np.iinfo(hu_c.dtype).min if np.issubdtype(hu_c.dtype, np.integer) else -np.inf
        focus = np.where(region, hu_c, floor)
    extent = (hu_c.shape[0] * s0, hu_c.shape[1] * s1, hu_c.shape[2] * s2)
    longest_mm = max(extent)
    n_native = longest_mm / min(s0, s1, s2)
    pixel_mm = longest_mm / float(np.clip(n_native, *PANEL_PX_RANGE))
    panels = []
    for axis, col_spacing in ((1, s2), (2, s1)):  # coronal: project A-P; sagittal: project R-L
        plain = _window(hu_c.max(axis=axis), WINDOW_MIP_HU)
        if boxes:
            inside = region.any(axis=axis)
            grey = np.where(inside, _window(focus.max(axis=axis), WINDOW_MIP_HU), CONTEXT_DIM * plain)
        else:
            grey = plain
        rows = _panel_coords(grey.shape[0], s0, pixel_mm)
        cols = _panel_coords(grey.shape[1], col_spacing, pixel_mm)
        grey_px = np.clip(_resample_grey(grey, rows, cols, cval=np.nan), 0.0, 1.0)
        sil = {k: _resample_nearest(v, rows, cols, False)
               for k, v in _label_silhouettes(ves_c, axis, objects).items()}
        calc = _resample_nearest(les_c.any(axis=axis), rows, cols, False)
        panels.append(_compose(grey_px, sil, colours, calc))

    # -- axial mosaic
    counts = np.count_nonzero(les_c, axis=(1, 2))
    if counts.any():
        chosen = _mosaic_slices(np.asarray(les_d[crop]), counts, max_mosaic_slices)
    else:
        z_with = np.flatnonzero((ves_c != 0).any(axis=(1, 2))) if has_vessels else np.arange(hu_c.shape[0])
        n = min(max_mosaic_slices, z_with.size)
        chosen = z_with[np.unique(np.round(np.linspace(0, z_with.size - 1, n)).astype(int))]
    roi_c = (ves_c != 0) | les_c
    centres = []
    half_extent_mm = TILE_MIN_FOV_MM / 2.0 - TILE_MARGIN_MM
    fallback = ((hu_c.shape[1] - 1) / 2.0, (hu_c.shape[2] - 1) / 2.0)
    for k in chosen:
        r, c = np.nonzero(roi_c[k])
        if r.size:
            centre = ((r.min() + r.max()) / 2.0, (c.min() + c.max()) / 2.0)
            half_extent_mm = max(half_extent_mm, (r.max() - r.min() + 1) * s1 / 2.0, (c.max() - c.min() + 1) * s2 / 2.0)
        elif has_vessels or les_box is not None:
            rr, cc = np.nonzero(roi_c.any(axis=0))
            centre = ((rr.min() + rr.max()) / 2.0, (cc.min() + cc.max()) / 2.0)
        else:
            centre = fallback
        centres.append(centre)
    fov_mm = 2.0 * (half_extent_mm + TILE_MARGIN_MM)
    tile_pixel_mm = fov_mm / TILE_PX
    offsets = (np.arange(TILE_PX) + 0.5) * tile_pixel_mm - fov_mm / 2.0
    tiles = []
    for k, (cr, cc) in zip(chosen, centres):
        rows = cr + offsets / s1
        cols = cc + offsets / s2
        # sample the full slice (not the crop) so that the tile can reach beyond the MIP box
        kd = int(k) + crop[0].start
        rows_full, cols_full = rows + crop[1].start, cols + crop[2].start
        grey = _window(_resample_grey(hu_d[kd], rows_full, cols_full, cval=-1024.0), WINDOW_AXIAL_HU)
        labels_tile = _resample_nearest(np.asarray(ves_d[kd]), rows_full, cols_full, 0)
        sil = {label: labels_tile == label for label in ids}
        calc = _resample_nearest(np.asarray(les_mask[kd]), rows_full, cols_full, False)
        centre_d = (kd, int(round(float(np.clip(rows_full[TILE_PX // 2], 0, dshape[1] - 1)))),
                    int(round(float(np.clip(cols_full[TILE_PX // 2], 0, dshape[2] - 1)))))
        stored = orient.stored_index(centre_d, shape)
        z_mm = float(grid.index_to_lps(np.asarray(stored, dtype=float))[2])
        tiles.append(AxialTile(rgb=_compose(grey, sil, colours, calc), stored_slice_index=stored[orient.axes[0]],
                               stored_axis=orient.axes[0], z_lps_mm=z_mm, calcium_voxel_count=int(counts[k])))
    return QcPanels(coronal_rgb=panels[0], sagittal_rgb=panels[1], axial_tiles=tuple(tiles),
                    mip_pixel_mm=float(pixel_mm), tile_pixel_mm=float(tile_pixel_mm), colours=colours,
                    names=names, has_vessels=has_vessels)


# ------------------------------------------------------------------------------------------- layout

def mosaic_tile_offsets_px(n_tiles: int) -> list[tuple[int, int]]:
    """(row, column) of the top-left pixel of each tile in ``qc_axial_mosaic.png``."""
    cols = min(_MOSAIC_COLS, max(1, n_tiles))
    return [(_TITLE_H + (i // cols) * (_TILE_LABEL_H + TILE_PX + _TILE_GAP) + _TILE_LABEL_H,
             _PAD + (i % cols) * (TILE_PX + _TILE_GAP)) for i in range(n_tiles)]


def _scale_bar_mm(pixel_mm: float, max_px: float) -> float:
    """The largest of 5, 10, 20, 50, 100, 200 mm that fits in ``max_px`` pixels."""
    best = 5.0
    for length in (5.0, 10.0, 20.0, 50.0, 100.0, 200.0):
        if length / pixel_mm <= max_px:
            best = length
    return best


def _new_figure(width_px: int, height_px: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI, facecolor="black")
    FigureCanvasAgg(fig)
    return fig


def _text(fig, x_px: float, y_px: float, s: str, **kw) -> None:
    """Text at pixel position (x from the left, y from the top)."""
    w, h = fig.bbox.width, fig.bbox.height
    kw.setdefault("color", "white")
    kw.setdefault("fontsize", 10)
    fig.text(x_px / w, 1.0 - y_px / h, s, **kw)


def _rect(fig, x_px: float, y_px: float, w_px: float, h_px: float, colour) -> None:
    from matplotlib.patches import Rectangle

    w, h = fig.bbox.width, fig.bbox.height
    fig.add_artist(Rectangle((x_px / w, 1.0 - (y_px + h_px) / h), w_px / w, h_px / h,
                             transform=fig.transFigure, facecolor=np.asarray(colour) / 255.0,
                             edgecolor="none"))


def _legend(fig, x_px: float, y_px: float, panels: QcPanels, notes: list[str], max_entries: int = 24) -> float:
    """Vessel colours, the calcium colour and notes, top-down from (x, y); returns the y reached."""
    labels = sorted(panels.colours)
    if len(labels) > max_entries:
        shown, hidden = labels[:max_entries - 1], len(labels) - max_entries + 1
    else:
        shown, hidden = labels, 0
    for label in shown:
        _rect(fig, x_px, y_px - 5, 14, 10, panels.colours[label])
        name = panels.names[label]
        _text(fig, x_px + 20, y_px, name if len(name) <= 24 else name[:23] + "…", va="center")
        y_px += 18
    if hidden:
        _text(fig, x_px + 20, y_px, f"… {hidden} more", va="center", color="#bbbbbb")
        y_px += 18
    if not panels.colours:
        _text(fig, x_px, y_px, "no vessel mask", va="center", color="#bbbbbb")
        y_px += 18
    _rect(fig, x_px, y_px - 5, 14, 10, CALCIUM_RGB)
    _text(fig, x_px + 20, y_px, "calcium (detected)", va="center")
    y_px += 26
    for note in notes:
        _text(fig, x_px, y_px, note, va="top", fontsize=8, color="#bbbbbb", linespacing=1.3)
        y_px += 14 * (note.count("\n") + 1) + 6
    return y_px


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI, facecolor="black", metadata={"Software": None})
    return path


def _write_mip(path: Path, rgb: np.ndarray, panels: QcPanels, heading: str, title: str,
               letters: tuple[str, str, str, str]) -> Path:
    h, w = rgb.shape[:2]
    width = max(_MIN_FIG_W, _PAD + w + _PAD + _LEGEND_W)
    height = max(_TITLE_H + _PAD + h + _BOTTOM_H, _TITLE_H + 320)
    fig = _new_figure(width, height)
    top, left = PANEL_OFFSET_PX
    fig.figimage(rgb, xo=left, yo=height - top - h, origin="upper")
    _text(fig, 10, 8, heading, va="top", fontsize=12, fontweight="bold")
    if title:
        _text(fig, 10, 30, title, va="top", fontsize=10)
    top_l, bottom_l, left_l, right_l = letters
    for s, x, y in ((top_l, left + w / 2, top - _PAD / 2), (bottom_l, left + w / 2, top + h + _PAD / 2),
                    (left_l, _PAD / 2, top + h / 2), (right_l, left + w + _PAD / 2, top + h / 2)):
        _text(fig, x, y, s, ha="center", va="center", fontsize=11, fontweight="bold", color="#ffff99")
    bar_mm = _scale_bar_mm(panels.mip_pixel_mm, 0.4 * w)
    bar_px = bar_mm / panels.mip_pixel_mm
    y_bar = top + h + _PAD + 10
    _rect(fig, left, y_bar, bar_px, 3, (255, 255, 255))
    _text(fig, left + bar_px + 6, y_bar + 1, f"{bar_mm:g} mm", va="center", fontsize=9)
    notes = [f"MIP, window {WINDOW_MIP_HU[0]:g}…{WINDOW_MIP_HU[1]:g} HU",
             f"pixel {panels.mip_pixel_mm:.2f} mm (square)"]
    if panels.has_vessels:
        notes += [f"bright: voxels within {VESSEL_HALO_MM:g} mm\nof the vessels and calcium",
                  f"dimmed: plain MIP of the box\n(±{CROP_MARGIN_MM:g} mm around vessels)"]
    else:
        notes += ["no vessel mask: plain MIP"]
    _legend(fig, left + w + _PAD + 10, top + 6, panels, notes, max_entries=max(4, (height - top - 160) // 18))
    return _save(fig, path)


def _write_mosaic(path: Path, panels: QcPanels, title: str) -> Path:
    tiles = panels.axial_tiles
    offsets = mosaic_tile_offsets_px(len(tiles))
    cols = min(_MOSAIC_COLS, max(1, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / cols))
    grid_w = _PAD + cols * (TILE_PX + _TILE_GAP)
    width = max(_MIN_FIG_W, grid_w + _LEGEND_W)
    height = max(_TITLE_H + rows * (_TILE_LABEL_H + TILE_PX + _TILE_GAP) + _PAD, _TITLE_H + 300)
    fig = _new_figure(width, height)
    heading = "Axial slices with the most calcium" if any(t.calcium_voxel_count for t in tiles) \
        else "Axial slices through the vessels (no calcium detected)"
    _text(fig, 10, 8, heading, va="top", fontsize=12, fontweight="bold")
    if title:
        _text(fig, 10, 30, title, va="top", fontsize=10)
    for tile, (r, c) in zip(tiles, offsets):
        fig.figimage(tile.rgb, xo=c, yo=height - r - TILE_PX, origin="upper")
        where = "slice" if tile.stored_axis == 0 else f"index[axis {tile.stored_axis}]"
        label = f"{where} {tile.stored_slice_index}   z {tile.z_lps_mm:.1f} mm"
        if tile.calcium_voxel_count:
            label += f"   Ca {tile.calcium_voxel_count} vx"
        _text(fig, c + 2, r - _TILE_LABEL_H / 2, label, va="center", fontsize=8.5)
    if tiles:
        r0, c0 = offsets[0]
        for s, x, y in (("R", c0 + 8, r0 + TILE_PX / 2), ("L", c0 + TILE_PX - 8, r0 + TILE_PX / 2),
                        ("A", c0 + TILE_PX / 2, r0 + 9), ("P", c0 + TILE_PX / 2, r0 + TILE_PX - 9)):
            _text(fig, x, y, s, ha="center", va="center", fontsize=10, fontweight="bold", color="#ffff99")
    x_leg = grid_w + 10
    fov = panels.tile_pixel_mm * TILE_PX
    bar_mm = _scale_bar_mm(panels.tile_pixel_mm, 0.6 * (_LEGEND_W - 40))
    notes = [f"window W {WINDOW_AXIAL_HU[1] - WINDOW_AXIAL_HU[0]:g} / "
             f"L {(WINDOW_AXIAL_HU[1] + WINDOW_AXIAL_HU[0]) / 2:g} HU",
             f"tile {fov:.0f} × {fov:.0f} mm, same scale",
             "viewed from the feet:\npatient right on the left,\nanterior up",
             "z: LPS position of the\ntile centre (mm)"]
    y = _legend(fig, x_leg, _TITLE_H + _TILE_LABEL_H + 6, panels, notes,
                max_entries=max(4, (height - _TITLE_H - 220) // 18))
    bar_px = bar_mm / panels.tile_pixel_mm
    _rect(fig, x_leg, y + 4, bar_px, 3, (255, 255, 255))
    _text(fig, x_leg + bar_px + 6, y + 5, f"{bar_mm:g} mm", va="center", fontsize=9)
    return _save(fig, path)


def write_ct_qc(hu: np.ndarray, grid: Grid, vessels: np.ndarray, vessel_names: dict[int, str],
                lesions: np.ndarray, out_dir: Path, title: str = "", max_mosaic_slices: int = 12) -> list[Path]:
    """Write ``qc_coronal_mip.png``, ``qc_sagittal_mip.png`` and ``qc_axial_mosaic.png`` into ``out_dir``.

    See the module docstring for what the images show and why. ``hu`` is the HU array ``(z, y, x)``
    on ``grid``; ``vessels`` and ``lesions`` are integer label maps on the same grid (0 = none);
    ``vessel_names`` maps the vessel labels to show to their canonical names for the legend (labels
    not in it, e.g. vertebrae of a TotalSegmentator map, are ignored); ``title`` (e.g.
    ``"aorta 123 mm³, Agatston 45"``) is printed on every image and must never hold a patient
    identifier. Returns the three paths. Raises :class:`OutputError` if ``out_dir`` is not an
    existing folder and :class:`GeometryError` if an array does not match ``grid``.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise OutputError(f"the QC output folder {out_dir} does not exist; create it first")
    panels = render_ct_qc_panels(hu, grid, vessels, vessel_names, lesions, max_mosaic_slices)
    return [
        _write_mip(out_dir / "qc_coronal_mip.png", panels.coronal_rgb, panels, "Coronal MIP", title,
                   ("S", "I", "R", "L")),
        _write_mip(out_dir / "qc_sagittal_mip.png", panels.sagittal_rgb, panels, "Sagittal MIP", title,
                   ("S", "I", "A", "P")),
        _write_mosaic(out_dir / "qc_axial_mosaic.png", panels, title),
    ]
