"""Compaction through functional graphs: coupled units, unit search, the smaller model.

The models are those people ship, small: a residual CNN, keras.applications
convnets at 32x32 (weights=None), a ViT-like encoder and a GPT-style decoder
built from Keras layers.  Each check: the compacted model computes the ticket's
outputs, its parameters drop as the removed units say, and the widths that
stay are reported with their reason.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.compact import Graph, compact
from keras_lottery.search.masking import group_unit_masks


def _np(x):
    return keras.ops.convert_to_numpy(x)


def residual_cnn(seed: int = 0) -> keras.Model:
    """The issue's model: Conv2D -> Conv2D + a shortcut Conv2D, Add, pooling, Dense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    a = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inputs)
    a = keras.layers.BatchNormalization(name="bn")(a)
    b = keras.layers.Conv2D(16, 3, padding="same", name="c2")(a)
    s = keras.layers.Conv2D(16, 1, name="shortcut")(inputs)
    x = keras.layers.Add(name="add")([b, s])
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    model = keras.Model(inputs, outputs, name="residual_cnn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _digits(mnist, n=64):
    """Real MNIST digits as 32x32 RGB images (zero padding, the gray value three times)."""
    x = mnist.x_train[:n].reshape(n, 28, 28, 1).astype("float32")
    x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return np.repeat(x, 3, axis=-1), mnist.y_train[:n]


def prune_units(model: keras.Model, rate: float, criterion: str = "l1"):
    """One unit pruning of the search (its step 3) without training: a structured ticket."""
    ticket = kl.make_prunable(model)
    weights = ticket.prunable_weights()
    trained = {w.name: np.array(w.kernel) for w in weights}
    current = {w.name: np.array(w.mask) for w in weights}
    masks = group_unit_masks(
        Graph(model), weights, trained, current, {w.name: rate for w in weights}, 1, criterion
    )
    ticket.set_masks(masks)
    return ticket


def _randomize_statistics(model: keras.Model, seed: int = 0) -> None:
    """BatchNormalization statistics away from 0/1, so that slicing them wrong shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for var in layer.weights:
                low = 0.5 if "variance" in var.path or "gamma" in var.path else -0.5
                var.assign(rng.uniform(low, low + 1.0, var.shape).astype("float32"))


def check_same_outputs(ticket, small, x, atol=1e-4):
    expected = keras.tree.flatten(ticket(x, training=False))
    got = keras.tree.flatten(small(x, training=False))
    for e, g in zip(expected, got):
        np.testing.assert_allclose(_np(g), _np(e), atol=atol, rtol=1e-4)


@pytest.mark.backends
@pytest.mark.parametrize("criterion", ["input", "l1", "l2", "output", "product"])
def test_unit_search_on_a_residual_cnn_compacts_through_the_add(mnist, criterion):
    x, y = _digits(mnist)
    ticket = kl.find_ticket(
        residual_cnn(),
        (x, y),
        rounds=1,
        rate=0.5,
        granularity="unit",
        unit_criterion=criterion,
        steps=2,
        batch_size=32,
        verbose=0,
        seed=0,
    )
    masks = {w.layer.name: np.array(w.mask) for w in ticket.prunable_weights()}
    # c2 and the shortcut feed one Add: their filters are one unit, removed together.
    c2, short = masks["c2"].any(axis=(0, 1, 2)), masks["shortcut"].any(axis=(0, 1, 2))
    np.testing.assert_array_equal(c2, short)
    assert c2.sum() == 8 and masks["c1"].any(axis=(0, 1, 2)).sum() == 8
    np.testing.assert_array_equal(masks["head"].any(axis=1), c2)  # read nowhere either
    np.testing.assert_array_equal(masks["c2"].any(axis=(0, 1, 3)), masks["c1"].any(axis=(0, 1, 2)))
    assert masks["head"].any(axis=0).all()  # the output keeps its units
    small, report = compact(ticket)
    check_same_outputs(ticket, small, x)
    assert report.units == {"c1": (16, 8), "c2": (16, 8), "shortcut": (16, 8), "head": (10, 10)}
    assert report.groups["c2+shortcut"] == (16, 8)
    assert any("head: 10 of 10 units kept, a model output" in k for k in report.kept)
    expected_params = (27 * 8 + 8) + 4 * 8 + (72 * 8 + 8) + (3 * 8 + 8) + (8 * 10 + 10)
    assert small.count_params() == report.params_after == expected_params
    assert report.params_before == residual_cnn().count_params()


@pytest.mark.backends
def test_a_second_round_never_regrows_and_the_compact_model_saves(mnist, tmp_path):
    x, y = _digits(mnist)
    options = dict(granularity="unit", steps=2, batch_size=32, verbose=0, seed=0)
    ticket = kl.find_ticket(residual_cnn(), (x, y), rounds=2, rate=0.5, **options)
    rounds = [r.masks for r in ticket.lottery.rounds]
    for before, after in zip(rounds, rounds[1:]):
        for name, mask in after.items():
            grown = np.asarray(mask).astype(bool) & ~np.asarray(before[name]).astype(bool)
            assert not grown.any(), name  # masks never regrow
    masks = {w.layer.name: np.array(w.mask) for w in ticket.prunable_weights()}
    assert masks["c1"].any(axis=(0, 1, 2)).sum() == 4  # 16 -> 8 -> 4
    small, report = compact(ticket)
    assert report.units["c2"] == (16, 4)
    path = tmp_path / "small.keras"
    small.save(path)
    loaded = keras.saving.load_model(path)
    check_same_outputs(ticket, loaded, x)


def test_unknown_layers_keep_their_widths_and_the_report_says_why():
    class Scale(keras.layers.Layer):  # no rule: compaction cannot know what it does
        def call(self, x):
            return x * 2.0

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    a = keras.layers.Dense(6, name="a")(inputs)
    b = keras.layers.Dense(6, name="b")(Scale(name="scale")(a))
    c = keras.layers.Dense(6, name="c")(inputs)
    out = keras.layers.Dense(2, name="out")(keras.layers.Add(name="add")([b, c]))
    model = keras.Model(inputs, out)
    ticket = prune_units(model, 0.5)
    small, report = compact(ticket)
    assert report.units["a"] == (6, 6)  # kept: 'scale' has no rule
    assert report.units["b"] == (6, 3) and report.units["c"] == (6, 3)
    assert any("'scale' (Scale)" in k and "no rule" in k for k in report.kept)
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    check_same_outputs(ticket, small, x)


def test_raw_operations_of_a_functional_graph_couple_like_their_layers():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    a = keras.layers.Dense(6, name="a")(inputs)
    b = keras.layers.Dense(6, name="b")(keras.ops.relu(a))
    x = keras.ops.relu(a + b) * 2.0  # raw operations: a residual add, an activation, a scale
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(x))
    ticket = prune_units(model, 0.5)
    small, report = compact(ticket)
    assert report.units["a"] == (6, 3) and report.units["b"] == (6, 3)
    assert report.groups["a+b"] == (6, 3)
    x = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    check_same_outputs(ticket, small, x)


APPLICATIONS = [
    # name, widths that halve, two layers whose outputs are one coupling (True: the same
    # units, through an Add or a gate; False: side by side, through a Concatenate)
    (
        "ResNet50",
        {"conv2_block1_1_conv": (64, 32)},
        ("conv2_block1_0_conv", "conv2_block1_3_conv", True),
    ),
    ("MobileNetV2", {"block_1_expand": (96, 48)}, ("block_1_project", "block_2_project", True)),
    (
        "EfficientNetB0",
        {"block2a_se_reduce": (4, 2)},
        ("block2a_expand_conv", "block2a_se_expand", True),
    ),
    (
        "DenseNet121",
        {"conv2_block1_1_conv": (128, 64)},
        ("conv1_conv", "conv2_block1_2_conv", False),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, widths, coupled", APPLICATIONS, ids=[a[0] for a in APPLICATIONS])
def test_keras_applications_compact_to_half_their_units(name, widths, coupled):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
    )
    _randomize_statistics(model)
    graph = Graph(model)
    a, b = (graph.tensor_units(model.get_layer(n).output) for n in coupled[:2])
    assert graph.coupling_of[a[0]] == graph.coupling_of[b[0]]
    assert np.array_equal(a, b) == coupled[2]
    ticket = prune_units(model, 0.5)
    small, report = compact(ticket)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    check_same_outputs(ticket, small, x)
    for layer, before_after in widths.items():
        assert report.units[layer] == before_after
    assert report.params_after < 0.4 * report.params_before
    assert any("a model input" in k for k in report.kept)


def vit(seed: int = 0, width: int = 32, blocks: int = 2) -> keras.Model:
    """A ViT-like encoder: patches, pre-norm attention and feed-forward blocks, a head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(width, 8, strides=8, name="patches")(inputs)
    x = keras.layers.Reshape((16, width), name="tokens")(x)
    for i in range(blocks):
        h = keras.layers.LayerNormalization(name=f"ln_a{i}")(x)
        h = keras.layers.MultiHeadAttention(4, 8, name=f"mha{i}")(h, h)
        x = keras.layers.Add(name=f"res_a{i}")([x, h])
        h = keras.layers.LayerNormalization(name=f"ln_f{i}")(x)
        h = keras.layers.Dense(2 * width, activation="gelu", name=f"ffn_in{i}")(h)
        h = keras.layers.Dropout(0.1, name=f"drop{i}")(h)
        h = keras.layers.Dense(width, name=f"ffn_out{i}")(h)
        x = keras.layers.Add(name=f"res_f{i}")([x, h])
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(x), name="vit")


def gpt(seed: int = 0, vocab: int = 50, length: int = 12, width: int = 32) -> keras.Model:
    """A GPT-style decoder: token and position embeddings, a causal MultiHeadAttention
    block and a GroupQueryAttention block (2 key/value heads for 4 query heads)."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    positions = keras.Input((length,), dtype="int32", name="positions")
    x = keras.layers.Add(name="embed")(
        [
            keras.layers.Embedding(vocab, width, name="token_embedding")(tokens),
            keras.layers.Embedding(length, width, name="position_embedding")(positions),
        ]
    )
    attention = [
        keras.layers.MultiHeadAttention(4, 8, name="mha"),
        keras.layers.GroupQueryAttention(8, 4, 2, name="gqa"),
    ]
    for i, layer in enumerate(attention):
        h = keras.layers.LayerNormalization(name=f"ln_a{i}")(x)
        x = keras.layers.Add(name=f"res_a{i}")([x, layer(h, h, use_causal_mask=True)])
        h = keras.layers.LayerNormalization(name=f"ln_f{i}")(x)
        h = keras.layers.Dense(4 * width, activation="gelu", name=f"ffn_in{i}")(h)
        x = keras.layers.Add(name=f"res_f{i}")(
            [x, keras.layers.Dense(width, name=f"ffn_out{i}")(h)]
        )
    x = keras.layers.LayerNormalization(name="ln")(x)
    logits = keras.layers.Dense(vocab, name="logits")(x)
    return keras.Model({"tokens": tokens, "positions": positions}, logits, name="gpt")


def test_vit_loses_whole_heads_and_feed_forward_units_and_keeps_its_stream(tmp_path):
    model = vit()
    ticket = prune_units(model, 0.5)
    small, report = compact(ticket)
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    check_same_outputs(ticket, small, x)
    for i in range(2):
        assert report.units[f"mha{i} heads"] == (4, 2)
        assert report.units[f"ffn_in{i}"] == (64, 32)
        assert report.units[f"ffn_out{i}"] == (32, 32)
        assert small.get_layer(f"mha{i}").num_heads == 2
    # The residual stream is what every LayerNormalization normalizes over: it stays.
    assert any("'ln_a0' (LayerNormalization) normalizes over the width" in k for k in report.kept)
    removed = 2 * (3 * 32 * 2 * 8 + 3 * 2 * 8 + 2 * 8 * 32 + 32 * 32 + 32 + 32 * 32)
    assert report.params_before - report.params_after == removed
    small.save(tmp_path / "vit.keras")
    check_same_outputs(ticket, keras.saving.load_model(tmp_path / "vit.keras"), x)


def test_gpt_decoder_loses_attention_heads_and_key_value_groups(tmp_path):
    model = gpt()
    ticket = prune_units(model, 0.5, "product")
    small, report = compact(ticket)
    rng = np.random.default_rng(0)
    x = {"tokens": rng.integers(0, 50, (2, 12)), "positions": np.tile(np.arange(12), (2, 1))}
    check_same_outputs(ticket, small, x)
    assert report.units["mha heads"] == (4, 2)
    gqa = small.get_layer("gqa")
    assert report.units["gqa kv_heads"] == (2, 1)
    assert (gqa.num_query_heads, gqa.num_key_value_heads) == (2, 1)
    assert report.units["ffn_in0"] == (128, 64) and report.units["ffn_in1"] == (128, 64)
    assert report.units["token_embedding"] == (32, 32)  # the stream stays (LayerNormalization)
    assert any("a model output" in k for k in report.kept)
    small.save(tmp_path / "gpt.keras")
    check_same_outputs(ticket, keras.saving.load_model(tmp_path / "gpt.keras"), x)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite export runs on TF")
def test_a_compacted_residual_cnn_exports_to_tflite_with_the_same_outputs(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    ticket = prune_units(residual_cnn(), 0.5)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    report = kl.export(ticket, tmp_path / "small.tflite", "tflite", verify_data=x, compact=True)
    assert any(n.startswith("compacted before export") for n in report.notes)
    interpreter = Interpreter(model_path=str(report.path))
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    got = next(iter(runner(**{name: x}).values()))
    np.testing.assert_allclose(got, _np(ticket(x)), atol=1e-4)


def test_a_registered_rule_lets_compaction_into_a_subclassed_block():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "compact_custom_layer.py"
    spec = importlib.util.spec_from_file_location("compact_custom_layer", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)  # defines FeedForward and registers its rule
    model = example.model(seed=0)
    ticket = prune_units(model, 0.5, "product")
    small, report = compact(ticket)
    assert report.units["block hidden"] == (256, 128) and report.units["block"] == (64, 32)
    block = small.get_layer("block")
    assert (block.hidden, block.units) == (128, 32)
    x = np.random.default_rng(0).uniform(size=(4, 28, 28)).astype("float32")
    check_same_outputs(ticket, small, x)
