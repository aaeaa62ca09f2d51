"""The shared argument validator: every public entry's messages come from here."""
import math

import numpy as np
import pytest

from vanishcalc import VanishcalcError
from vanishcalc.validate import integer, real


@pytest.mark.parametrize("value", [True, np.bool_(False)])
def test_real_rejects_booleans_not_one_or_zero(value):
    with pytest.raises(VanishcalcError, match="boolean"):
        real("f", "rate", value)


@pytest.mark.parametrize("value, kw, word", [
    ("a", {}, "not a real number"), (math.nan, {}, "finite"), (math.inf, {}, "finite"),
    (0.0, dict(positive=True), "> 0"), (-1.0, dict(nonneg=True), "≥ 0"),
    (1.5, dict(lo=-1.0, hi=1.0), r"\[-1.0, 1.0\]"), (1e300, dict(hi_bound=1e150), "too large"),
])
def test_real_message_names_where_argument_and_range(value, kw, word):
    with pytest.raises(VanishcalcError, match=word) as info:
        real("where", "arg", value, **kw)
    assert str(info.value).startswith("where: arg = ")


@pytest.mark.parametrize("value", [2.5, True, "3", -1])
def test_integer_refuses_non_integers_and_small_values(value):
    with pytest.raises(VanishcalcError):
        integer("f", "n", value, 0)


def test_integer_accepts_numpy_integers():
    assert integer("f", "n", np.int64(7), 1) == 7


def test_dense_huge_sigma_w_is_a_named_error_not_overflow():
    from vanishcalc.maps import Dense
    with pytest.raises(VanishcalcError, match="sigma_w"):
        Dense(1e300)
