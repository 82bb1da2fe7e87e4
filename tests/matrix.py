"""The model matrix: small Keras 3 models of every kind keras-lottery must prune.

Each builder returns ``(model, x, y)`` with a compiled model (fresh weights)
and a few examples of matching data.  Sizes are tiny so that a search runs in
seconds on two CPU cores.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

N = 48  # examples per model
SEQ, VOCAB = 8, 50


def _compile(model, loss="sparse_categorical_crossentropy", **kwargs):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, **kwargs)
    return model


def _labels(rng, n_classes=3):
    return rng.integers(0, n_classes, N)


def transformer_block(rng):
    """A functional transformer block whose residuals are raw ops (``h + a``)."""
    inp = keras.Input((SEQ, 16), name="tokens")
    a = layers.MultiHeadAttention(2, 8, name="mha")(inp, inp)
    h = layers.LayerNormalization(name="ln1")(inp + a)
    f = layers.Dense(32, activation="relu", name="ffn_in")(h)
    h = layers.LayerNormalization(name="ln2")(h + layers.Dense(16, name="ffn_out")(f))
    out = layers.Dense(3, name="head")(layers.GlobalAveragePooling1D()(h[:, 1:, :]))
    model = _compile(keras.Model(inp, out, name="transformer_block"))
    return model, rng.normal(size=(N, SEQ, 16)).astype("float32"), _labels(rng)


def mobilenet_v3(rng):
    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, classes=3, include_preprocessing=False
    )
    return _compile(model), rng.random((N, 32, 32, 3)).astype("float32"), _labels(rng)


def lstm_gru(rng):
    inp = keras.Input((SEQ, 5))
    h = layers.LSTM(8, return_sequences=True, name="lstm")(inp)
    h = layers.GRU(6, name="gru")(h)
    model = _compile(keras.Model(inp, layers.Dense(3, name="head")(h), name="lstm_gru"))
    return model, rng.normal(size=(N, SEQ, 5)).astype("float32"), _labels(rng)


def bidirectional(rng):
    inp = keras.Input((SEQ, 5))
    h = layers.Bidirectional(layers.LSTM(6, return_sequences=True), name="bi")(inp)
    h = layers.SimpleRNN(4, name="simple_rnn")(h)
    model = _compile(keras.Model(inp, layers.Dense(3, name="head")(h), name="bidirectional"))
    return model, rng.normal(size=(N, SEQ, 5)).astype("float32"), _labels(rng)


def hub_encoder(rng):
    keras_hub = pytest.importorskip("keras_hub")  # the hub extra

    inp = keras.Input((SEQ,), dtype="int32")
    h = keras_hub.layers.TokenAndPositionEmbedding(VOCAB, SEQ, 16, name="embed")(inp)
    h = keras_hub.layers.TransformerEncoder(32, 2, name="encoder")(h)
    out = layers.Dense(3, name="head")(layers.GlobalAveragePooling1D()(h))
    model = _compile(keras.Model(inp, out, name="hub_encoder"))
    return model, rng.integers(1, VOCAB, (N, SEQ)).astype("int32"), _labels(rng)


def bert(rng):
    """A tiny keras-hub BertBackbone built from its config (random weights) with a head."""
    keras_hub = pytest.importorskip("keras_hub")  # the hub extra

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=SEQ,
        name="bert",
    )
    inputs = backbone.input
    out = layers.Dense(2, name="head")(backbone(inputs)["pooled_output"])
    model = _compile(keras.Model(inputs, out, name="bert_classifier"))
    x = {
        "token_ids": rng.integers(1, VOCAB, (N, SEQ)).astype("int32"),
        "segment_ids": np.zeros((N, SEQ), "int32"),
        "padding_mask": np.ones((N, SEQ), "int32"),
    }
    return model, x, _labels(rng, 2)


@keras.saving.register_keras_serializable("keras_lottery_tests")
class Subclassed(keras.Model):
    """A subclassed model of plain layers, with a weight of its own."""

    def __init__(self, units=16, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.conv = layers.Conv1D(units, 3, padding="same", name="conv")
        self.dense = layers.Dense(units, activation="relu", name="dense")
        self.head = layers.Dense(3, name="head")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.dense.build((*input_shape[:-1], self.units))
        self.scale = self.add_weight(name="mix", shape=(self.units, self.units))
        self.head.build((input_shape[0], self.units))

    def call(self, x):
        h = self.dense(self.conv(x))
        h = keras.ops.mean(keras.ops.matmul(h, self.scale), axis=1)
        return self.head(h)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def subclassed(rng):
    model = Subclassed(name="subclassed")
    model.build((None, SEQ, 4))
    return _compile(model), rng.normal(size=(N, SEQ, 4)).astype("float32"), _labels(rng)


def nested(rng):
    inner_in = keras.Input((12,))
    inner = keras.Model(
        inner_in, layers.Dense(10, activation="relu", name="inner_dense")(inner_in), name="inner"
    )
    inp = keras.Input((12,))
    h = inner(inp)
    model = _compile(keras.Model(inp, layers.Dense(3, name="head")(h), name="nested"))
    return model, rng.normal(size=(N, 12)).astype("float32"), _labels(rng)


def shared_layer(rng):
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    shared = layers.Dense(8, activation="relu", name="shared")
    h = layers.Concatenate()([shared(a), shared(b)])
    model = _compile(keras.Model([a, b], layers.Dense(3, name="head")(h), name="shared_layer"))
    x = [rng.normal(size=(N, 6)).astype("float32") for _ in range(2)]
    return model, x, _labels(rng)


def two_in_two_out(rng):
    img = keras.Input((8, 8, 1), name="image")
    meta = keras.Input((4,), name="meta")
    h = layers.Flatten()(layers.Conv2D(4, 3, name="conv")(img))
    h = layers.Concatenate()([h, layers.Dense(8, name="meta_dense")(meta)])
    h = layers.Dense(16, activation="relu", name="trunk")(h)
    outputs = {
        "label": layers.Dense(3, name="label")(h),
        "score": layers.Dense(1, name="score")(h),
    }
    model = keras.Model({"image": img, "meta": meta}, outputs, name="two_in_two_out")
    _compile(
        model,
        loss={"label": "sparse_categorical_crossentropy", "score": "mse"},
        metrics={"label": ["accuracy"]},
    )
    x = {
        "image": rng.random((N, 8, 8, 1)).astype("float32"),
        "meta": rng.normal(size=(N, 4)).astype("float32"),
    }
    y = {"label": _labels(rng), "score": rng.normal(size=(N, 1)).astype("float32")}
    return model, x, y


def mixed_float16(rng):
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inp = keras.Input((12,))
        h = layers.Dense(16, activation="relu", name="hidden")(inp)
        out = layers.Dense(3, dtype="float32", name="head")(h)
        model = _compile(keras.Model(inp, out, name="mixed"))
    finally:
        keras.config.set_dtype_policy(policy)
    return model, rng.normal(size=(N, 12)).astype("float32"), _labels(rng)


#: name -> builder; the slow ones train large graphs.
MODELS = {
    "transformer_block": transformer_block,
    "mobilenet_v3": mobilenet_v3,
    "lstm_gru": lstm_gru,
    "bidirectional": bidirectional,
    "hub_encoder": hub_encoder,
    "bert": bert,
    "subclassed": subclassed,
    "nested": nested,
    "shared_layer": shared_layer,
    "two_in_two_out": two_in_two_out,
    "mixed_float16": mixed_float16,
}
SLOW = {"mobilenet_v3", "bert"}


def build(name: str, seed: int = 0):
    keras.utils.set_random_seed(seed)
    return MODELS[name](np.random.default_rng(seed))
