"""Find a winning ticket of LeNet-300-100 on MNIST and export it as a TFLite file.

    python examples/mnist_tflite.py                    # the 5,000 digits shipped with the package
    python examples/mnist_tflite.py --data path/to/mnist --rounds 10 --epochs 4
    python examples/mnist_tflite.py --format tflite-int8 --out ticket.int8.tflite
    python examples/mnist_tflite.py --smoke            # tiny sizes, a few seconds

--data is anything keras_lottery.load_dataset reads: "mnist-5k" (embedded, offline), a
folder of MNIST IDX files, an .npz with x_train/y_train/x_test/y_test, or a TFDS name.
"""

from __future__ import annotations

import argparse

import keras

import keras_lottery
from keras_lottery.export import FORMATS


def lenet_300_100(seed: int) -> keras.Model:
    """The paper's LeNet-300-100: Glorot-normal init, Adam 1.2e-3."""
    init = keras.initializers.GlorotNormal(seed=seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu", kernel_initializer=init),
            keras.layers.Dense(100, activation="relu", kernel_initializer=init),
            keras.layers.Dense(10, activation="softmax", kernel_initializer=init),
        ],
        name="lenet",
    )
    model.compile(
        keras.optimizers.Adam(1.2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="mnist-5k", help="dataset name or path [mnist-5k]")
    parser.add_argument("--rounds", type=int, default=5, help="prunings of 20%% each [5]")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per round [2]")
    parser.add_argument("--format", default="tflite", choices=list(FORMATS))
    parser.add_argument("--out", default="lenet_ticket.tflite", help="file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    data = keras_lottery.load_dataset(args.data)
    if args.smoke:
        data = data.subset(train=600, test=200)
        args.rounds, args.epochs = 2, 1

    ticket = keras_lottery.find_ticket(
        lenet_300_100(args.seed),
        data,
        rounds=args.rounds,
        epochs=args.epochs,
        validation_split=0.1,
        seed=args.seed,
        verbose=0 if args.smoke else "auto",
    )
    print(ticket.lottery.summary())

    calibration = data if args.format == "tflite-int8-full" else None
    report = keras_lottery.export(
        ticket,
        args.out,
        format=args.format,
        verify_data=data,
        representative_data=calibration,
        overwrite=True,
    )
    print(report)


if __name__ == "__main__":
    main()
