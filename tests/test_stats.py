"""Wilson intervals, the sign test and mean intervals against known values."""

import pytest
from scipy.stats import binomtest

from lib.compare.stats import mean_interval, sign_test_p, wilson_interval


def test_the_wilson_interval_matches_the_textbook_value_for_8_of_10():
    ci = wilson_interval(8, 10)
    assert ci.value == 0.8
    assert (ci.low, ci.high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))


def test_the_wilson_interval_stays_inside_zero_and_one_at_the_extremes():
    none, all_ = wilson_interval(0, 20), wilson_interval(20, 20)
    assert none.low == 0 and 0.15 < none.high < 0.17
    assert all_.high == 1 and 0.83 < all_.low < 0.85


def test_the_wilson_interval_has_no_value_without_votes_and_refuses_impossible_counts():
    assert wilson_interval(0, 0).value is None
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


@pytest.mark.parametrize("wins,losses", [(0, 0), (1, 0), (9, 1), (7, 3), (30, 70), (51, 49), (300, 250)])
def test_the_sign_test_agrees_with_scipys_exact_binomial_test(wins, losses):
    expected = 1.0 if wins + losses == 0 else binomtest(wins, wins + losses, 0.5).pvalue
    assert sign_test_p(wins, losses) == pytest.approx(expected, rel=1e-9)


def test_the_sign_test_of_9_wins_to_1_is_0_0215():
    assert sign_test_p(9, 1) == pytest.approx(22 / 1024)


def test_the_mean_interval_uses_the_sample_standard_deviation_and_the_t_quantile():
    ci = mean_interval([2, 4, 4, 4, 5, 5, 7, 9])
    assert ci.value == 5
    half = 2.364624251592785 * 2.138089935299395 / 8**0.5  # t(0.975, 7 df) * s / sqrt(n)
    assert (ci.low, ci.high) == (pytest.approx(5 - half), pytest.approx(5 + half))
    assert mean_interval([]).value is None and mean_interval([3.0]).low == 3.0


def test_the_mean_interval_of_five_cases_is_as_wide_as_the_t_table_says():
    # mean 3, s = sqrt(2.5), t(0.975, 4 df) = 2.7764 from the table: half-width 2.7764 * 1.5811 / 2.2361 = 1.9632
    ci = mean_interval([1, 2, 3, 4, 5])
    assert (ci.low, ci.high) == (pytest.approx(1.0368, abs=1e-4), pytest.approx(4.9632, abs=1e-4))
