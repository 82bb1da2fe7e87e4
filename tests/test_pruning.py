"""The NumPy pruning rules: exact counts, ties, global threshold, controls, units."""

from __future__ import annotations

import numpy as np
import pytest

from keras_lottery.criteria import magnitude


def test_keep_count_follows_original_size_without_compounding():
    assert [magnitude.keep_count(1000, 0.2, r) for r in range(4)] == [1000, 800, 640, 512]
    assert magnitude.per_round_rate(0.9, 1) == pytest.approx(0.9)
    p = magnitude.per_round_rate(0.9, 3)
    assert (1 - p) ** 3 == pytest.approx(0.1)


def test_layerwise_keeps_largest_surviving_magnitudes():
    rng = np.random.default_rng(0)
    w = {"a": rng.normal(size=(20, 10)), "b": rng.normal(size=(10, 5))}
    m = {"a": np.ones((20, 10)), "b": np.ones((10, 5))}
    m["a"][0] = 0  # already pruned weights never come back
    new = magnitude.magnitude_layerwise(w, m, {"a": 100, "b": 25})
    assert new["a"].sum() == 100 and new["b"].sum() == 25
    assert new["a"][0].sum() == 0
    kept = np.abs(w["a"])[new["a"] == 1]
    dropped = np.abs(w["a"])[(new["a"] == 0) & (m["a"] == 1)]
    assert kept.min() >= dropped.max()


def test_ties_are_broken_by_position():
    w = {"a": np.ones((4, 4))}
    new = magnitude.magnitude_layerwise(w, {"a": np.ones((4, 4))}, {"a": 5})
    assert new["a"].ravel().tolist() == [1] * 5 + [0] * 11


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("dtype", [bool, np.uint8, np.float32])
def test_selection_equals_a_stable_sort_of_the_survivors(dtype, chunk, monkeypatch):
    """Partial selection over survivors == keep the k largest, ties by position.

    ``chunk=7``: the survivors are gathered in many chunks, some without survivors.
    """
    if chunk is not None:
        monkeypatch.setattr(magnitude, "_CHUNK", chunk)
    rng = np.random.default_rng(1)
    for _ in range(100):
        shape = tuple(rng.integers(1, 30, size=2))
        scores = np.round(rng.random(shape) * rng.integers(1, 5))  # many ties
        alive = (rng.random(shape) < rng.random()).astype(dtype)
        k = int(rng.integers(0, scores.size + 2))
        order = [i for i in np.argsort(-scores.ravel(), kind="stable") if alive.ravel()[i]]
        expected = np.zeros(scores.size, dtype)
        expected[order[:k]] = 1
        got = magnitude.top_k(scores, alive, k)
        assert got.dtype == alive.dtype and got.shape == alive.shape
        np.testing.assert_array_equal(got.ravel(), expected)


def test_global_uses_one_threshold():
    w = {"big": np.full((10,), 5.0) + np.arange(10), "small": np.arange(10) / 100}
    m = {k: np.ones(10) for k in w}
    new = magnitude.magnitude_global(w, m, 12)
    assert new["big"].sum() == 10 and new["small"].sum() == 2
    assert new["small"][-2:].tolist() == [1, 1]


def test_random_prune_and_rearrange_keep_counts():
    rng = np.random.default_rng(0)
    m = {"a": (rng.random((30, 30)) < 0.5).astype("float32")}
    rp = magnitude.random_prune(m, {"a": 100}, rng)
    assert rp["a"].sum() == 100 and np.all(rp["a"] <= m["a"])
    ra = magnitude.rearrange(m, rng)
    assert ra["a"].sum() == m["a"].sum()
    assert not np.array_equal(ra["a"], m["a"])


@pytest.mark.parametrize("criterion", magnitude.UNIT_CRITERIA)
def test_unit_pruning_removes_whole_units(criterion):
    rng = np.random.default_rng(0)
    k = [rng.normal(size=(2, 10)), rng.normal(size=(10, 1))]
    k[0][:, 3] *= 100  # unit 3 has big inputs; unit 7 big outputs
    k[1][7] *= 100
    masks = magnitude.unit_masks(k, [np.ones_like(x) for x in k], [2], criterion)
    alive = np.flatnonzero(masks[0].sum(axis=0))
    assert len(alive) == 2
    np.testing.assert_array_equal(np.flatnonzero(masks[1][:, 0]), alive)  # rows follow
    if criterion == "input":
        assert 3 in alive
    if criterion == "output":
        assert 7 in alive
    with pytest.raises(ValueError, match="unit criterion"):
        magnitude.unit_masks(k, masks, [1], "bogus")
