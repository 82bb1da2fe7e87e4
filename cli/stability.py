"""``stability``: linear mode connectivity of a zoo model, and the earliest stable rewind point."""

from __future__ import annotations

from pathlib import Path

import click

from .choices import DEFAULTS, MODELS
from .errors import user_errors
from .output import output_option


@click.command()
@click.option(
    "--model",
    default=DEFAULTS["model"],
    show_default=True,
    help=f"Zoo model ({', '.join(MODELS)}).",
)
@click.option(
    "--dataset",
    default=DEFAULTS["dataset"],
    show_default=True,
    help="Dataset name or IDX/NPZ path.",
)
@click.option("--data-dir", help="TFDS data_dir where a TFDS dataset is prepared.")
@click.option(
    "--rewind-to",
    "rewind_to",
    type=click.IntRange(min=0),
    multiple=True,
    default=(0,),
    show_default=True,
    help="Iteration k to branch the two copies from (repeat to scan several).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Training length of each copy, from 0.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=DEFAULTS["batch_size"], show_default=True
)
@click.option(
    "--points",
    type=click.IntRange(min=2),
    default=30,
    show_default=True,
    help="Evaluations along the line.",
)
@click.option(
    "--threshold",
    type=float,
    default=0.02,
    show_default=True,
    help="Largest error barrier called stable.",
)
@click.option("--seed", type=int, default=DEFAULTS["seed"], show_default=True)
@output_option(
    "Plot of error along the path (PNG).", "stability.png", type=click.Path(dir_okay=False)
)
def stability(
    model, dataset, data_dir, rewind_to, steps, batch_size, points, threshold, seed, output
):
    """Train two copies of MODEL from iteration k on different data orders and plot the
    test error on the line between them (Frankle et al. 2020); print each k's
    instability and the earliest stable k.
    """
    with user_errors():
        import keras_lottery as kl
        from keras_lottery.records.files import atomic_write

        data = kl.load_dataset(dataset, data_dir=data_dir)
        net = kl.zoo.get_model(model, data.x_train.shape[1:], data.num_classes, seed=seed)
        scan = kl.stable_rewind_point(
            net,
            data,
            rewind_to,
            threshold=threshold,
            scan_all=True,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            seeds=(seed + 1, seed + 2),
            points=points,
        )
        for k, result in scan.results.items():
            click.echo(
                f"rewind_to={k}: instability {100 * result.instability:.2f} points "
                f"(endpoint errors {100 * result.endpoint_errors[0]:.2f}%, "
                f"{100 * result.endpoint_errors[1]:.2f}%)"
            )
        click.echo(f"earliest stable k (<= {100 * threshold:g} points): {scan.stable}")
        figure = _plot(scan, model)
        atomic_write(Path(output), lambda f: figure.savefig(f, format="png", dpi=120))
        click.echo(f"Wrote {output}", err=True)


def _plot(scan, model):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, result in scan.results.items():
        ax.plot(result.alphas, [100 * e for e in result.errors], label=f"k = {k}")
    ax.set_xlabel("interpolation α between the two copies")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{model}: linear mode connectivity")
    ax.legend()
    fig.tight_layout()
    return fig
