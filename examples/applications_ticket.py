"""A lottery ticket in a keras.applications model: MobileNetV3Small on small images.

    python examples/applications_ticket.py                 # MNIST digits as 32x32 RGB images
    python examples/applications_ticket.py --smoke         # tiny sizes, a few seconds

The model is built untrained (weights=None): θ0 is its fresh initialisation.  Every
convolution, depthwise convolution and dense kernel is pruned; the coverage table
(keras_lottery.masks.coverage) says which weights are and why the others are not.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

import keras_lottery


def as_rgb32(x: np.ndarray) -> np.ndarray:
    """28x28 grey digits in [0, 1] -> 32x32x3 images in [0, 255], as MobileNetV3 expects."""
    x = np.pad(x.reshape(-1, 28, 28), ((0, 0), (2, 2), (2, 2)))
    return np.repeat(x[..., None], 3, axis=-1).astype("float32") * 255.0


def mobilenet(seed: int, alpha: float) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3),
        alpha=alpha,
        minimalistic=True,
        weights=None,
        classes=10,
        classifier_activation="softmax",
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,  # XLA takes longer to compile this model on CPU than to train it
    )
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="prunings of 20%% each [3]")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per round [2]")
    parser.add_argument("--alpha", type=float, default=0.75, help="MobileNetV3 width [0.75]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    args = parser.parse_args(argv)

    data = keras_lottery.load_dataset("mnist-5k")
    if args.smoke:
        data = data.subset(train=256, test=128)
        args.rounds, args.epochs = 1, 1
    x_train, x_test = as_rgb32(data.x_train), as_rgb32(data.x_test)

    model = mobilenet(args.seed, args.alpha)
    ticket = keras_lottery.find_ticket(
        model,
        (x_train, data.y_train),
        rounds=args.rounds,
        epochs=args.epochs,
        batch_size=32,
        test_data=(x_test, data.y_test),
        seed=args.seed,
        verbose=0 if args.smoke else "auto",
    )
    print(ticket.lottery.summary())
    print(str(keras_lottery.coverage(ticket)).splitlines()[-1])  # the table's summary line
    final = ticket.lottery.final
    print(f"{final.percent_remaining:.1f}% of the prunable weights remain")


if __name__ == "__main__":
    main()
