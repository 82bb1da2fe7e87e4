"""``--output``/``-o``: where a command writes, one name across the commands.

``report`` and ``stability`` called it ``--out`` before; that name still works
as a hidden alias.
"""

from __future__ import annotations

import functools
from typing import Any

import click
from click.core import ParameterSource

#: The old name, accepted and not shown.
ALIAS = "--out"


def output_option(help: str, default: str | None = None, **kwargs: Any):
    """Decorator: the ``output`` argument from ``--output``/``-o`` or its hidden alias ``--out``.

    ``default`` applies when neither is given; both at once is a usage error.
    """

    def decorate(f):
        @functools.wraps(f)
        def command(*args, output=None, output_alias=None, **rest):
            if output_alias is not None:
                source = click.get_current_context().get_parameter_source("output")
                if source is not ParameterSource.DEFAULT:
                    raise click.UsageError(
                        f"--output and {ALIAS} are the same option: give it once."
                    )
                output = output_alias
            return f(*args, output=output, **rest)

        shown = {"default": default, "show_default": True} if default is not None else {}
        command = click.option("--output", "-o", help=help, **shown, **kwargs)(command)
        return click.option(ALIAS, "output_alias", hidden=True, **kwargs)(command)

    return decorate
