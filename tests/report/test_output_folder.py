import pytest

from vascalc.errors import OutputError
from vascalc.report.output_folder import check_output_folder, prepare_output_folder

def test_new_folder_is_created(tmp_path):
    out = prepare_output_folder(tmp_path / "a" / "b")
    assert out.is_dir() and out == (tmp_path / "a" / "b").resolve()

def test_empty_existing_folder_is_accepted(tmp_path):
    (tmp_path / "out").mkdir()
    assert prepare_output_folder(tmp_path / "out").is_dir()

def test_non_empty_folder_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        prepare_output_folder(out)
    assert (out / "result.json").read_text() == "keep me"

def test_file_path_is_refused(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        prepare_output_folder(target)

def test_folder_below_a_file_cannot_be_created(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create"):
        check_output_folder(blocker / "out")

def test_output_inside_an_input_folder_is_refused(tmp_path):
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    with pytest.raises(OutputError, match="inside the input folder"):
        check_output_folder(dicom / "results", [dicom])
    with pytest.raises(OutputError, match="inside the input folder"):
        check_output_folder(dicom, [dicom])

def test_check_creates_nothing(tmp_path):
    check_output_folder(tmp_path / "new")
    assert not (tmp_path / "new").exists()
