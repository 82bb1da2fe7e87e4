"""``list``: the run directories under a runs root and how far each got."""

from __future__ import annotations

import click

from .errors import user_errors


@click.command("list")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, file_okay=False))
def list_runs(paths):
    """List runs in PATHS (runs roots or run directories; default: runs/)."""
    with user_errors():
        from keras_lottery.runs import directory as runs

        dirs = runs.list_runs(paths or ["runs"])
        for d in dirs:
            try:
                info = runs.run_info(d)
            except (runs.RunError, runs.CorruptCheckpointError, ValueError, OSError) as e:
                click.echo(f"Warning: skipping {d}: {e}", err=True)
                continue
            settings = " ".join(f"{k}={v}" for k, v in runs.non_default(info.config).items())
            line = f"{d}  {info.status:<10}  {settings or '(defaults)'}"
            click.echo(line + (f"  ({info.failed})" if info.failed else ""))
            if info.damaged:
                click.echo(f"  {info.damaged}")
