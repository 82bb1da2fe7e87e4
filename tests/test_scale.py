"""Search at scale: what a run directory and a search hold, beyond the model itself.

Every search here is tiny (a few hundred images, two steps per round).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.criteria import magnitude
from keras_lottery.masks.bitmasks import PackedMasks
from keras_lottery.records import checkpoint
from keras_lottery.search import memory
from keras_lottery.search.reset import OptimizerStart
from keras_lottery.seeding import seed_round

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _bench  # noqa: E402  (the benchmarks' memory reader)

OPTS = dict(steps=2, batch_size=20, seed=3, verbose=0)


def mlp(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.fixture(scope="module")
def small():
    return kl.load_dataset().subset(100, 20)


def model_bytes(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) * 4 for v in model.weights)


def dir_bytes(path) -> dict[str, int]:
    return {
        p.relative_to(path).as_posix(): p.stat().st_size for p in path.rglob("*") if p.is_file()
    }


def test_run_dir_holds_theta0_ticket_and_masks_whatever_the_rounds(small, tmp_path):
    sizes, masks = {}, 0
    for rounds in (2, 5):
        ticket = kl.find_ticket(mlp(), small, rounds=rounds, run_dir=tmp_path / str(rounds), **OPTS)
        sizes[rounds] = dir_bytes(tmp_path / str(rounds))
        masks = sum(int(np.prod(w.kernel.shape)) for w in ticket.prunable_weights())
    model = model_bytes(ticket.model)
    for rounds, files in sizes.items():
        # θ0 (state.npz) and the trained ticket are the only model-sized files
        big = sorted(name for name, size in files.items() if size > model // 4)
        assert big == [f"round_{rounds}/weights.npz", "state.npz"], files
        assert sum(files.values()) < 2 * model + (rounds + 1) * masks // 8 + 64_000
    # three more rounds add their masks' bits (and records), no model copy
    growth = sum(sizes[5].values()) - sum(sizes[2].values())
    assert 0 < growth <= 3 * (masks // 8 + 8) + 3 * 16_000, growth


@pytest.mark.parametrize(
    "options",
    [dict(rewind_to=1), dict(strategy="continue"), dict(strategy="random_prune")],
    ids=["late-rewind", "continue", "random_prune"],
)
def test_a_resumed_search_equals_an_uninterrupted_one(small, tmp_path, options):
    class Interrupt(keras.callbacks.Callback):
        calls = 0

        def on_train_begin(self, logs=None):
            Interrupt.calls += 1
            if Interrupt.calls == 3:  # die while training round 2
                raise KeyboardInterrupt

    opts = dict(rounds=3, **OPTS, **options)
    full = kl.find_ticket(mlp(), small, **opts)
    with pytest.raises(KeyboardInterrupt):
        kl.find_ticket(mlp(), small, run_dir=tmp_path, callbacks=[Interrupt()], **opts)
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert manifest["completed_round"] == 1 and manifest["format"] == checkpoint.FORMAT
    kept = options.get("strategy") == "continue"
    assert (tmp_path / "round_1" / "weights.npz").exists() == kept
    resumed = kl.find_ticket(mlp(), small, run_dir=tmp_path, **opts)
    for a, b in zip(full.weights, resumed.weights):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    for r_full, r_resumed in zip(full.lottery.rounds, resumed.lottery.rounds, strict=True):
        assert list(r_full.masks.values()) != []
        for a, b in zip(r_full.masks.values(), r_resumed.masks.values(), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(full.lottery.rewind_weights.values(), resumed.lottery.rewind_weights.values()):
        np.testing.assert_array_equal(a, b)
    # a finished run directory gives the same ticket again without training
    again = kl.find_ticket(mlp(), small, run_dir=tmp_path, **opts)
    for a, b in zip(full.weights, again.weights):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_a_run_dir_of_the_old_layout_is_refused_with_what_to_do(small, tmp_path):
    kl.find_ticket(mlp(), small, rounds=1, run_dir=tmp_path, **OPTS)
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    del manifest["format"]  # as keras-lottery 0.2.0 wrote it
    (tmp_path / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(checkpoint.CheckpointFormatError, match=r"0\.2\.0.*delete the directory"):
        kl.find_ticket(mlp(), small, rounds=1, run_dir=tmp_path, **OPTS)


def test_a_run_dir_with_the_old_batch_order_is_refused_with_what_to_do(small, tmp_path):
    class Interrupt(keras.callbacks.Callback):
        calls = 0

        def on_train_begin(self, logs=None):
            Interrupt.calls += 1
            if Interrupt.calls == 2:  # die while training round 1
                raise KeyboardInterrupt

    opts = dict(rounds=2, run_dir=tmp_path, **OPTS)
    with pytest.raises(KeyboardInterrupt):
        kl.find_ticket(mlp(), small, callbacks=[Interrupt()], **opts)
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert manifest["batch_order"] == checkpoint.BATCH_ORDER
    del manifest["batch_order"]  # as layout 2 was written before 0.3.0
    (tmp_path / "checkpoint.json").write_text(json.dumps(manifest))
    assert checkpoint.committed_record(tmp_path) is not None  # still readable for reports
    with pytest.raises(checkpoint.CheckpointFormatError, match=r"before 0\.3\.0.*start the search"):
        kl.find_ticket(mlp(), small, **opts)


def test_the_record_holds_masks_as_bits(small):
    ticket = kl.find_ticket(mlp(), small, rounds=2, **OPTS)
    for r in ticket.lottery.rounds:
        assert isinstance(r.masks, PackedMasks)
        sizes = [int(np.prod(w.kernel.shape)) for w in ticket.prunable_weights()]
        assert r.masks.nbytes == sum(-(-n // 8) for n in sizes)
        for w in ticket.prunable_weights():
            assert r.masks[w.name].dtype == bool and r.masks[w.name].shape == w.kernel.shape
    final = ticket.lottery.final.masks
    for w in ticket.prunable_weights():
        np.testing.assert_array_equal(final[w.name], np.asarray(w.mask))


def test_packed_masks_round_trip():
    rng = np.random.default_rng(0)
    masks = {"a": rng.random((3, 5, 7)) > 0.4, "b": np.ones((9,), bool), "c": np.zeros((2, 2))}
    packed = PackedMasks.pack(masks)
    assert packed.nbytes == 14 + 2 + 1
    for name, mask in masks.items():
        np.testing.assert_array_equal(packed[name], mask != 0)
    assert packed == {k: v != 0 for k, v in masks.items()}
    assert packed != {**masks, "a": ~masks["a"]}


def test_a_fresh_optimizer_state_is_not_copied():
    model = mlp()
    model.optimizer.build(model.trainable_variables)
    start = OptimizerStart(model.optimizer)
    assert start.stored == {}  # zero moments, counter and learning rate: re-created
    for var in model.optimizer.variables:
        var.assign(np.full(var.shape, 0.5, dtype=var.dtype))
    start.restore(model.optimizer, "init", "rewind", 1.0)
    assert int(np.asarray(model.optimizer.iterations)) == 0
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(1e-3)
    assert all(not np.asarray(v).any() for v in model.optimizer.variables[2:])
    # a state that is not one value everywhere (a used optimizer) is kept
    model.optimizer.variables[2].assign(
        np.arange(np.prod(model.optimizer.variables[2].shape)).reshape(
            model.optimizer.variables[2].shape
        )
    )
    assert list(OptimizerStart(model.optimizer).stored) == ["2"]


def test_partial_selection_keeps_what_a_stable_sort_keeps():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 100))
        scores = np.abs(np.round(rng.standard_normal(n) * rng.integers(1, 4)))  # many ties
        alive = rng.random(n) > rng.random()
        k = int(rng.integers(0, n + 2))
        order = np.argsort(-np.where(alive, scores, -np.inf), kind="stable")
        expected = np.zeros(n, bool)
        expected[order[: min(k, int(alive.sum()))]] = True
        np.testing.assert_array_equal(magnitude.top_k(scores, alive, k), expected)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's caches")
def test_rounds_keep_tensorflows_compiled_functions(small, monkeypatch):
    """TF's global seed is set once: setting it clears the kernel caches, and the
    next call of the traced train step re-optimises its graph (10-30 s for ResNet50)."""
    import tensorflow as tf

    models, calls = [mlp(), mlp()], []
    set_seed = tf.random.set_seed
    monkeypatch.setattr(tf.random, "set_seed", lambda s: (calls.append(s), set_seed(s)))
    kl.find_ticket(models[0], small, rounds=3, **OPTS)
    kl.find_ticket(models[1], small, rounds=2, strategy="reinit", **OPTS)
    assert calls == [OPTS["seed"], OPTS["seed"]], calls  # once per search, none per round


def test_seed_round_draws_like_keras_set_random_seed():
    import random

    def draws():
        k = keras.ops.convert_to_numpy(keras.random.uniform((3,)))
        return k.tolist(), np.random.rand(2).tolist(), random.random()

    keras.utils.set_random_seed(11)
    expected = draws()
    keras.utils.set_random_seed(99)
    draws()
    seed_round(11)
    assert draws() == expected


def test_the_train_step_is_traced_once_for_all_rounds(small, monkeypatch):
    traced, starts = [], []
    call = kl.MaskedModel.call

    def counting_call(self, inputs, training=None):
        traced.append(training)  # Python runs here only while tracing (or eagerly)
        return call(self, inputs, training)

    class Rounds(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            starts.append(len(traced))

    monkeypatch.setattr(kl.MaskedModel, "call", counting_call)
    kl.find_ticket(mlp(), small, rounds=3, callbacks=[Rounds()], **OPTS)
    assert len(starts) == 4 and True in traced
    assert True not in traced[starts[1] :], traced  # masks and weights change as variables


@pytest.mark.skipif(memory._malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_system():
    """Blocks below glibc's mmap threshold, freed around a few live ones, stay resident
    until release_freed() (what a search calls between its phases)."""
    blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MB on the heap
    keep = blocks[::100]  # live blocks scattered through it: no trim at the top
    del blocks
    before = _bench.rss_mb()
    assert memory.release_freed()
    assert before - _bench.rss_mb() > 100
    del keep  # alive until measured


def test_release_freed_is_a_no_op_off_linux(monkeypatch):
    memory._malloc_trim.cache_clear()
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    try:
        assert memory._malloc_trim() is None and memory.release_freed() is False
    finally:
        memory._malloc_trim.cache_clear()
