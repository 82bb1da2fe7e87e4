"""Compacting a model with a layer of your own: register how it is sliced.

    python examples/compact_custom_layer.py            # MNIST, 3 rounds of 50% of the units
    python examples/compact_custom_layer.py --smoke    # tiny sizes, a few seconds

``FeedForward`` is a subclassed block (two Dense layers inside one layer).
Compaction reads a functional graph of layers it knows; of this one it knows
nothing, so without a rule it keeps every width the block touches, and says
so.  ``FeedForwardRule`` tells it which weights hold the block's hidden units
(an inner axis, like attention heads), which read its input and which produce
its output, and how to re-create the block at its new widths.  With the rule
registered, a unit search (``granularity="unit"``) ranks and removes hidden
units inside the block, and ``compact`` returns a smaller model computing the
same outputs.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import keras_lottery
from keras_lottery.compact import (
    CONSUME,
    PRODUCE,
    LayerRule,
    LayerSpec,
    Slice,
    compact,
    register_rule,
)


@keras.saving.register_keras_serializable(package="example")
class FeedForward(keras.layers.Layer):
    """``Dense(units)(relu(Dense(hidden)(x)))`` as one layer."""

    def __init__(self, hidden: int, units: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.units = hidden, units
        self.inner = keras.layers.Dense(hidden, activation="relu", name="inner")
        self.outer = keras.layers.Dense(units, name="outer")

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer.build((*input_shape[:-1], self.hidden))

    def call(self, x):
        return self.outer(self.inner(x))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "units": self.units}


class FeedForwardRule(LayerRule):
    """The hidden units are an inner axis: produced by ``inner``, read by ``outer``."""

    def spec(self, layer, call):
        x, y = call.inputs[0], call.outputs[0]
        return LayerSpec(
            inner={"hidden": layer.hidden},
            slices=[
                Slice(layer.inner.kernel, 0, x, CONSUME),  # reads the input's channels
                Slice(layer.inner.kernel, 1, "hidden", PRODUCE),
                Slice(layer.inner.bias, 0, "hidden", PRODUCE),
                Slice(layer.outer.kernel, 0, "hidden", CONSUME),
                Slice(layer.outer.kernel, 1, y, PRODUCE),  # makes the output's channels
                Slice(layer.outer.bias, 0, y, PRODUCE),
            ],
        )

    def config(self, layer, call, keep):
        return {
            **layer.get_config(),
            "hidden": keep.count("hidden"),
            "units": keep.count(call.outputs[0]),
        }


register_rule(FeedForward, FeedForwardRule())


def model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28))
    x = keras.layers.Flatten()(inputs)
    x = FeedForward(256, 64, name="block")(x)
    x = keras.layers.ReLU()(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    net = keras.Model(inputs, outputs)
    net.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return net


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="prunings of 50%% each [3]")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per round [2]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    args = parser.parse_args(argv)

    data = keras_lottery.load_dataset("mnist-5k")
    if args.smoke:
        data = data.subset(train=256, test=128)
        args.rounds, args.epochs = 1, 1
    ticket = keras_lottery.find_ticket(
        model(args.seed),
        (data.x_train, data.y_train),
        rounds=args.rounds,
        rate=0.5,
        granularity="unit",
        epochs=args.epochs,
        batch_size=64,
        test_data=(data.x_test, data.y_test),
        seed=args.seed,
        verbose=0,
    )
    small, report = compact(ticket)
    print(report.summary())
    x = data.x_test[:256]
    same = np.abs(keras.ops.convert_to_numpy(small(x)) - keras.ops.convert_to_numpy(ticket(x)))
    print(f"max |compact - ticket| on {len(x)} test digits: {same.max():.3g}")


if __name__ == "__main__":
    main()
