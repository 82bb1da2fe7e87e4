"""``export``: write a finished run's ticket as .keras, SavedModel or TFLite."""

from __future__ import annotations

from pathlib import Path

import click

from .choices import EXPORT_FORMATS
from .errors import user_errors
from .output import output_option


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "format_",
    type=click.Choice(list(EXPORT_FORMATS)),
    default="tflite",
    show_default=True,
)
@output_option(
    "Output file (folder for saved_model) [RUN_DIR/export/<name><suffix>].",
    type=click.Path(path_type=Path),
)
@click.option("--name", help="File name stem [ticket].")
@click.option(
    "--verify-size",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Test examples of the run's dataset to verify the export on (0: random inputs).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option(
    "--rnn",
    type=click.Choice(["unroll"]),
    help="TFLite: convert recurrent layers (LSTM, GRU...) unrolled (fixed sequence length).",
)
@click.option(
    "--compact",
    is_flag=True,
    help="Export a smaller dense model: dead units folded away (Dense/Conv chains).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Fix the batch of the SavedModel/TFLite signature (1 for latency: no per-call "
    "shape ops) [any batch].",
)
def export(run_dir, format_, output, name, verify_size, overwrite, rnn, compact, batch_size):
    """Export the ticket of the finished run RUN_DIR (its ticket.keras).

    The export is loaded back and compared with the Keras model on the run's
    test data; tflite-int8-full calibrates on the run's training images.
    """
    with user_errors():
        from keras_lottery.runs import directory as runs

        problem = runs.ticket_problem(run_dir)
        if problem is not None:
            click.echo(f"{run_dir}: {problem}: {runs.REBUILDING}.", err=True)
        report = runs.export_run(
            run_dir,
            format_,
            output,
            name=name,
            verify_size=verify_size,
            overwrite=overwrite,
            rnn=rnn,
            compact=compact,
            batch_size=batch_size,
        )
        click.echo(report.summary())
        if Path(f"{report.path}.sha256").is_file():
            click.echo(f"sha256 {Path(f'{report.path}.sha256').read_text().split()[0]}")
