"""The one checkpoint-weight rule (docs/method.md, "Influence with checkpoint weights"): w_i =
eta_i / sum_j eta_j; a checkpoint without a learning rate is refused, except in a target store,
whose weights are never read (recorded as null)."""

import pytest

from less_select.datastore.checkpoints import store_weights
from less_select.errors import UserError
from less_select.training.checkpoints import Checkpoint, checkpoint_weights


def _ck(lr):
    return Checkpoint(path="ck", adapter_dir=None, step=0, epoch=None, mean_lr=lr, exp_avg={}, exp_avg_sq={})


def test_weights_are_learning_rate_shares():
    assert checkpoint_weights([_ck(1e-5), _ck(3e-5)]) == pytest.approx([0.25, 0.75])
    assert store_weights([_ck(2.0), _ck(2.0)]) == pytest.approx([0.5, 0.5])


def test_a_missing_learning_rate_is_refused_not_made_uniform():
    with pytest.raises(UserError, match="--mean-lrs"):
        checkpoint_weights([_ck(1e-5), _ck(None)])
    assert store_weights([_ck(1e-5), _ck(None)]) == [None, None]  # a target store: never read


def test_non_positive_learning_rates_are_refused():
    with pytest.raises(UserError, match="must be positive"):
        store_weights([_ck(0.0), _ck(0.0)])
