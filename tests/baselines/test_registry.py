import dataclasses

import numpy as np
import pytest

from less_select.baselines import BASELINES, Selector, make_baseline
from less_select.errors import UserError


def test_registry_names():
    assert set(BASELINES) == {"random", "bm25", "dsir", "rds", "rds_plus"}


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UserError) as err:
        make_baseline("bm26")
    for name in BASELINES:
        assert name in str(err.value)


def test_unknown_and_bad_options():
    with pytest.raises(UserError, match="k3"):
        make_baseline("bm25", k3=1.0)
    with pytest.raises(UserError, match="seed"):
        make_baseline("random", seed="abc")


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_method_is_a_selector_with_documented_config(name):
    sel = make_baseline(name)
    assert isinstance(sel, Selector) and sel.name == name
    for f in dataclasses.fields(type(sel.config)):
        assert f.metadata.get("help"), f"{name}.{f.name} has no help"


def test_rds_requires_model():
    from .helpers import ex
    with pytest.raises(UserError, match="model"):
        make_baseline("rds").score([ex(0, "a b", "c")], [ex(1, "a", "b")])


def test_empty_targets_rejected():
    from .helpers import ex
    with pytest.raises(UserError, match="empty"):
        make_baseline("bm25").score([ex(0, "a b", "c")], [])
    # random ignores targets
    assert make_baseline("random").score([ex(0, "a b", "c")], []).shape == (1,)
    assert make_baseline("bm25").score([], [ex(1, "a", "b")]).dtype == np.float64
