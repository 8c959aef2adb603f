"""synthetic_case / evaluate_aac pass the lateral film's detector setting through (round 14)."""

import numpy as np

from vascalc.learn.aac import synthetic_case
from vascalc.phantoms.lateral_spine import DETECTOR_SUPERSAMPLING, make_lateral_spine


def test_synthetic_case_draws_the_area_integrated_film_by_default_and_the_point_sampled_one_on_request():
    default, point = synthetic_case(4_000_123), synthetic_case(4_000_123, detector_supersampling=1)
    assert default.variation["chain"]["detector_supersampling"] == DETECTOR_SUPERSAMPLING
    assert point.variation["chain"]["detector_supersampling"] == 1
    assert np.array_equal(point.image, make_lateral_spine(4_000_123, detector_supersampling=1).image)
    assert default.grades == point.grades and not np.array_equal(default.image, point.image)
