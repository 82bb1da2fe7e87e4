"""The steps of the search, each on its own: options, checks, training, masks, reset, resume.

``find_ticket`` (tests/test_search.py) runs them together; here each module of
a step is imported and called without the loop, on a tiny model.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.data.splits import resolve_splits
from keras_lottery.options import UNSET
from keras_lottery.search import checks, masking, reset, resume, training
from keras_lottery.search import options as search_options

pytestmark = pytest.mark.backends


def mlp(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", name="h"),
            keras.layers.Dense(3, name="out"),
        ],
        name="net",
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def search_args(**given) -> dict:
    """``find_ticket``'s arguments as its ``locals()`` holds them (unset keywords: UNSET)."""
    bound = inspect.signature(kl.find_ticket).bind(None, None, **given)
    bound.apply_defaults()
    return dict(bound.arguments)


def test_search_options_gather_the_groups_and_make_the_config():
    opts = search_options.SearchOptions.of(search_args(rounds=3, rate=0.5, strategy="reinit"))
    assert (opts.pruning.rounds, opts.pruning.rate, opts.reset.strategy) == (3, 0.5, "reinit")
    assert list(opts.config) == list(search_options._CONFIG_KEYS)
    assert opts.rate == 0.5
    assert search_options.SearchOptions.of(search_args(target_sparsity=0.75, rounds=2)).rate == 0.5
    with pytest.raises(ValueError, match="gradual pruning happens inside the first round"):
        search_options.SearchOptions.of(search_args(gradual=object(), rounds=2))
    assert search_args()["rounds"] is UNSET


def test_checks_split_the_data_and_refuse_labels_out_of_range():
    x, y = np.zeros((10, 6), "float32"), np.arange(10) % 3
    (train, validation, test) = resolve_splits((x, y), None, 0.2, None, None)
    assert len(train[0]) == 8 and len(validation[0]) == 2 and test is None
    ticket = kl.make_prunable(mlp())
    ticket.compile_from_config(mlp().get_compile_config())
    checks.check_data(ticket, (x, y), "training data")
    with pytest.raises(ValueError, match=r"labels range over \[0, 5\]"):
        checks.check_data(ticket, (x, np.arange(10) % 6), "training data")
    with pytest.raises(ValueError, match="is not compiled"):
        checks.check_compiled(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


def test_training_chunks_steps_by_eval_every():
    x, y = np.zeros((40, 6), "float32"), np.zeros(40, "int64")
    every = dict(epochs=1, batch_size=10, seed=0, validation=None, test=None, verbose=0)
    plan = training._Training.create((x, y), steps=25, eval_every=10, fit_kwargs={}, **every)
    assert (plan.steps_per_epoch, plan.epochs, plan.stop_at, plan.total_steps) == (10, 3, 25, 25)
    plan = training._Training.create((x, y), steps=None, eval_every=None, fit_kwargs={}, **every)
    assert (plan.steps_per_epoch, plan.epochs, plan.total_steps) == (4, 1, 4)
    with pytest.raises(ValueError, match="beyond the training length"):
        training.check_rewind_point(kl.Reset(rewind_to=25), plan)


def test_masking_prunes_the_smallest_weights_at_each_layers_rate():
    ticket = kl.make_prunable(mlp())
    weights = ticket.prunable_weights()
    rates = masking.rates_per_layer(ticket, 0.5, None, None, "layerwise")
    assert rates == {"net/h/kernel": 0.5, "net/out/kernel": 0.25}
    masks = masking._next_masks(weights, rates, 1, "layerwise", "rewind", "weight", "l1", None)
    for w in weights:
        kept = masks[w.name]
        assert kept.sum() == round(kept.size * (1 - rates[w.name]))
        magnitude = np.abs(np.asarray(w.kernel))
        assert magnitude[kept].min() >= magnitude[~kept].max()
    assert masking._n_m("2:4") == (2, 4) and masking._n_m("unit") is None
    with pytest.raises(ValueError, match="Unknown granularity"):
        masking._n_m("4:2")


def test_reset_rewinds_the_weights_and_reseeds_the_initializers():
    ticket = kl.make_prunable(mlp())
    state = [row.variable for row in ticket.coverage().rows]
    theta0 = [np.array(v) for v in state]
    for var in state:
        var.assign(np.ones(var.shape, var.dtype))
    reset.reset_survivors(ticket, state, "rewind", theta0, None, 1)
    for var, value in zip(state, theta0):
        np.testing.assert_array_equal(np.asarray(var), value)
    reseeded = reset.reseeded({"a": {"seed": 1}, "b": [{"seed": None}, {"seed": "x"}]}, 10)
    assert reseeded == {"a": {"seed": 11}, "b": [{"seed": 12}, {"seed": "x"}]}


def test_resume_stores_theta0_once_and_a_rewind_point_that_differs():
    start = type("Start", (), {"stored": {"0": np.ones(2)}})()
    theta0, theta_k = [np.zeros(2)], [np.ones(2)]
    state = resume.stored_state(["w"], theta0, theta0, start)
    assert set(state) == {"optimizer0", "theta0"}
    state = resume.stored_state(["w"], None, theta_k, start)
    assert set(state) == {"optimizer0", "rewind"} and state["rewind"]["w"] is theta_k[0]


def test_coverage_module_holds_only_the_table():
    """The 0.2 shim ``keras_lottery.coverage.coverage`` is gone (it imported analysis
    through importlib, a cycle import-linter could not see): the function is
    ``keras_lottery.coverage`` and the module holds the table it builds."""
    import keras_lottery as kl
    from keras_lottery.masks import coverage as module

    assert not hasattr(module, "coverage") and hasattr(module, "Coverage")
    assert kl.coverage.__module__ == "keras_lottery.analysis"
