"""``report``: tables and paper-style plots over run directories."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import user_errors
from .output import output_option


def _write(target: str, text: str) -> None:
    """``text`` to stdout (``-``) or into ``target``, atomically (temp file, then rename)."""
    from keras_lottery.records.files import atomic_write

    if target == "-":
        click.echo(text, nl=False)
    else:
        atomic_write(Path(target), lambda f: f.write(text.encode()))


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@output_option(
    "Write accuracy.png and early_stop.png into this folder.", type=click.Path(file_okay=False)
)
@click.option("--csv", "csv_path", metavar="FILE", help="Write the table as CSV ('-': stdout).")
@click.option("--json", "json_path", metavar="FILE", help="Write the table as JSON ('-': stdout).")
@click.option(
    "--group-by",
    multiple=True,
    metavar="KEY",
    help="Group runs by these settings (repeatable) [those that differ, except seed].",
)
def report(paths, output, csv_path, json_path, group_by):
    """Summarize PATHS (run directories, or folders of them, e.g. runs/).

    Per group and round: test accuracy at the end of training and at the
    early-stop iteration, early-stop iteration and percent of weights
    remaining, as mean [min, max] over seeds.  Then per group what the
    tickets cost: training iterations, "x IMP" (those iterations over IMP's to
    the same sparsity at the same rate, trainings as long as the final one:
    computed, not measured), wall time, in training and outside it.
    """
    with user_errors():
        from keras_lottery.runs import report as lib

        def skip(run_dir, error):
            click.echo(f"Warning: skipping {run_dir}: {error}", err=True)

        loaded = lib.load_runs(paths, skip)
        for run in loaded:
            if run.damaged:
                click.echo(f"Warning: {run.damaged}", err=True)
        rows = lib.summarize(loaded, group_by or None)
        if not rows:
            raise click.ClickException("The runs have no finished round yet.")
        if "-" not in (csv_path, json_path):
            click.echo(lib.format_table(rows))
            costs = lib.cost_rows(loaded, group_by or None)
            if costs:
                click.echo("\nCost (from a random network to the trained ticket):")
                click.echo(lib.format_cost_table(costs))
        if csv_path:
            _write(csv_path, lib.to_csv(rows))
        if json_path:
            _write(json_path, lib.to_json(rows) + "\n")
        if output:
            for figure in lib.plot(rows, output).values():
                click.echo(f"Wrote {figure.path}", err=True)
