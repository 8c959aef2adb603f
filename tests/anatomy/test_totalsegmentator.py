"""TotalSegmentator bridge: clear errors when it is missing, the call it makes, reading its output.

TotalSegmentator itself is not installed here (it pins another torch); the call is checked with
a stand-in module that writes TotalSegmentator's real output for the sample scan.
"""

from __future__ import annotations

import importlib.machinery
import shutil
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vascalc.anatomy import totalsegmentator as ts
from vascalc.errors import DependencyError, InputError
from vascalc.imaging import load_volume


@pytest.fixture
def weights_home(tmp_path, monkeypatch):
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "tshome"))
    return tmp_path / "tshome" / "nnunet" / "results"


def _fake_package(monkeypatch, api) -> None:
    package = types.ModuleType("totalsegmentator")
    package.__spec__ = importlib.machinery.ModuleSpec("totalsegmentator", None, is_package=True)
    package.__path__ = []
    python_api = types.ModuleType("totalsegmentator.python_api")
    python_api.__spec__ = importlib.machinery.ModuleSpec("totalsegmentator.python_api", None)
    python_api.totalsegmentator = api
    package.python_api = python_api
    monkeypatch.setitem(sys.modules, "totalsegmentator", package)
    monkeypatch.setitem(sys.modules, "totalsegmentator.python_api", python_api)


def test_weights_dir_follows_totalsegmentator_rules(monkeypatch, tmp_path):
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.delenv("TOTALSEG_HOME_DIR", raising=False)
    assert ts.totalsegmentator_weights_dir() == Path.home() / ".totalsegmentator" / "nnunet" / "results"
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path))
    assert ts.totalsegmentator_weights_dir() == tmp_path / "nnunet" / "results"
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "w"))
    assert ts.totalsegmentator_weights_dir() == tmp_path / "w"
    assert ts.required_weights(fast=True) == (
        "Dataset297_TotalSegmentator_total_3mm_1559subj", "Dataset298_TotalSegmentator_total_6mm_1559subj")
    assert len(ts.required_weights(fast=False, roi_subset=False)) == 5


def test_missing_package_says_how_to_install(monkeypatch, weights_home):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "totalsegmentator" else real_find_spec(name, *a))
    monkeypatch.delitem(sys.modules, "totalsegmentator", raising=False)
    assert ts.totalsegmentator_available() is False
    with pytest.raises(DependencyError, match=r"pip install 'vascalc\[totalsegmentator\]'") as error:
        ts.run_totalsegmentator("/nonexistent.nii.gz", ["aorta"])
    assert "totalseg_download_weights -t total" in str(error.value) and "\n" not in str(error.value)


def test_missing_weights_are_named_and_never_downloaded(monkeypatch, weights_home):
    calls = []
    _fake_package(monkeypatch, lambda **kwargs: calls.append(kwargs))
    (weights_home / "Dataset297_TotalSegmentator_total_3mm_1559subj").mkdir(parents=True)
    assert ts.totalsegmentator_installed() and not ts.totalsegmentator_available()
    with pytest.raises(DependencyError, match="Dataset298_TotalSegmentator_total_6mm_1559subj") as error:
        ts.run_totalsegmentator("/nonexistent.nii.gz", ["aorta"])
    assert "totalseg_download_weights" in str(error.value)
    assert "Dataset297" not in str(error.value)  # present, so not listed
    assert calls == []  # TotalSegmentator (and its downloader) never called


def test_unknown_structures_only(weights_home):
    with pytest.raises(InputError, match="is a TotalSegmentator .total. structure"):
        ts.run_totalsegmentator("/nonexistent.nii.gz", ["femoral_artery_left"])


def test_run_calls_api_with_roi_subset_and_reads_real_output(monkeypatch, weights_home, shared_data):
    example = shared_data / "ct" / "totalseg_example"
    seg_file = example / "example_seg_fast_force_split.nii.gz"
    calls = []

    def fake_totalsegmentator(**kwargs):
        calls.append(kwargs)
        written = nib.load(kwargs["input"])
        assert written.shape == (122, 101, 112)  # the CT was handed over as NIfTI on its grid
        shutil.copyfile(seg_file, kwargs["output"])

    _fake_package(monkeypatch, fake_totalsegmentator)
    for name in ts.required_weights(fast=True):
        (weights_home / name).mkdir(parents=True)
    assert ts.totalsegmentator_available()
    volume = load_volume(example / "example_ct.nii.gz")
    labels = ts.run_totalsegmentator(volume, ["aorta", "iliac_artery_left", "femoral_artery_left", "vertebrae_L5"],
                                     fast=True, device="cpu")
    (call,) = calls
    assert call["roi_subset"] == ["aorta", "iliac_artery_left", "vertebrae_L5"]
    assert (call["fast"], call["device"], call["ml"]) == (True, "cpu", True)
    assert sorted(labels.names.values()) == ["aorta", "iliac_artery_left", "vertebrae_L5"]
    raw = np.asarray(nib.load(seg_file).dataobj)
    counts = labels.voxel_counts()
    assert counts["aorta"] == int((raw == 52).sum()) and counts["aorta"] > 1000
    assert counts["iliac_artery_left"] == int((raw == 65).sum())
    assert counts["vertebrae_L5"] == int((raw == 27).sum())
    assert any("femoral_artery_left" in note for note in labels.load_notes)
    assert labels.grid == volume.grid


def test_reads_output_folder_with_empty_masks(shared_data):
    example = shared_data / "ct" / "totalseg_example"
    volume = load_volume(example / "example_ct_sm.nii.gz")
    labels = ts.read_totalsegmentator_output(example / "example_seg_fast", volume)
    assert {"aorta", "iliac_artery_left", "vertebrae_L1", "heart"} <= set(labels.names.values())
    assert {"iliac_artery_left", "iliac_artery_right", "heart"} <= set(labels.absent_names())
    aorta_raw = np.asarray(nib.load(example / "example_seg_fast" / "aorta.nii.gz").dataobj)
    assert labels.voxel_counts()["aorta"] == int(aorta_raw.sum()) > 0
    # same structure from the multilabel file of the same model: identical voxels
    multi = ts.read_totalsegmentator_output(example / "example_seg_fast.nii.gz", volume.grid)
    assert np.array_equal(multi.mask("aorta"), labels.mask("aorta"))
