"""The DICOM reader against real-world files: the pydicom test corpus (``pydicom-data``) and the
traps of hospital exports (localizers, DICOMDIR, SR/RT objects, missing preambles, MONOCHROME1).

HU are checked against an independent truth: the uncompressed twin of a compressed file (same
image, no decoder involved), else pydicom's own ``pixel_array`` + rescale.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from imaging_fixtures import write_series
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_dataset
from pydicom.pixels import apply_rescale, get_decoder
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
    RLELossless,
    generate_uid,
)

import vascalc.imaging.dicom as dicom_module
from vascalc.errors import GeometryError, InputError
from vascalc.imaging import load_volume

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's notes on odd corpus files


def corpus(name: str) -> Path:
    """A file of pydicom's test corpus; skips when ``pydicom-data`` (the test extra) is absent."""
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"{name} needs the pydicom-data package (pip install -e .[test])")
    return Path(found)


def copy_to(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(corpus(name), folder / name)
    return folder


def reference_hu(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return apply_rescale(ds.pixel_array, ds)


def as_ct(source: Path, target: Path, **tags) -> Path:
    """Rewrite a corpus image as a CT slice, keeping its pixel data bytes and transfer syntax."""
    ds = pydicom.dcmread(source)
    ds.Modality = "CT"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    defaults = {
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "ImagePositionPatient": [0, 0, 0],
        "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
        "PixelSpacing": [0.5, 0.5],
        "SliceThickness": 1,
        "RescaleSlope": 1,
        "RescaleIntercept": -1024,
    }
    for keyword, value in {**defaults, **tags}.items():
        if keyword in tags or keyword not in ds:
            setattr(ds, keyword, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


# --- every CT image of the corpus ------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "693_UNCR.dcm", "693_J2KR.dcm", "693_UNCI.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"],
)
def test_corpus_ct_file_matches_pydicom(tmp_path, name):
    folder = copy_to(tmp_path, name)
    v = load_volume(folder)
    expected = reference_hu(folder / name)
    assert v.shape == (1, *expected.shape) and v.hu.dtype == np.int16
    np.testing.assert_array_equal(v.hu[0], expected)
    assert v.info.modality == "CT" and v.info.source_format == "dicom"


@pytest.mark.parametrize(
    ("compressed", "uncompressed"), [("693_J2KR.dcm", "693_UNCR.dcm"), ("693_J2KI.dcm", "693_UNCI.dcm")]
)
def test_jpeg2000_equals_its_uncompressed_twin(tmp_path, compressed, uncompressed):
    # the _UNC* files hold the pixels the JPEG 2000 codestream decodes to: truth without a decoder
    a = load_volume(copy_to(tmp_path / "a", compressed))
    b = load_volume(copy_to(tmp_path / "b", uncompressed))
    np.testing.assert_array_equal(a.hu, b.hu)
    assert int(b.hu.min()) == int(pydicom.dcmread(corpus(uncompressed)).pixel_array.min()) - 1024


def test_jpeg_lossless_ct(tmp_path):
    folder = copy_to(tmp_path, "bad_sequence.dcm")
    v = load_volume(folder)  # GDCM decodes JPEG lossless without extra packages
    ds = pydicom.dcmread(folder / "bad_sequence.dcm")
    assert v.shape == (1, int(ds.Rows), int(ds.Columns))
    # 12 bits stored, unsigned, intercept -1024: HU within [-1024, 3071]
    assert -1024 <= int(v.hu.min()) and int(v.hu.max()) <= 3071 and int(v.hu.max()) > 0
    if not get_decoder(ds.file_meta.TransferSyntaxUID).is_available:
        pytest.skip("pydicom has no JPEG lossless decoder here (pylibjpeg-libjpeg) to cross-check the HU")
    np.testing.assert_array_equal(v.hu[0], reference_hu(folder / "bad_sequence.dcm"))


def _deflated(source: Path, target: Path) -> Path:
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(target)
    return target


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "deflated",
    ],
)
def test_every_lossless_transfer_syntax_gives_exact_hu(tmp_path, name):
    # the MR_small family stores one image in each transfer syntax; rewritten as CT, each must
    # give exactly the HU of the uncompressed explicit-little-endian original
    truth_file = as_ct(corpus("MR_small.dcm"), tmp_path / "truth" / "a.dcm")
    truth = pydicom.dcmread(truth_file).pixel_array.astype(int) - 1024
    if name == "deflated":
        source = _deflated(truth_file, tmp_path / "deflated.dcm")
    else:
        source = corpus(name)
    target = as_ct(source, tmp_path / "series" / "a.dcm")
    v = load_volume(target.parent)
    assert v.hu.dtype == np.int16
    np.testing.assert_array_equal(v.hu[0], truth)


def test_without_gdcm_pydicom_decodes_or_names_the_missing_package(tmp_path, monkeypatch):
    # as if GDCM could not decode anything: the per-file pydicom path must take over
    monkeypatch.setattr(dicom_module, "_read_pixels_sitk", lambda *args: None)
    j2k = load_volume(copy_to(tmp_path / "j2k", "693_J2KR.dcm"))
    np.testing.assert_array_equal(j2k.hu[0], reference_hu(corpus("693_UNCR.dcm")))
    target = as_ct(corpus("MR_small_jpeg_ls_lossless.dcm"), tmp_path / "jls" / "a.dcm")
    if get_decoder(pydicom.dcmread(target).file_meta.TransferSyntaxUID).is_available:
        truth = pydicom.dcmread(corpus("MR_small.dcm")).pixel_array.astype(int) - 1024
        np.testing.assert_array_equal(load_volume(target.parent).hu[0], truth)
    else:
        with pytest.raises(InputError, match=r"a\.dcm: .*JPEG-LS Lossless.*cannot be decoded.*pylibjpeg-libjpeg"):
            load_volume(target.parent)


def test_colour_image_refused(tmp_path):
    as_ct(corpus("SC_rgb.dcm"), tmp_path / "a.dcm")
    with pytest.raises(InputError, match=r"a\.dcm .* RGB image with 3 samples per pixel, not a greyscale CT"):
        load_volume(tmp_path)


def test_enhanced_ct_read_frame_by_frame(tmp_path):
    # eCT_Supplemental: 2 frames 10 mm apart, positions in the per-frame functional groups,
    # orientation / pixel measures / rescale in the shared ones — a derived perfusion map ('US')
    copy_to(tmp_path, "eCT_Supplemental.dcm")
    with pytest.raises(InputError, match=r"frame values are rescaled to 'US', not HU \(a derived map"):
        load_volume(tmp_path)
    ds = pydicom.dcmread(tmp_path / "eCT_Supplemental.dcm")
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleType = "HU"
    own = Dataset()  # frame 1 gets its own rescale, which must win over the shared one
    own.RescaleSlope, own.RescaleIntercept, own.RescaleType = "1", "-1000", "HU"
    ds.PerFrameFunctionalGroupsSequence[1].PixelValueTransformationSequence = [own]
    ds.save_as(tmp_path / "eCT_Supplemental.dcm")
    stored = ds.pixel_array.astype(int)
    v = load_volume(tmp_path)
    # normal = (-1,0,0) × (0,1,0) = (0,0,-1): frame 1 (z = -149) comes first along it
    assert v.grid.origin_lps_mm == pytest.approx((99.5, -301.5, -149.0))
    assert v.grid.spacing_mm == pytest.approx((10.0, 0.388672, 0.388672))
    assert v.grid.direction == pytest.approx((-1, 0, 0, 0, 1, 0, 0, 0, -1))
    np.testing.assert_array_equal(v.hu, np.stack([stored[1] - 1000, stored[0] - 1024]))
    assert "1 multi-frame (enhanced) files read frame by frame" in v.info.load_notes
    np.testing.assert_array_equal(load_volume(tmp_path / "eCT_Supplemental.dcm").hu, v.hu)  # the file itself
    ds.compress(RLELossless)  # compressed multi-frame: decoded once, split into frames
    ds.save_as(tmp_path / "eCT_Supplemental.dcm")
    np.testing.assert_array_equal(load_volume(tmp_path).hu, v.hu)


def _item(**tags) -> Dataset:
    item = Dataset()
    for keyword, value in tags.items():
        setattr(item, keyword, value)
    return item


def as_enhanced_ct(source: Path, target: Path, intercepts: list[float] | None) -> Path:
    """A 10-frame enhanced MR of the corpus as Enhanced CT: frame k at z = 2k mm, pixel data kept.

    ``intercepts`` gives each frame its own rescale; ``None`` puts one rescale in the shared groups.
    """
    ds = pydicom.dcmread(source)
    ds.Modality = "CT"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    shared = _item(
        PlaneOrientationSequence=[_item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])],
        PixelMeasuresSequence=[_item(PixelSpacing=[0.5, 0.5], SliceThickness=2)],
    )
    if intercepts is None:
        shared.PixelValueTransformationSequence = [_item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [
        _item(PlanePositionSequence=[_item(ImagePositionPatient=[0, 0, 2 * k])]) for k in range(int(ds.NumberOfFrames))
    ]
    for frame, intercept in zip(ds.PerFrameFunctionalGroupsSequence, intercepts or [], strict=False):
        frame.PixelValueTransformationSequence = [
            _item(RescaleSlope=1, RescaleIntercept=intercept, RescaleType="HU")
        ]
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)
    return target


@pytest.mark.parametrize(
    "name",
    [
        "emri_small.dcm",
        "emri_small_big_endian.dcm",
        "emri_small_RLE.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
    ],
)
@pytest.mark.parametrize("per_frame_rescale", [False, True])
def test_enhanced_ct_in_every_lossless_syntax(tmp_path, name, per_frame_rescale):
    # truth: the uncompressed twin's stored values, each frame with its own intercept
    intercepts = [-1024.0] * 5 + [-1000.0] * 5 if per_frame_rescale else None
    truth = pydicom.dcmread(corpus("emri_small.dcm")).pixel_array.astype(int)
    truth = truth + np.asarray(intercepts or [-1024.0] * 10, dtype=int)[:, None, None]
    target = as_enhanced_ct(corpus(name), tmp_path / "a.dcm", intercepts)
    syntax = pydicom.dcmread(target, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if per_frame_rescale and syntax.is_compressed and not get_decoder(syntax).is_available:
        # GDCM (the fallback) applies one rescale to all frames: refused, naming the decoder to install
        with pytest.raises(InputError, match=r"a\.dcm: .*cannot be decoded here; install one of"):
            load_volume(tmp_path)
        return
    v = load_volume(tmp_path)
    assert v.shape == (10, 64, 64) and v.grid.spacing_mm == pytest.approx((2.0, 0.5, 0.5))
    assert v.grid.origin_lps_mm == pytest.approx((0.0, 0.0, 0.0))
    np.testing.assert_array_equal(v.hu, truth)


def test_multiframe_without_functional_groups_refused(tmp_path):
    write_series(tmp_path, np.full((1, 4, 4), 1024, dtype=np.uint16), extra={"NumberOfFrames": 3})
    with pytest.raises(InputError, match=r"multi-frame DICOM \(3 frames in one file\) without per-frame positions"):
        load_volume(tmp_path)


def test_single_slice_series(tmp_path):
    v = load_volume(copy_to(tmp_path / "a", "CT_small.dcm") / "CT_small.dcm")
    ds = pydicom.dcmread(corpus("CT_small.dcm"), stop_before_pixels=True)
    assert v.shape == (1, 128, 128)
    assert v.grid.spacing_mm == pytest.approx((float(ds.SliceThickness), *map(float, ds.PixelSpacing)))
    assert v.grid.origin_lps_mm == pytest.approx([float(x) for x in ds.ImagePositionPatient])
    assert any("single slice; slice spacing 5 mm" in n for n in v.info.load_notes)
    # a lone slice without SliceThickness has no slice spacing at all
    with pytest.raises(GeometryError, match="one slice and no SliceThickness"):
        load_volume(copy_to(tmp_path / "b", "explicit_VR-UN.dcm"))


# --- hospital-export traps ---------------------------------------------------------------------


def test_corpus_series_with_localizers_and_dicomdir(tmp_path):
    # pydicom's dicomdirtests/98892001: 5 axial slices of 16×16 and 2 localizers, beside a DICOMDIR
    dicomdir = corpus("DICOMDIR")
    shutil.copytree(dicomdir.parent / "98892001", tmp_path / "98892001")
    shutil.copy(dicomdir, tmp_path / "DICOMDIR")
    shutil.copy(dicomdir, tmp_path / "copy_of_dicomdir")  # renamed: read, and ignored as a non-image
    for path in (tmp_path, tmp_path / "DICOMDIR"):  # the folder, or its DICOMDIR, give the same series
        v = load_volume(path)
        assert v.shape == (5, 16, 16) and v.grid.spacing_mm[0] == pytest.approx(2.5)
        assert "2 localizer images ignored" in v.info.load_notes
        assert "1 non-DICOM files ignored" not in v.info.load_notes
        assert "1 non-image DICOM objects ignored" in v.info.load_notes
    slices = sorted(
        (pydicom.dcmread(p) for p in (tmp_path / "98892001" / "CT5N").iterdir()),
        key=lambda ds: float(ds.ImagePositionPatient[2]),
    )
    np.testing.assert_array_equal(v.hu, np.stack([apply_rescale(ds.pixel_array, ds) for ds in slices]))
    with pytest.raises(InputError, match=r"only localizer \(scout\) images found \(2\)"):
        load_volume(tmp_path / "98892001" / "CT2N")


def test_localizer_sharing_the_series_uid_is_excluded(tmp_path):
    stored = np.full((5, 8, 8), 1100, dtype=np.uint16)
    coronal = {"ImageOrientationPatient": ["1", "0", "0", "0", "0", "-1"], "ImagePositionPatient": ["0", "0", "300"]}
    write_series(
        tmp_path, stored, series_uid="1.2.5",
        extra={"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]},
        per_slice={4: {**coronal, "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}},
    )
    v = load_volume(tmp_path)
    assert v.shape == (4, 8, 8) and "1 localizer images ignored" in v.info.load_notes
    np.testing.assert_array_equal(v.hu, 76)
    # without the LOCALIZER flag the scout is a slice of another orientation: refused, not stacked
    write_series(tmp_path / "b", stored, per_slice={4: coronal})
    with pytest.raises(GeometryError, match="mixes slice orientations"):
        load_volume(tmp_path / "b")


def test_sr_rtstruct_and_presentation_state_ignored(tmp_path):
    write_series(tmp_path, np.full((3, 8, 8), 1024, dtype=np.uint16))
    copy_to(tmp_path, "test-SR.dcm", "rtstruct.dcm", "reportsi.dcm")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = GrayscaleSoftcopyPresentationStateStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality = "PR"
    ds.save_as(tmp_path / "pr.dcm", enforce_file_format=True)
    v = load_volume(tmp_path)
    assert v.shape == (3, 8, 8)
    assert "4 non-image DICOM objects ignored" in v.info.load_notes
    # image objects of other modalities (a multi-frame SEG, an RT dose grid) are other series
    copy_to(tmp_path, "liver.dcm", "rtdose.dcm")
    v = load_volume(tmp_path)
    assert v.shape == (3, 8, 8) and v.info.load_notes[0].startswith("3 series found")
    assert "RTDOSE" in v.info.load_notes[0] and "SEG" in v.info.load_notes[0]


def _without_preamble(ds: pydicom.Dataset, *, with_meta: bool) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    raw = buffer.getvalue()[132:]  # drop the 128-byte preamble and "DICM"
    if with_meta:
        return raw
    body = io.BytesIO()  # a bare implicit-VR little-endian data set, as ACR-NEMA era exports
    plain = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    del plain.file_meta
    plain.set_original_encoding(True, True)
    write_dataset(pydicom.filebase.DicomFileLike(body), plain)
    return body.getvalue()


@pytest.mark.parametrize("with_meta", [True, False])
def test_files_without_preamble_are_read(tmp_path, with_meta):
    stored = (1000 + np.arange(3 * 8 * 8, dtype=np.uint16)).reshape(3, 8, 8)
    paths = write_series(tmp_path, stored)
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        path.unlink()
        (tmp_path / f"IMG{k:04d}").write_bytes(_without_preamble(ds, with_meta=with_meta))  # no suffix
    assert pydicom.dcmread(tmp_path / "IMG0000", force=True).preamble is None
    v = load_volume(tmp_path)
    np.testing.assert_array_equal(v.hu, stored.astype(int) - 1024)
    assert "3 DICOM files without the 128-byte preamble read as DICOM" in v.info.load_notes
    # a file that only starts like a group 0008 tag is not DICOM: skipped, unless named like one
    (tmp_path / "notes").write_bytes(b"\x08\x00\x05\x00" + bytes(range(256)) * 4)
    assert "1 non-DICOM files ignored" in load_volume(tmp_path).info.load_notes
    (tmp_path / "notes").rename(tmp_path / "notes.dcm")
    with pytest.raises(InputError, match="notes.dcm: named like a DICOM file but is not one"):
        load_volume(tmp_path)


def test_monochrome1_ct_hu_not_inverted(tmp_path):
    stored = (1000 + 7 * np.arange(2 * 8 * 8, dtype=np.uint16)).reshape(2, 8, 8)
    write_series(tmp_path, stored, extra={"PhotometricInterpretation": "MONOCHROME1"})
    v = load_volume(tmp_path)
    # HU come from the rescale alone (PS3.3 C.11.1); MONOCHROME1 is a display convention
    np.testing.assert_array_equal(v.hu, stored.astype(int) - 1024)
    assert v.hu.dtype == np.int16
    assert any("2 MONOCHROME1 slices" in n and "not inverted" in n for n in v.info.load_notes)


def test_signed_and_twelve_bit_unsigned_stored_values(tmp_path):
    signed = np.array([-1024, -1, 0, 3071], dtype=np.int16)[None, :, None] * np.ones((2, 1, 4), np.int16)
    write_series(tmp_path / "s", signed, intercept=0.0)
    np.testing.assert_array_equal(load_volume(tmp_path / "s").hu, signed)
    unsigned = np.array([0, 1024, 4095], dtype=np.uint16)[None, :, None] * np.ones((2, 1, 4), np.uint16)
    write_series(tmp_path / "u", unsigned, extra={"BitsStored": 12, "HighBit": 11})
    np.testing.assert_array_equal(load_volume(tmp_path / "u").hu[0, :, 0], [-1024, 0, 3071])


def test_rescale_slope_not_one_and_fractional_intercept(tmp_path):
    stored = np.array([0, 100, 2000], dtype=np.uint16)[None, :, None] * np.ones((3, 1, 2), np.uint16)
    write_series(tmp_path, stored, slope=2.5, intercept=-1024.25)
    v = load_volume(tmp_path)
    assert v.hu.dtype == np.float32
    np.testing.assert_allclose(v.hu[1, :, 0], [-1024.25, -774.25, 3975.75])


def test_slices_of_different_sizes_refused(tmp_path):
    write_series(tmp_path, np.full((3, 8, 8), 1024, dtype=np.uint16), series_uid="1.2.7")
    write_series(
        tmp_path / "b", np.full((1, 6, 8), 1024, dtype=np.uint16), series_uid="1.2.7", origin=(-2.0, -2.0, 16.0)
    )
    with pytest.raises(GeometryError, match=r"series 1\.2\.7 mixes image sizes \[\(6, 8\), \(8, 8\)\]"):
        load_volume(tmp_path)


def test_positions_win_over_instance_numbers(tmp_path):
    # InstanceNumber runs opposite to the positions and the file names are shuffled
    per_slice = {k: {"InstanceNumber": 5 - k} for k in range(5)}
    stored = (1024 + 10 * np.arange(5, dtype=np.uint16))[:, None, None] * np.ones((1, 4, 4), np.uint16)
    write_series(tmp_path, stored, per_slice=per_slice, names=[f"i{k}.dcm" for k in (2, 4, 0, 3, 1)])
    v = load_volume(tmp_path)
    np.testing.assert_array_equal(v.hu[:, 0, 0], [0, 10, 20, 30, 40])
    assert v.grid.origin_lps_mm[2] == pytest.approx(10.0)


def test_zero_pixel_spacing_refused(tmp_path):
    write_series(tmp_path, np.full((3, 4, 4), 1024, dtype=np.uint16), extra={"PixelSpacing": ["0", "0.5"]})
    with pytest.raises(GeometryError, match=r"PixelSpacing is \[0\.0, 0\.5\] mm"):
        load_volume(tmp_path)
