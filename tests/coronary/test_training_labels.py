"""Round 7 (docs/coronary.md): the scan-reader training label — a candidate on coronary
plaque is that plaque's artery even where the noise-free image stays below 130 HU
(:func:`cluster_truth`, ``label_reference="scan"``); the default stays the noise-free image's label
(:func:`cluster_visible_truth`), the shipped model's. Known answers on a hand-built phantom stand-in."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vascalc.coronary import training
from vascalc.coronary.training import cluster_truth, cluster_visible_truth, phantom_lesions
from vascalc.errors import InputError
from vascalc.imaging.grid import Grid

SHAPE = (6, 24, 24)


def _stand_in():
    """Phantom stand-in: a bright LAD plaque (noise-free 300 HU), a faint RCA plaque (noise-free
    110 HU: the scan shows it only where noise lifts it over 130 HU), a rib-like distractor, and
    four candidate clusters — one on each, and one on nothing (a noise speck)."""
    plaque = np.zeros(SHAPE, np.int32)
    plaque[2:4, 4:7, 4:7] = 1          # LAD, bright
    plaque[2:4, 14:17, 4:7] = 2        # RCA, faint
    distractor = np.zeros(SHAPE, np.int32)
    distractor[2:4, 4:7, 14:17] = 7
    clean = np.full(SHAPE, 40.0)
    clean[plaque == 1] = 300.0
    clean[plaque == 2] = 110.0
    clean[distractor > 0] = 500.0
    truth = {"plaques": [{"id": 1, "vessel": "lad"}, {"id": 2, "vessel": "rca"}]}
    phantom = SimpleNamespace(truth=truth, plaque_ids=plaque, distractor_ids=distractor,
                              volume=SimpleNamespace(grid=Grid(SHAPE, (1.0, 1.0, 1.0)), hu=clean))
    clusters = np.zeros(SHAPE, np.int32)
    clusters[2:4, 4:7, 4:7] = 1
    clusters[3, 15:17, 5:7] = 2        # the noise-lifted part of the faint RCA plaque
    clusters[2:4, 4:7, 14:17] = 3
    clusters[3, 18:20, 18:20] = 4      # far from every plaque and distractor (> 1 voxel)
    box = (slice(0, SHAPE[0]), slice(0, SHAPE[1]), slice(0, SHAPE[2]))
    return phantom, clean, clusters, box


def test_scan_label_is_the_plaque_under_the_candidate():
    phantom, clean, clusters, box = _stand_in()
    classes, distractor = cluster_truth(clusters, box, phantom)
    assert classes.tolist() == [2, 1, 0, 0]                  # LAD, RCA (faint but real), rib, speck
    assert distractor.tolist() == [False, False, True, False]
    # the noise-free label drops the faint RCA plaque: its noise-free image never reaches 130 HU
    assert cluster_visible_truth(clusters, box, phantom, clean).tolist() == [2, 0, 0, 0]


@pytest.mark.parametrize("reference, expected", [("scan", [2, 1, 0, 0]), ("noise_free", [2, 0, 0, 0]),
                                                 (None, [2, 0, 0, 0])])
def test_phantom_lesions_label_reference(monkeypatch, reference, expected):
    phantom, clean, clusters, box = _stand_in()
    features = np.arange(4 * len(training.FEATURES), dtype=float).reshape(4, -1)
    result = SimpleNamespace(cluster_labels=clusters, cluster_box=box, features=features)
    monkeypatch.setattr(training, "make_case",
                        lambda seed, noise_free=False: SimpleNamespace(volume=SimpleNamespace(hu=clean))
                        if noise_free else phantom)
    monkeypatch.setattr("vascalc.workflows.coronary.score_coronary", lambda *args, **kwargs: result)
    # None: the default, which must refit the shipped model (noise-free labels)
    table = phantom_lesions([123], **({} if reference is None else {"label_reference": reference}))
    assert table.classes.tolist() == expected
    assert table.groups.tolist() == [123] * 4
    np.testing.assert_array_equal(table.features, features)


def test_phantom_lesions_unknown_reference():
    with pytest.raises(InputError, match="label_reference"):
        phantom_lesions([1], label_reference="clean")
