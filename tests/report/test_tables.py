import json
import math

import numpy as np
import pandas as pd

from vascalc.report.tables import flatten_record, to_jsonable, write_csv, write_json


def test_to_jsonable_converts_numpy_and_non_finite():
    data = {"a": np.int64(3), "b": np.float32(1.5), "c": float("nan"), "d": (1, np.bool_(True)),
            "e": np.arange(3), "f": {"g": -math.inf}}
    assert to_jsonable(data) == {"a": 3, "b": 1.5, "c": None, "d": [1, True], "e": [0, 1, 2], "f": {"g": None}}


def test_json_bytes_are_stable(tmp_path):
    data = {"z": 1, "a": [1.25, None], "name": "aorta"}
    first = write_json(data, tmp_path / "a.json").read_bytes()
    second = write_json(dict(data), tmp_path / "b.json").read_bytes()
    assert first == second
    assert json.loads(first) == data


def test_flatten_drops_lists_and_joins_keys():
    record = {"name": "aorta", "hu": {"mean": 300.0, "peak": 812}, "profile": [1, 2]}
    assert flatten_record(record) == {"name": "aorta", "hu_mean": 300.0, "hu_peak": 812}


def test_csv_has_one_row_per_record_with_leading_columns(tmp_path):
    path = write_csv([{"name": "aorta", "v": 1.0}, {"name": "total", "v": 2.5}], tmp_path / "t.csv",
                     leading={"case_id": "c1"})
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["case_id", "name", "v"]
    assert frame["v"].sum() == 3.5 and set(frame["case_id"]) == {"c1"}
