"""QC images: geometry, orientation, overlays and determinism on synthetic volumes with known truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vascalc.errors import GeometryError, OutputError
from vascalc.imaging import Grid
from vascalc.report.qc import (
    PANEL_OFFSET_PX,
    TILE_PX,
    VESSEL_PALETTE,
    mosaic_tile_offsets_px,
    render_ct_qc_panels,
    write_ct_qc,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
NAMES = {1: "aorta"}
FILES = ["qc_coronal_mip.png", "qc_sagittal_mip.png", "qc_axial_mosaic.png"]

# The synthetic scene, in LPS index terms of a head-first LPS-stored volume (index grows towards
# patient left (x), posterior (y) and superior (z)). Spacing 3 mm slices, 1 mm pixels.
SHAPE = (20, 40, 50)
SPACING = (3.0, 1.0, 1.0)
VESSEL = (slice(2, 18), slice(12, 28), slice(19, 31))      # 48 × 16 × 12 mm box
LESION = (slice(14, 16), slice(13, 15), slice(20, 22))     # superior, anterior, patient-right corner
SPINE = (slice(None), slice(32, 38), slice(19, 31))        # bright bone just behind the vessel


def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hu = np.full(SHAPE, -50, dtype=np.int16)
    hu[VESSEL] = 40
    hu[SPINE] = 700
    hu[LESION] = 600
    vessels = np.zeros(SHAPE, dtype=np.uint8)
    vessels[VESSEL] = 1
    lesions = np.zeros(SHAPE, dtype=np.int32)
    lesions[LESION] = 1
    return hu, vessels, lesions


def lps_grid() -> Grid:
    return Grid(shape=SHAPE, spacing_mm=SPACING, origin_lps_mm=(-25.0, -20.0, 100.0))


def stored_as(kind: str, arrays: tuple[np.ndarray, ...]) -> tuple[Grid, tuple[np.ndarray, ...]]:
    """The same physical scene stored in another index order, with the matching grid."""
    base = lps_grid()
    if kind == "head_first_lps":
        return base, arrays
    if kind == "feet_first":
        # slice 0 is the most superior one: z index runs towards the feet
        origin = tuple(base.index_to_lps(np.array([SHAPE[0] - 1, 0, 0])))
        grid = Grid(shape=SHAPE, spacing_mm=SPACING, origin_lps_mm=origin,
                    direction=(1, 0, 0, 0, 1, 0, 0, 0, -1))
        return grid, tuple(a[::-1] for a in arrays)
    if kind == "ras_nifti":
        # what SimpleITK returns for a RAS NIfTI: x runs to the right, y to the front
        origin = tuple(base.index_to_lps(np.array([0, SHAPE[1] - 1, SHAPE[2] - 1])))
        grid = Grid(shape=SHAPE, spacing_mm=SPACING, origin_lps_mm=origin,
                    direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
        return grid, tuple(a[:, ::-1, ::-1] for a in arrays)
    if kind == "transposed":
        # the array's last two axes swapped: index x runs posterior, index y runs left
        shape = (SHAPE[0], SHAPE[2], SHAPE[1])
        grid = Grid(shape=shape, spacing_mm=(SPACING[0], SPACING[2], SPACING[1]),
                    origin_lps_mm=base.origin_lps_mm, direction=(0, 1, 0, 1, 0, 0, 0, 0, 1))
        return grid, tuple(np.ascontiguousarray(a.transpose(0, 2, 1)) for a in arrays)
    raise ValueError(kind)


def red(rgb: np.ndarray) -> np.ndarray:
    """Pixels painted with the calcium red (vessel colours and grey never pass this)."""
    rgb = rgb[..., :3].astype(int)
    return rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2]) > 120


def colour(rgb: np.ndarray, c: tuple[int, int, int]) -> np.ndarray:
    return np.all(rgb[..., :3] == np.asarray(c), axis=-1)


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def rows_cols(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, c = np.nonzero(mask)
    assert r.size, "expected some pixels"
    return r, c


def test_mip_geometry_and_calcium_position_in_png(tmp_path: Path) -> None:
    hu, vessels, lesions = scene()
    paths = write_ct_qc(hu, lps_grid(), vessels, NAMES, lesions, tmp_path, title="aorta 12 mm³")
    assert [p.name for p in paths] == FILES and all(p.is_file() for p in paths)
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, NAMES, lesions)
    p = panels.mip_pixel_mm
    # the whole volume is inside the 25 mm crop margin: the coronal panel covers 60 mm (z) × 50 mm (x)
    assert panels.coronal_rgb.shape[:2] == (round(60 / p), round(50 / p))
    assert panels.sagittal_rgb.shape[:2] == (round(60 / p), round(40 / p))

    png = read_png(paths[0])
    top, left = PANEL_OFFSET_PX
    h, w = panels.coronal_rgb.shape[:2]
    np.testing.assert_array_equal(png[top:top + h, left:left + w], panels.coronal_rgb)  # 1:1 embedding
    panel = png[top:top + h, left:left + w]

    # vessel outline (2 px ring outside the 48 mm × 12 mm silhouette): true aspect, not squashed
    r, c = rows_cols(colour(panel, VESSEL_PALETTE[0]))
    assert (r.max() - r.min() + 1 - 4) * p == pytest.approx(48.0, abs=1.5 * p)
    assert (c.max() - c.min() + 1 - 4) * p == pytest.approx(12.0, abs=1.5 * p)

    # calcium: stored slices 14–15 are 12–18 mm below the top (slice 19) of the 60 mm volume;
    # columns x 20–21 are 20–22 mm from the patient's right edge, shown on the image left
    r, c = rows_cols(red(panel))
    assert (r.min() * p, (r.max() + 1) * p) == (pytest.approx(12.0, abs=p), pytest.approx(18.0, abs=p))
    assert (c.min() * p, (c.max() + 1) * p) == (pytest.approx(20.0, abs=p), pytest.approx(22.0, abs=p))
    assert red(panel).sum() == pytest.approx((6 / p) * (2 / p), rel=0.1)

    # sagittal: anterior on the left; lesion y 13–14 is 13–15 mm from the anterior edge
    sag = read_png(paths[1])
    h, w = panels.sagittal_rgb.shape[:2]
    r, c = rows_cols(red(sag[top:top + h, left:left + w]))
    assert (c.min() * p, (c.max() + 1) * p) == (pytest.approx(13.0, abs=p), pytest.approx(15.0, abs=p))
    assert (r.min() * p, (r.max() + 1) * p) == (pytest.approx(12.0, abs=p), pytest.approx(18.0, abs=p))


def test_mip_shows_vessel_not_the_spine_behind_it() -> None:
    hu, vessels, lesions = scene()
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, NAMES, lesions)
    p = panels.mip_pixel_mm
    # inside the vessel silhouette, below the lesion: blood (40 HU → grey 0.2 = 51), not the
    # 700 HU spine in the same columns (a plain MIP would give 0.75 → 191)
    rows = slice(int(30 / p), int(45 / p))
    cols = slice(int(23 / p), int(28 / p))
    inside = panels.coronal_rgb[rows, cols, 0].astype(float)
    assert inside.mean() == pytest.approx(255 * (40 + 200) / 1200, abs=3)
    # outside the vessel region the plain MIP is dimmed: -50 HU tissue → 0.45 × 150/1200 × 255
    assert float(panels.coronal_rgb[int(30 / p), int(5 / p), 0]) == pytest.approx(0.45 * 255 * 150 / 1200, abs=2)


@pytest.mark.parametrize("kind", ["feet_first", "ras_nifti", "transposed"])
def test_same_picture_whatever_the_storage_order(tmp_path: Path, kind: str) -> None:
    arrays = scene()
    ref_dir, other_dir = tmp_path / "ref", tmp_path / "other"
    ref_dir.mkdir()
    other_dir.mkdir()
    write_ct_qc(arrays[0], lps_grid(), arrays[1], NAMES, arrays[2], ref_dir, title="t")
    grid, (hu, vessels, lesions) = stored_as(kind, arrays)
    write_ct_qc(hu, grid, vessels, NAMES, lesions, other_dir, title="t")
    for name in FILES[:2]:
        assert (ref_dir / name).read_bytes() == (other_dir / name).read_bytes()
    ref = render_ct_qc_panels(*[arrays[0], lps_grid(), arrays[1], NAMES, arrays[2]])
    other = render_ct_qc_panels(hu, grid, vessels, NAMES, lesions)
    assert len(ref.axial_tiles) == len(other.axial_tiles) == 2
    for a, b in zip(ref.axial_tiles, other.axial_tiles):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        assert a.z_lps_mm == pytest.approx(b.z_lps_mm)
    if kind == "feet_first":  # the label names the stored slice, which is counted from the head
        assert [t.stored_slice_index for t in other.axial_tiles] == [19 - t.stored_slice_index
                                                                     for t in ref.axial_tiles]


def test_orientation_is_anatomical() -> None:
    hu, vessels, lesions = scene()
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, NAMES, lesions)
    # coronal: lesion in the superior (upper) part, on the patient's right (image left) of the vessel
    vr, vc = rows_cols(colour(panels.coronal_rgb, VESSEL_PALETTE[0]))
    r, c = rows_cols(red(panels.coronal_rgb))
    assert r.mean() < vr.mean() and c.mean() < vc.mean()
    # sagittal: superior up, anterior on the image left
    vr, vc = rows_cols(colour(panels.sagittal_rgb, VESSEL_PALETTE[0]))
    r, c = rows_cols(red(panels.sagittal_rgb))
    assert r.mean() < vr.mean() and c.mean() < vc.mean()
    # axial (seen from the feet): anterior up, patient right on the image left
    tile = panels.axial_tiles[0].rgb
    vr, vc = rows_cols(colour(tile, VESSEL_PALETTE[0]))
    r, c = rows_cols(red(tile))
    assert r.mean() < vr.mean() and c.mean() < vc.mean()


def test_mosaic_picks_the_most_calcified_slices_head_to_feet(tmp_path: Path) -> None:
    hu, vessels, lesions = scene()
    lesions[:] = 0
    counts = {4: 3, 7: 9, 9: 1, 12: 6, 15: 4}      # stored slice → calcium voxels
    for z, n in counts.items():
        lesions[z, 20, 20:20 + n] = 1
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, NAMES, lesions, max_mosaic_slices=3)
    # the three largest (9, 6, 4 voxels), listed from the head (high z) down
    assert [t.stored_slice_index for t in panels.axial_tiles] == [15, 12, 7]
    assert [t.calcium_voxel_count for t in panels.axial_tiles] == [4, 6, 9]
    assert [t.z_lps_mm for t in panels.axial_tiles] == pytest.approx([100 + 3 * z for z in (15, 12, 7)])
    # fewer calcified slices than allowed: all of them
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, NAMES, lesions, max_mosaic_slices=12)
    assert [t.stored_slice_index for t in panels.axial_tiles] == [15, 12, 9, 7, 4]
    # each tile is drawn at its place in the PNG, and its red pixel count matches its calcium
    paths = write_ct_qc(hu, lps_grid(), vessels, NAMES, lesions, tmp_path, max_mosaic_slices=12)
    png = read_png(paths[2])
    q = panels.tile_pixel_mm
    for tile, (r, c) in zip(panels.axial_tiles, mosaic_tile_offsets_px(len(panels.axial_tiles))):
        region = png[r:r + TILE_PX, c:c + TILE_PX]
        # (the first tile carries the R/L/A/P letters along its edges)
        np.testing.assert_array_equal(region[20:-20, 20:-20], tile.rgb[20:-20, 20:-20])
        assert red(region).sum() == pytest.approx(tile.calcium_voxel_count / q ** 2, rel=0.15)


def test_labels_without_a_name_are_ignored() -> None:
    hu, vessels, lesions = scene()
    reference = render_ct_qc_panels(hu, lps_grid(), vessels, NAMES, lesions)
    vessels[SPINE] = 30                      # e.g. a vertebra in a TotalSegmentator label map
    vessels[0, 0, 0] = 31                    # far away: must not widen the crop either
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, NAMES, lesions)
    assert panels.colours == {1: VESSEL_PALETTE[0]} and panels.names == {1: "aorta"}
    np.testing.assert_array_equal(panels.coronal_rgb, reference.coronal_rgb)
    np.testing.assert_array_equal(panels.sagittal_rgb, reference.sagittal_rgb)
    # named, it is outlined in the next colour
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, {1: "aorta", 30: "vertebrae_L1"}, lesions)
    assert colour(panels.coronal_rgb, VESSEL_PALETTE[1]).any()


def test_deterministic_bytes(tmp_path: Path) -> None:
    hu, vessels, lesions = scene()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_ct_qc(hu, lps_grid(), vessels, NAMES, lesions, tmp_path / "a", title="aorta 12 mm³")
    second = write_ct_qc(hu, lps_grid(), vessels, NAMES, lesions, tmp_path / "b", title="aorta 12 mm³")
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
        assert b"Software" not in a.read_bytes() and b"tIME" not in a.read_bytes()


def test_no_calcium_gives_slices_spread_through_the_vessel(tmp_path: Path) -> None:
    hu, vessels, lesions = scene()
    lesions[:] = 0
    paths = write_ct_qc(hu, lps_grid(), vessels, NAMES, lesions, tmp_path, max_mosaic_slices=4)
    assert all(p.is_file() for p in paths)
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, NAMES, lesions, max_mosaic_slices=4)
    assert not red(panels.coronal_rgb).any() and not red(panels.sagittal_rgb).any()
    # vessel spans stored slices 2..17: evenly spread, from the head down
    assert [t.stored_slice_index for t in panels.axial_tiles] == [17, 12, 7, 2]
    assert all(t.calcium_voxel_count == 0 and not red(t.rgb).any() for t in panels.axial_tiles)


def test_no_vessels_still_shows_calcium(tmp_path: Path) -> None:
    hu, vessels, lesions = scene()
    vessels[:] = 0
    paths = write_ct_qc(hu, lps_grid(), vessels, {}, lesions, tmp_path)
    assert all(p.is_file() for p in paths)
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, {}, lesions)
    assert not panels.has_vessels and panels.colours == {}
    assert red(panels.coronal_rgb).any() and [t.stored_slice_index for t in panels.axial_tiles] == [15, 14]
    # nothing at all: a plain MIP and slices spread through the whole volume
    lesions[:] = 0
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, {}, lesions, max_mosaic_slices=4)
    assert [t.stored_slice_index for t in panels.axial_tiles] == [19, 13, 6, 0]
    # plain MIP: the spine's 700 HU is visible through the (absent) vessel
    p = panels.mip_pixel_mm
    assert int(panels.coronal_rgb[int(30 / p), int(25 / p), 0]) == round(255 * 900 / 1200)
    write_ct_qc(hu, lps_grid(), vessels, {}, lesions, tmp_path)


def test_errors(tmp_path: Path) -> None:
    hu, vessels, lesions = scene()
    with pytest.raises(OutputError):
        write_ct_qc(hu, lps_grid(), vessels, NAMES, lesions, tmp_path / "missing")
    with pytest.raises(GeometryError):
        write_ct_qc(hu, lps_grid(), vessels[:, :, :10], NAMES, lesions, tmp_path)
    oblique = Grid(shape=SHAPE, spacing_mm=SPACING, direction=(0.7071, 0.7071, 0, -0.7071, 0.7071, 0, 0, 0, 1))
    with pytest.raises(GeometryError):
        write_ct_qc(hu, oblique, vessels, NAMES, lesions, tmp_path)


def test_real_scan_runs_fast(tmp_path: Path) -> None:
    """TotalSegmentator example CT (3 mm, RAS-stored NIfTI) with its aorta and iliac masks."""
    ct = DATA / "ct" / "totalseg_example" / "example_ct.nii.gz"
    seg = DATA / "ct" / "totalseg_example" / "example_seg_fast_force_split.nii.gz"
    if not (ct.is_file() and seg.is_file()):
        pytest.skip("shared sample data not available")
    import SimpleITK as sitk

    image = sitk.ReadImage(str(ct))
    hu = sitk.GetArrayFromImage(image).astype(np.int16)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(seg)))
    grid = Grid(shape=hu.shape, spacing_mm=image.GetSpacing()[::-1], origin_lps_mm=image.GetOrigin(),
                direction=image.GetDirection())
    names = {52: "aorta", 65: "iliac_artery_left", 66: "iliac_artery_right"}
    vessels = np.where(np.isin(labels, list(names)), labels, 0).astype(np.uint8)
    lesions = ((hu >= 130) & (vessels > 0)).astype(np.int32)
    paths = write_ct_qc(hu, grid, vessels, names, lesions, tmp_path, title="example")
    panels = render_ct_qc_panels(hu, grid, vessels, names, lesions)
    # RAS storage shown anatomically: the left iliac artery lies on the image right of the right one
    left_c = np.nonzero(colour(panels.coronal_rgb, panels.colours[65]))[1].mean()
    right_c = np.nonzero(colour(panels.coronal_rgb, panels.colours[66]))[1].mean()
    assert left_c > right_c
    # and the aorta is above the iliac arteries
    aorta_r = np.nonzero(colour(panels.coronal_rgb, panels.colours[52]))[0].mean()
    iliac_r = np.nonzero(colour(panels.coronal_rgb, panels.colours[65]))[0].mean()
    assert aorta_r < iliac_r
    assert all(Image.open(p).size[0] >= 600 for p in paths)


# ------------------------------------------------------------------------------ HTML report page
# (the page embeds the QC images, so its tests live here)

from html.parser import HTMLParser  # noqa: E402

from vascalc.report.html import render_ct_html, write_ct_html  # noqa: E402


class _Tables(HTMLParser):
    """Collects table rows (cell texts), row classes and image sources."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append((attrs.get("class") or "", []))
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _structure(name: str, kind: str = "vessel", parent: str | None = None, **values) -> dict:
    base = {"name": name, "kind": kind, "parent": parent, "present": True, "agatston_like": False,
            "vessel_volume_mm3": 9216.0, "n_clusters_3d": 1, "calcium_volume_mm3": 24.0,
            "agatston_raw": 32.0, "agatston_3mm": 32.0, "mass_mg": None, "integrated_mass_mg": 11.87368,
            "calcium_hu_peak": 600.0, "burden_percent": 0.2604166, "profile": [[14, 142.0, 4.0, 12.0]]}
    return {**base, **values}


def result_dict() -> dict:
    """A result.json shaped dict; the aorta numbers are those of :func:`scene` (2 slices × 4 mm² at
    600 HU → Agatston 2 × 4 × 4 = 32, volume 8 voxels × 3 mm³ = 24 mm³)."""
    return {
        "schema_version": "1.0", "tool": {"name": "vascalc", "version": "0.1.0"}, "kind": "ct",
        "case_id": "case<01>",
        "input": {"scan": {"kvp": None, "slice_thickness_mm": 3.0},
                  "geometry": {"shape_zyx": [20, 40, 50], "spacing_mm_zyx": [3.0, 1.0, 1.0]},
                  "vessels": {"kind": "file", "structures_present": ["aorta"]}},
        "method": {"policy": "agatston", "kv_row": 120, "options": {"wall_mm": 1.0}},
        "structures": [
            _structure("aorta"),
            _structure("iliac_artery_left", present=False, vessel_volume_mm3=0.0, n_clusters_3d=0,
                       calcium_volume_mm3=0.0, agatston_raw=0.0, agatston_3mm=0.0, integrated_mass_mg=None,
                       calcium_hu_peak=None, burden_percent=None),
            _structure("aorta_abdominal", kind="region", parent="aorta", agatston_raw=20.0),
        ],
        "total": _structure("total", kind="total"),
        "categories": {"classic_band": "mild"},
        "thresholds": {"aorta": {"threshold_hu": 130.0}},
        "warnings": ["kVp unknown: 120-kVp thresholds (130 HU) assumed <check>"],
    }


def test_html_report_tables_images_and_escaping(tmp_path: Path) -> None:
    hu, vessels, lesions = scene()
    images = write_ct_qc(hu, lps_grid(), vessels, NAMES, lesions, tmp_path)
    page = write_ct_html(result_dict(), tmp_path, images)
    text = page.read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(text)
    assert parser.images == FILES and all((tmp_path / name).is_file() for name in parser.images)
    table = [(css, cells) for css, cells in parser.rows if cells and cells[0] != "structure"
             and len(cells) > 2]
    names = [cells[0] for _, cells in table]
    # region part right under its vessel, the total last
    assert names == ["aorta", "aorta_abdominal", "iliac_artery_left", "total"]
    aorta = dict(zip([h for h in next(c for _, c in parser.rows if c and c[0] == "structure")], table[0][1]))
    assert aorta["Agatston"] == "32.0" and aorta["calcium volume (mm³)"] == "24.0"
    assert aorta["mass (mg)"] == "—" and aorta["mass, PV-integrated (mg)"] == "11.9"
    assert aorta["vessel volume (mm³)"] == "9,216" and aorta["burden (% of vessel)"] == "0.26"
    assert table[2][0] == "vessel absent" and table[3][0] == "total"
    # every text is escaped: no markup from the data reaches the page
    assert "case<01>" not in text and "case&lt;01&gt;" in text and "&lt;check&gt;" in text
    assert "<script" not in text
    # nested method options are listed by their key path
    assert ["options.wall_mm", "1.000"] in [cells for _, cells in parser.rows]


def test_html_report_is_deterministic_and_checks_its_folder(tmp_path: Path) -> None:
    first = render_ct_html(result_dict(), FILES)
    assert first == render_ct_html(result_dict(), FILES)
    import re

    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", first)  # no date or time
    with pytest.raises(OutputError):
        write_ct_html(result_dict(), tmp_path / "missing")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "qc_coronal_mip.png").write_bytes(b"")
    with pytest.raises(OutputError):
        write_ct_html(result_dict(), tmp_path, [elsewhere / "qc_coronal_mip.png"])
    # a minimal result (no total, no images) still renders
    page = write_ct_html({"structures": []}, tmp_path)
    assert "Arterial calcium" in page.read_text(encoding="utf-8")


def test_mosaic_shows_every_lesion_before_a_second_slice_of_one() -> None:
    hu, vessels, lesions = scene()
    lesions[:] = 0
    lesions[7, 20, 20:29] = 1   # lesion 1: 9 + 8 voxels on slices 7 and 8
    lesions[8, 20, 20:28] = 1
    lesions[12, 22, 20:22] = 2  # lesion 2: a 2-voxel speck on slice 12
    panels = render_ct_qc_panels(hu, lps_grid(), vessels, NAMES, lesions, max_mosaic_slices=2)
    assert sorted(t.stored_slice_index for t in panels.axial_tiles) == [7, 12]
