"""Loading radiographs: DICOM LUTs and photometry, 8/16-bit bitmaps, refusals (SCORING.md B input)."""

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from vascalc.errors import InputError
from vascalc.imaging.radiograph import load_radiograph, radiograph_from_array

RAW = (np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) % 1000)


def write_dicom(path, *, modality="DX", photometric="MONOCHROME1", voi="lut", spacing_keyword="PixelSpacing",
                frames=1):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientName = "Secret^Person"
    ds.PatientID = "ID-12345"
    ds.Modality = modality
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    pixels = np.repeat(RAW[None], frames, axis=0) if frames > 1 else RAW
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = RAW.shape
    ds.RescaleSlope, ds.RescaleIntercept = 2, 100
    setattr(ds, spacing_keyword, [0.2, 0.25])
    if voi == "lut":
        item = pydicom.Dataset()
        # 16-bit LUT over modality values 100 … 2099: output = (v − first)² / 4000, non-linear on purpose
        first, n = 100, 2000
        item.LUTDescriptor = [n, first, 16]
        item.LUTData = np.array([v * v // 4000 for v in range(n)], dtype="<u2").tobytes()
        ds.VOILUTSequence = [item]
    elif voi == "window":
        ds.WindowCenter, ds.WindowWidth = 500, 400
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def expected_display(lut_values):
    v = lut_values.astype(float)
    return (v - v.min()) / (v.max() - v.min())


def test_dicom_monochrome1_with_voi_lut(tmp_path):
    rg = load_radiograph(write_dicom(tmp_path / "a.dcm"))
    modality = RAW * 2.0 + 100.0
    lut = np.floor((modality - 100.0) ** 2 / 4000.0)
    assert rg.image.shape == (40, 50) and rg.image.dtype == np.float32
    # MONOCHROME1: low values are white, so the display is inverted to keep bone bright
    assert np.allclose(rg.image, 1.0 - expected_display(lut), atol=1e-6)
    assert rg.pixel_spacing_mm == (0.2, 0.25)
    assert rg.source["photometric"] == "MONOCHROME1" and rg.source["voi_lut"] == "lut"
    text = repr(rg.source) + repr(rg.notes)
    assert "Secret" not in text and "12345" not in text


def test_dicom_window_monochrome2_and_imager_spacing(tmp_path):
    rg = load_radiograph(write_dicom(tmp_path / "b.dcm", photometric="MONOCHROME2", voi="window",
                                     spacing_keyword="ImagerPixelSpacing"))
    modality = RAW * 2.0 + 100.0
    # DICOM linear window (C.11.2.1.2.1): c = 500, w = 400 → 0 below 300.5, 1 above 699.5
    windowed = np.clip(((modality - 499.5) / 399.0 + 0.5), 0, 1)
    assert np.allclose(rg.image, expected_display(windowed), atol=2e-3)
    assert rg.pixel_spacing_mm == (0.2, 0.25) and rg.source["spacing_source"] == "ImagerPixelSpacing"
    assert any("ImagerPixelSpacing" in n for n in rg.notes)
    assert load_radiograph(tmp_path / "b.dcm", pixel_spacing_mm=0.3).pixel_spacing_mm == (0.3, 0.3)


@pytest.mark.parametrize("dtype,top", [(np.uint8, 255), (np.uint16, 65535)])
def test_png_8_and_16_bit(tmp_path, dtype, top):
    arr = (np.linspace(0, 1, 64 * 48).reshape(64, 48) * top).astype(dtype)
    arr[0, 0] = 7
    Image.fromarray(arr).save(tmp_path / "x.png")
    rg = load_radiograph(tmp_path / "x.png")
    assert rg.pixel_spacing_mm is None and any("unknown" in n for n in rg.notes)
    assert rg.source["bits"] == (16 if dtype == np.uint16 else 8)
    assert np.allclose(rg.image, (arr - arr.min()) / float(arr.max() - arr.min()), atol=1e-6)
    assert load_radiograph(tmp_path / "x.png", pixel_spacing_mm=(0.1, 0.2)).pixel_spacing_mm == (0.1, 0.2)


def test_refusals(tmp_path):
    with pytest.raises(InputError, match="CT"):
        load_radiograph(write_dicom(tmp_path / "ct.dcm", modality="CT", photometric="MONOCHROME2"))
    with pytest.raises(InputError, match="multi-frame"):
        load_radiograph(write_dicom(tmp_path / "mf.dcm", frames=3))
    with pytest.raises(InputError, match="2-D"):
        radiograph_from_array(np.zeros((5, 40, 40)))
    (tmp_path / "junk.dcm").write_bytes(b"not an image at all" * 20)
    with pytest.raises(InputError, match="not a readable"):
        load_radiograph(tmp_path / "junk.dcm")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match="PNG/JPEG/TIFF"):
        load_radiograph(tmp_path / "junk.png")
    with pytest.raises(InputError, match="not found"):
        load_radiograph(tmp_path / "missing.dcm")
    with pytest.raises(InputError, match="folder"):
        load_radiograph(tmp_path)
    frames = [Image.fromarray(np.zeros((32, 32), np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="multi-page"):
        load_radiograph(tmp_path / "stack.tif")
    with pytest.raises(InputError, match="spacing"):
        load_radiograph(tmp_path / "junk.png", pixel_spacing_mm=-1) if False else radiograph_from_array(
            np.zeros((32, 32)), pixel_spacing_mm=-1)
