"""The option objects: declared once, checked once, the same search as the flat keywords."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from test_cli import child_env, invoke

import keras_lottery as kl
from keras_lottery import options
from keras_lottery.runs import directory as runs
from keras_lottery.search.loop import find_ticket


def test_option_defaults_are_the_run_defaults():
    """A run configuration holds every run option, with its declared default."""
    run = options.run_defaults()
    assert run.items() <= runs.DEFAULTS.items()
    for cls in options.GROUPS.values():
        for name, spec in cls.specs().items():
            assert (name in runs.DEFAULTS) == spec.run, name
    # the only run defaults that differ from find_ticket's: a run is seeded and longer
    differ = {k: (v, _library_default(k)) for k, v in run.items() if v != _library_default(k)}
    assert differ == {"epochs": (8, 1), "seed": (0, None), "layer_rates": ({}, None)}


def _library_default(name):
    for cls in options.GROUPS.values():
        if name in cls.specs():
            return cls.defaults()[name]
    raise KeyError(name)


def test_find_ticket_takes_every_field_as_a_keyword():
    params = inspect.signature(find_ticket).parameters
    for keyword, cls in options.GROUPS.items():
        assert params[keyword].default is None
        for name in cls.specs():
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
            assert params[name].default is options.UNSET, name


def test_run_ids_do_not_change():
    """The ids of existing run directories (a hash of the non-default settings)."""
    known = {
        "44136fa355b3": {},
        "679347dd836b": {"rounds": 2, "strategy": "reinit"},
        "2a395ec705fd": {"granularity": "02:4"},
        "447fd575f517": {"layer_rates": {"b": 0.5, "a": "0.25"}},
        "463c4494577c": {"seed": 3.0, "steps": 40, "eval_every": 10},
        "078fc7e40267": {"validation_split": 0},
    }
    for run_id, config in known.items():
        assert runs.config_hash(runs.normalize_config(config)) == run_id, config


BAD = [
    (options.Pruning, "rounds", 0),
    (options.Pruning, "rounds", 2.5),
    (options.Pruning, "rate", 1.0),
    (options.Pruning, "rate", 0.0),
    (options.Pruning, "rate", float("nan")),
    (options.Pruning, "output_rate", -0.1),
    (options.Pruning, "target_sparsity", 1.0),
    (options.Pruning, "one_shot", "yes"),
    (options.Pruning, "scope", "local"),
    (options.Pruning, "granularity", "3:3"),
    (options.Pruning, "granularity", "block"),
    (options.Pruning, "unit_criterion", "l3"),
    (options.Pruning, "layer_rates", {"dense": 1.5}),
    (options.Pruning, "layer_rates", [0.3]),
    (options.Reset, "strategy", "magic"),
    (options.Reset, "rewind_to", -3),
    (options.Reset, "rewind_to", "soon"),
    (options.Reset, "finetune_lr_scale", 0),
    (options.Training, "epochs", 0),
    (options.Training, "steps", 0),
    (options.Training, "batch_size", True),
    (options.Training, "eval_every", -1),
    (options.Training, "seed", -1),
]


@pytest.mark.parametrize("cls, name, bad", BAD, ids=[f"{n}={b!r}" for _, n, b in BAD])
def test_a_bad_value_is_named(cls, name, bad):
    with pytest.raises(ValueError, match=rf"^{name}") as e:
        cls(**{name: bad})
    shown = next(iter(bad.values())) if isinstance(bad, dict) else bad
    assert repr(shown) in str(e.value) and "\n" not in str(e.value)


RUN_BAD = [(cls, name, bad) for cls, name, bad in BAD if cls.specs()[name].run]


@pytest.mark.parametrize("cls, name, bad", RUN_BAD, ids=[f"{n}={b!r}" for _, n, b in RUN_BAD])
def test_the_run_configuration_refuses_the_same_values(cls, name, bad):
    with pytest.raises(ValueError) as by_object:
        cls(**{name: bad})
    with pytest.raises(ValueError) as by_config:
        runs.normalize_config({name: bad})
    assert str(by_config.value) == str(by_object.value)


def test_rules_between_fields_and_groups():
    with pytest.raises(ValueError, match="cannot be combined"):
        options.Pruning(scope="global", layer_rates={"dense": 0.3})
    with pytest.raises(ValueError, match="cannot be combined"):
        runs.normalize_config({"scope": "global", "granularity": "unit"})
    assert options.Pruning(rounds=3, one_shot=True).prunings == 1
    assert options.Pruning(rounds=3).prunings == 3
    # the masks after round r hold r + 1 rounds of rate, or all of them at once when one-shot
    assert [options.Pruning(rounds=3).rounds_after(r) for r in range(3)] == [1, 2, 3]
    assert options.Pruning(rounds=3, one_shot=True).rounds_after(0) == 3
    # text from a sweep spec or the command line becomes the option's type
    config = runs.normalize_config({"rate": "0.3", "rounds": "2", "rewind_to": "10"})
    assert (config["rate"], config["rounds"], config["rewind_to"]) == (0.3, 2, 10)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(60, 12)).astype("float32"), rng.integers(0, 3, 60)


def _model():
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_objects_and_flat_keywords_are_the_same_search():
    flat = dict(rounds=2, rate=0.3, strategy="rearrange", rewind_to=1, steps=2, seed=3)
    by_keywords = kl.find_ticket(_model(), _data(), verbose=0, **flat)
    by_objects = kl.find_ticket(
        _model(),
        _data(),
        pruning=kl.Pruning(rounds=2, rate=0.3),
        reset=kl.Reset(strategy="rearrange", rewind_to=1),
        training=kl.Training(steps=2, seed=3),
        verbose=0,
    )
    a, b = by_keywords.lottery, by_objects.lottery
    assert json.dumps(a.config, sort_keys=True) == json.dumps(b.config, sort_keys=True)
    assert len(a.rounds) == len(b.rounds) == 3
    for ra, rb in zip(a.rounds, b.rounds):  # the same masks (Keras numbers the layers apart)
        assert len(ra.masks) == len(rb.masks) == 2
        for ma, mb in zip(ra.masks.values(), rb.masks.values()):
            np.testing.assert_array_equal(ma, mb)
    for wa, wb in zip(by_keywords.get_weights(), by_objects.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_an_object_and_its_keywords_at_once_is_an_error():
    with pytest.raises(TypeError, match=r"rate= and pruning=Pruning\(...\) both set"):
        kl.find_ticket(_model(), _data(), pruning=kl.Pruning(rounds=1), rate=0.3, verbose=0)
    with pytest.raises(TypeError, match="steps=, seed= and training=Training"):
        kl.find_ticket(_model(), _data(), training=kl.Training(), steps=2, seed=0, verbose=0)
    with pytest.raises(TypeError, match=r"reset must be a Reset\(...\)"):
        kl.find_ticket(_model(), _data(), reset={"strategy": "reinit"}, verbose=0)
    # an object of one group and keywords of another go together
    ticket = kl.find_ticket(
        _model(), _data(), pruning=kl.Pruning(rounds=1), steps=1, strategy="reinit", verbose=0
    )
    assert ticket.lottery.config["strategy"] == "reinit" and ticket.lottery.config["steps"] == 1


def test_find_help_lists_every_option_once():
    result = invoke("find", "--help")
    assert result.exit_code == 0, result.output
    listed = re.findall(r"^\s+(--[a-z-]+)", result.output, flags=re.MULTILINE)
    assert len(listed) == len(set(listed)), listed
    flags = {
        "--layer-rate" if k == "layer_rates" else "--" + k.replace("_", "-") for k in runs.DEFAULTS
    }
    assert flags <= set(listed), flags - set(listed)
    words = " ".join(result.output.split())
    for name, spec in options.run_specs().items():  # the declared help text is shown
        assert spec.help.split(" (")[0][:30] in words, name


def test_the_options_import_nothing_heavy():
    code = textwrap.dedent(
        """
        import sys
        import keras_lottery_options
        heavy = {"tensorflow", "keras", "numpy", "keras_lottery"}
        print(sorted({m.split(".")[0] for m in sys.modules} & heavy))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env()
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert kl.Pruning is options.Pruning and kl.Pruning.__module__ == "keras_lottery_options"
