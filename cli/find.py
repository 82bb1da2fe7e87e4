"""``find`` and ``resume``: run one configuration in its run directory."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import click

from keras_lottery_options import AT_INIT_SPECS, Spec, run_specs

from .choices import DEFAULTS as D
from .choices import GRANULARITIES, MODELS
from .errors import check_jsonl_target, user_errors


def _layer_rate(ctx, param, values: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in values:
        name, sep, rate = item.rpartition("=")
        try:
            out[name] = float(rate)
        except ValueError:
            name = sep = ""
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=RATE (e.g. dense_1=0.3), got {item!r}")
    return out


class _Granularity(click.Choice):
    """``weight``, ``unit`` or an N:M pattern (``2:4``: keep 2 of every 4 inputs)."""

    def __init__(self) -> None:
        super().__init__(list(GRANULARITIES))

    def get_metavar(self, param, ctx) -> str:
        return "[" + "|".join(GRANULARITIES) + "|N:M]"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if text in GRANULARITIES:
            return text
        n, sep, m = text.partition(":")
        if not (sep and n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
            self.fail(
                f"{value!r} is not one of {', '.join(GRANULARITIES)} or an N:M pattern with "
                "0 < N < M (e.g. 2:4 keeps 2 of every 4 consecutive inputs).",
                param,
                ctx,
            )
        return f"{int(n)}:{int(m)}"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


#: Search options that need their own parser: ``{name: (spec, run default) -> click option}``.
SPECIAL_OPTIONS = {
    "layer_rates": lambda spec, default: click.option(
        "--layer-rate",
        "layer_rates",
        multiple=True,
        callback=_layer_rate,
        metavar="NAME=RATE",
        help=f"{spec.help} Repeatable.",
    ),
    "granularity": lambda spec, default: click.option(
        "--granularity", type=_Granularity(), default=default, show_default=True, help=spec.help
    ),
    "rewind_to": lambda spec, default: click.option(
        "--rewind-to", default=default, show_default=True, help=spec.help
    ),
}


def search_option(name: str, spec: Spec):
    """The click option of one search option, from its declaration (keras_lottery.options)."""
    default = D[name]
    if name in SPECIAL_OPTIONS:
        return SPECIAL_OPTIONS[name](spec, default)
    if spec.kind is bool:
        return click.option(_flag(name), is_flag=True, help=spec.help)
    if spec.choices:
        kind = click.Choice(list(spec.choices))
    elif spec.kind is int:
        kind = click.IntRange(min=spec.low) if spec.low is not None else int
    else:
        kind = spec.kind
    shown = {} if default is None else {"default": default, "show_default": True}
    return click.option(_flag(name), type=kind, help=spec.help, **shown)


#: The run options of ``find`` (one per key of :data:`keras_lottery.runs.directory.DEFAULTS`).
RUN_OPTIONS = [
    click.option(
        "--model",
        default=D["model"],
        show_default=True,
        help=f"Zoo model ({', '.join(MODELS)}) or a .keras file (its weights are θ0).",
    ),
    click.option(
        "--dataset",
        default=D["dataset"],
        show_default=True,
        help="'mnist-5k' (embedded, offline), a folder of MNIST IDX files, a .npz "
        "(x_train, y_train, x_test, y_test) or a TFDS name.",
    ),
    click.option("--data-dir", help="TFDS data_dir where a TFDS dataset is prepared."),
    click.option(
        "--train-size", type=click.IntRange(min=1), help="Use the first N training examples."
    ),
    click.option("--test-size", type=click.IntRange(min=1), help="Use the first N test examples."),
    click.option(
        "--optimizer",
        help="Keras optimizer name (e.g. adam, sgd): replaces the model's, or compiles "
        "an uncompiled .keras file (default adam).",
    ),
    click.option("--lr", type=float, help="Learning rate (default: the paper's / the model's)."),
    *(search_option(name, spec) for name, spec in run_specs().items()),
    click.option(
        "--validation-split",
        type=float,
        default=D["validation_split"],
        show_default=True,
        help="Held-out training fraction for the early-stop iteration (0: none).",
    ),
    click.option(
        "--early-bird",
        is_flag=True,
        help="Stop each pruning round once its mask stops changing (You et al.); the final "
        "ticket still trains in full.",
    ),
    click.option(
        "--steps-per-execution",
        type=click.IntRange(min=1),
        default=D["steps_per_execution"],
        show_default=True,
        help="Training steps per compiled call: same results, less per-step overhead "
        "(e.g. 50 for small models). Not part of the run id.",
    ),
    *(search_option(name, spec) for name, spec in AT_INIT_SPECS.items()),
]

PROGRESS_OPTIONS = [
    click.option("--quiet", "-q", is_flag=True, help="No progress bar or round lines."),
    click.option(
        "--log-jsonl",
        type=click.Path(dir_okay=False),
        help="Append one JSON object per round (and one at the end) to this file.",
    ),
    click.option(
        "--tensorboard",
        type=click.Path(file_okay=False),
        help="Write TensorBoard logs to DIR/round_<r>.",
    ),
]


def apply(options):
    """Decorator adding a list of click options in order."""

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def done_line(run_dir: Path) -> str:
    """``<run>/ticket.keras: 32.9% of weights remain, test accuracy ...`` from ``DONE``."""
    from keras_lottery.runs import directory as runs

    s = runs.done_summary(run_dir) or {}
    pct, acc, es = (
        s.get("percent_remaining"),
        s.get("test_accuracy"),
        s.get("early_stop_test_accuracy"),
    )
    line = (
        f"{run_dir / runs.TICKET_FILE}: {'?' if pct is None else f'{pct:.1f}'}% of weights remain"
    )
    if acc is not None:
        line += f", test accuracy {acc:.4f}"
    if es is not None:
        line += f" ({es:.4f} at the early-stop iteration)"
    return line


def execute(
    config: dict[str, Any],
    run_dir: Path,
    quiet: bool = False,
    log_jsonl: str | None = None,
    tensorboard: str | None = None,
) -> None:
    """Run or resume ``config`` in ``run_dir`` with progress output; no-op if done."""
    from keras_lottery.runs import directory as runs

    from .progress import RoundProgress, RoundTensorBoard, write_jsonl

    if runs.is_done(run_dir):
        problem = runs.ticket_problem(run_dir)
        if problem is None:
            click.echo(f"Run {run_dir} is already done; nothing to do.")
            click.echo(done_line(run_dir))
            return
        click.echo(f"Run {run_dir} is done, but {problem}: {runs.REBUILDING}.")
        runs.rebuild_ticket(run_dir)
        if log_jsonl:
            summary = runs.done_summary(run_dir) or {}
            write_jsonl(log_jsonl, {"event": "rebuilt", "run_dir": str(run_dir), **summary})
        click.echo(f"Rebuilt {done_line(run_dir)}")
        return
    last = runs.total_rounds(config) - 1
    completed = runs.completed_round(run_dir)
    first = 0 if completed is None else completed + 1
    echo = None if quiet else click.echo
    if not quiet:
        verb = f"Resuming after round {completed}" if completed is not None else "Starting"
        click.echo(f"{verb}: run {run_dir} ({config['model']} on {Path(config['dataset']).name})")
    progress = RoundProgress(run_dir, last, first, echo=echo, jsonl=log_jsonl)
    callbacks = [progress]
    if tensorboard:
        if importlib.util.find_spec("tensorboard") is None:
            raise click.UsageError("--tensorboard needs the tensorboard package: pip install it.")
        callbacks.append(RoundTensorBoard(tensorboard, first))
    t0 = time.perf_counter()
    ticket = runs.run(config, run_dir, callbacks=callbacks, verbose=0 if quiet else "auto")
    progress.finish(ticket.lottery)
    if log_jsonl:
        write_jsonl(
            log_jsonl,
            {"event": "done", "run_dir": str(run_dir), **(runs.done_summary(run_dir) or {})},
        )
    if not quiet:
        click.echo(ticket.lottery.summary())
    click.echo(f"Done in {time.perf_counter() - t0:.1f}s: {done_line(run_dir)}")


def options_to_config(options: dict[str, Any]) -> dict[str, Any]:
    """CLI option values -> a raw run configuration (validated by normalize_config)."""
    return {k: options[k] for k in D}


@click.command()
@apply(RUN_OPTIONS)
@click.option(
    "--runs-root",
    type=click.Path(file_okay=False),
    default="runs",
    show_default=True,
    help="Where run directories are created.",
)
@apply(PROGRESS_OPTIONS)
def find(runs_root, quiet, log_jsonl, tensorboard, **options):
    """Find a winning ticket; the run lives in RUNS_ROOT/<config hash>.

    With no options: LeNet-300-100 on the embedded 5,000-digit MNIST sample,
    5 rounds of 20% layerwise pruning (output layer 10%) with rewinding to θ0,
    8 epochs per round, 10% of the training data held out for early stopping,
    seed 0: about a minute on two CPU cores, offline.

    The same options again resume an unfinished run, or report a finished one.
    """
    check_jsonl_target(log_jsonl)
    with user_errors():
        from keras_lottery.runs import directory as runs

        try:
            config = runs.normalize_config(options_to_config(options))
        except (ValueError, FileNotFoundError) as e:  # a bad option value: a usage error
            raise click.UsageError(str(e)) from None
        run_dir = runs.prepare_run(config, runs_root)
        execute(config, run_dir, quiet, log_jsonl, tensorboard)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@apply(PROGRESS_OPTIONS)
def resume(run_dir, quiet, log_jsonl, tensorboard):
    """Continue RUN_DIR after its last finished round (reads its config.json)."""
    check_jsonl_target(log_jsonl)
    with user_errors():
        from keras_lottery.runs import directory as runs

        config = runs.load_config(run_dir)
        execute(config, run_dir, quiet, log_jsonl, tensorboard)
