"""The networks of Frankle & Carbin (2019), ready to prune.

Every builder returns a *compiled* Keras 3 model with Glorot-normal kernels,
zero biases and the paper's optimizer settings (arXiv:1803.03635, Figure 2):

=================  =====================================================  ==============
name               architecture                                           optimizer
=================  =====================================================  ==============
``lenet_300_100``  dense 300-100-classes                                  Adam 1.2e-3
``lenet5``         conv 6@5x5, pool, conv 16@5x5, pool, dense 120-84      Adam 1.2e-3
``conv2``          conv 64-64, pool, dense 256-256-classes                Adam 2e-4
``conv4``          conv 64-64, pool, 128-128, pool, dense 256-256         Adam 3e-4
``conv6``          conv 64-64, pool, 128-128, pool, 256-256, pool, dense  Adam 3e-4
``xor``            dense ``units`` (ReLU), 1 sigmoid output               Adam 1e-2
=================  =====================================================  ==============

Convolutions are 3x3 with ``same`` padding and ReLU, max-pooling is 2x2.  The
Conv-2 on CIFAR-10 thus has 4.3M weights, as in the paper.  ``lenet5`` is the
classic LeNet-5 (LeCun et al. 1998) and ``xor`` the one-hidden-layer network of
the paper's first version; their optimizers are this library's choice.

>>> model = get_model("lenet_300_100", input_shape=(28, 28), num_classes=10, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

Shape = Sequence[int]


class _Init:
    """Seeded Glorot-normal initializers, a different seed for each layer."""

    def __init__(self, seed: int | None):
        self.seed, self.count = seed, 0

    def __call__(self) -> keras.initializers.Initializer:
        self.count += 1
        seed = None if self.seed is None else self.seed * 1000 + self.count
        return keras.initializers.GlorotNormal(seed=seed)


def _compile(model: keras.Model, lr: float, loss: str) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=loss,
        metrics=["accuracy"],
    )
    return model


def _image_shape(input_shape: Shape) -> tuple[int, ...]:
    """Conv nets need a channel axis: (28, 28) becomes (28, 28, 1)."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 2:
        return (*shape, 1)
    if len(shape) != 3:
        raise ValueError(f"A convolutional model needs (height, width[, channels]), got {shape}.")
    return shape


def _dense(units: int, init: _Init, activation: str = "relu", name: str | None = None):
    return keras.layers.Dense(units, activation, kernel_initializer=init(), name=name)


def _conv(filters: int, size: int, init: _Init, name: str, padding: str = "valid"):
    return keras.layers.Conv2D(
        filters, size, padding=padding, activation="relu", kernel_initializer=init(), name=name
    )


def _classifier(
    name: str,
    inputs: keras.KerasTensor,
    x: keras.KerasTensor,
    hidden: Sequence[int],
    num_classes: int,
    init: _Init,
    lr: float,
) -> keras.Model:
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(hidden):
        x = _dense(units, init, name=f"dense_{i + 1}")(x)
    outputs = _dense(num_classes, init, "softmax", name="output")(x)
    model = keras.Model(inputs, outputs, name=name)
    return _compile(model, lr, "sparse_categorical_crossentropy")


def lenet_300_100(
    input_shape: Shape = (28, 28), num_classes: int = 10, seed: int | None = None
) -> keras.Model:
    """LeNet-300-100: fully connected 300-100-``num_classes`` (266,610 weights on MNIST)."""
    inputs = keras.Input(tuple(input_shape), name="image")
    return _classifier(
        "lenet_300_100", inputs, inputs, (300, 100), num_classes, _Init(seed), 1.2e-3
    )


def lenet5(
    input_shape: Shape = (28, 28), num_classes: int = 10, seed: int | None = None
) -> keras.Model:
    """LeNet-5: conv 6@5x5 (same), pool, conv 16@5x5, pool, dense 120-84-``num_classes``."""
    init = _Init(seed)
    inputs = keras.Input(_image_shape(input_shape), name="image")
    x = _conv(6, 5, init, "conv_1", padding="same")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool_1")(x)
    x = _conv(16, 5, init, "conv_2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool_2")(x)
    return _classifier("lenet5", inputs, x, (120, 84), num_classes, init, 1.2e-3)


def _conv_net(name: str, filters: Sequence[int], lr: float):
    def build(
        input_shape: Shape = (32, 32, 3), num_classes: int = 10, seed: int | None = None
    ) -> keras.Model:
        init = _Init(seed)
        inputs = keras.Input(_image_shape(input_shape), name="image")
        x = inputs
        for i, f in enumerate(filters):
            x = _conv(f, 3, init, f"conv_{i + 1}", padding="same")(x)
            if i % 2 == 1:
                x = keras.layers.MaxPooling2D(2, name=f"pool_{i // 2 + 1}")(x)
        return _classifier(name, inputs, x, (256, 256), num_classes, init, lr)

    build.__name__ = name
    build.__doc__ = (
        f"{name.capitalize()}: conv {'-'.join(map(str, filters))} (3x3, max-pool after "
        f"each pair), dense 256-256-``num_classes``; Adam {lr:g}."
    )
    return build


conv2 = _conv_net("conv2", (64, 64), 2e-4)
conv4 = _conv_net("conv4", (64, 64, 128, 128), 3e-4)
conv6 = _conv_net("conv6", (64, 64, 128, 128, 256, 256), 3e-4)


def xor(
    input_shape: Shape = (2,), num_classes: int = 2, seed: int | None = None, units: int = 4
) -> keras.Model:
    """One hidden layer of ``units`` ReLU units and one sigmoid output (binary labels)."""
    if num_classes not in (1, 2):
        raise ValueError(f"The xor model is a binary classifier; got num_classes={num_classes}.")
    init = _Init(seed)
    inputs = keras.Input(tuple(input_shape), name="x")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    x = _dense(units, init, name="hidden")(x)
    outputs = _dense(1, init, "sigmoid", name="output")(x)
    return _compile(keras.Model(inputs, outputs, name="xor"), 1e-2, "binary_crossentropy")


#: Name -> builder ``(input_shape, num_classes, seed) -> compiled model``.
MODELS: dict[str, Callable[..., keras.Model]] = {
    "lenet_300_100": lenet_300_100,
    "lenet5": lenet5,
    "conv2": conv2,
    "conv4": conv4,
    "conv6": conv6,
    "xor": xor,
}


def get_model(
    name: str,
    input_shape: Shape,
    num_classes: int,
    seed: int | None = None,
    **kwargs,
) -> keras.Model:
    """Build the zoo model ``name`` (see :data:`MODELS`), compiled.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    key = name.lower().replace("-", "_")
    if key not in MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(MODELS)}.")
    return MODELS[key](input_shape=input_shape, num_classes=num_classes, seed=seed, **kwargs)
