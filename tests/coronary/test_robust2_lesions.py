"""`vascalc train coronary --lesions` on bad lesion CSVs: the line and column named, nothing trained."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vascalc.coronary.training import CLASSES, FEATURES, lesions_from_csv
from vascalc.errors import InputError


def lesion_frame(n: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((n, len(FEATURES))), columns=list(FEATURES))
    frame["artery"] = [CLASSES[i % len(CLASSES)] for i in range(n)]
    return frame


@pytest.mark.parametrize("value", ["abc", np.nan, np.inf])
def test_a_feature_that_is_not_a_finite_number_names_its_line_and_column(tmp_path, value):
    frame = lesion_frame().astype({FEATURES[2]: object})
    frame.loc[3, FEATURES[2]] = value
    frame.to_csv(tmp_path / "l.csv", index=False)
    # data row 3 is line 5 of the file (header = line 1)
    with pytest.raises(InputError, match=f"line 5 has a missing, non-numeric or infinite '{FEATURES[2]}'"):
        lesions_from_csv(tmp_path / "l.csv")


def test_empty_file_and_missing_artery_are_input_errors(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty.csv: cannot read as a lesion CSV"):
        lesions_from_csv(tmp_path / "empty.csv")
    frame = lesion_frame()
    frame.loc[1, "artery"] = np.nan
    frame.to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(InputError, match=r"unknown or missing artery value\(s\) \['nan'\]"):
        lesions_from_csv(tmp_path / "l.csv")


def test_artery_names_are_read_case_and_space_insensitively(tmp_path):
    frame = lesion_frame()
    frame["artery"] = [" RCA", "lad ", "LCX", "None", "rca", "lad", "lcx", "none"]
    frame.to_csv(tmp_path / "l.csv", index=False)
    table = lesions_from_csv(tmp_path / "l.csv")
    assert table.classes.tolist() == [CLASSES.index(c) for c in ("rca", "lad", "lcx", "none") * 2]
    np.testing.assert_allclose(table.features, frame[list(FEATURES)].to_numpy())
