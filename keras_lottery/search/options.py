"""A search's options, checked together, and the configuration its record holds.

:func:`~keras_lottery.find_ticket` takes each option group of
:mod:`keras_lottery.options` as an object or as flat keywords.  ``SearchOptions``
gathers them with the options outside the groups (early-bird, gradual pruning,
include/exclude, the validation split), refuses combinations no single group
can see, and makes the configuration that the record, the run directory and
its fingerprint hold.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keras_lottery.criteria import magnitude
from keras_lottery.criteria.early_bird import EarlyBird
from keras_lottery.options import GROUPS, Pruning, Reset, Training

#: The keys of a search's configuration (its record's ``config``), in order.
_CONFIG_KEYS = (
    "rounds",
    "rate",
    "output_rate",
    "layer_rates",
    "include",
    "exclude",
    "target_sparsity",
    "one_shot",
    "scope",
    "strategy",
    "rewind_to",
    "granularity",
    "unit_criterion",
    "gradual",
    "early_bird",
    "epochs",
    "steps",
    "batch_size",
    "validation_split",
    "eval_every",
    "seed",
    "finetune_lr_scale",
    "data_dir",
    "run_dir",
    "data_version",
    "verbose",
    "data",
)
#: Keys added after 0.3.0: in the configuration only where they differ from their default,
#: so that a run directory started by 0.3.0 matches its configuration and resumes.
_LATER_KEYS = {"method": "imp", "mask_phase": 1.0, "prune_subset": None, "subset_rule": "critical"}


@dataclass(frozen=True)
class SearchOptions:
    """A search's checked options, and the configuration its record and checkpoints hold."""

    pruning: Pruning
    reset: Reset
    training: Training
    early_bird: EarlyBird | None
    gradual: Any
    include: Any
    exclude: Any
    validation_split: float | None
    config: dict[str, Any]

    @classmethod
    def of(cls, args: Mapping[str, Any]) -> SearchOptions:
        """From ``find_ticket``'s arguments: the option objects or their flat keywords."""
        groups = {kw: group.gather(args[kw], args) for kw, group in GROUPS.items()}
        p, reset = groups["pruning"], groups["reset"]
        gradual, split = args["gradual"], args["validation_split"]
        random_prune = reset.strategy == "random_prune"
        if gradual is not None and (p.rounds != 1 or p.one_shot or random_prune):
            raise ValueError(
                "gradual pruning happens inside the first round: use it with rounds=1, "
                "one_shot=False and a strategy other than 'random_prune'."
            )
        eb = EarlyBird.of(args["early_bird"])
        if eb is not None and (random_prune or gradual is not None):
            raise ValueError(
                "early_bird watches the magnitude mask during training: it cannot be combined "
                "with strategy='random_prune' or gradual magnitude."
            )
        if reset.strategy == "invert" and (p.granularity != "weight" or gradual is not None):
            raise ValueError(
                "strategy='invert' keeps the lowest-ranked single weights: use it with "
                f"granularity='weight' and without gradual pruning (got granularity="
                f"{p.granularity!r}{', gradual' if gradual is not None else ''})."
            )
        _check_method(p, groups["training"], eb, gradual)
        if split is not None and (not isinstance(split, numbers.Real) or not 0.0 < split < 1.0):
            raise ValueError(f"validation_split must be in (0, 1), got {split!r}.")
        data, run_dir = args["data"], args["run_dir"]
        config = {
            **{k: v for group in groups.values() for k, v in group.to_dict().items()},
            "include": _describe_selector(args["include"]),
            "exclude": _describe_selector(args["exclude"]),
            "gradual": None if gradual is None else _describe(gradual),
            "early_bird": None if eb is None else eb.to_config(),
            "validation_split": split,
            "data_dir": args["data_dir"],
            "run_dir": None if run_dir is None else str(run_dir),
            "data_version": args["data_version"],
            "verbose": args["verbose"],
            "data": data if isinstance(data, str) or data is None else type(data).__name__,
        }
        later = {k: config[k] for k, default in _LATER_KEYS.items() if config[k] != default}
        config = {**{k: config[k] for k in _CONFIG_KEYS}, **later}
        return cls(
            **groups,
            early_bird=eb,
            gradual=gradual,
            include=args["include"],
            exclude=args["exclude"],
            validation_split=split,
            config=config,
        )

    @property
    def rate(self) -> float:
        """The rate of each pruning (from ``target_sparsity`` if it is given)."""
        p = self.pruning
        if p.target_sparsity is None:
            return p.rate
        return magnitude.per_round_rate(p.target_sparsity, p.rounds)


def _check_method(p: Pruning, t: Training, eb, gradual) -> None:
    """Refuse what learned masks and pruning on a subset cannot be combined with."""
    if p.method == "learned" and (eb is not None or gradual is not None):
        raise ValueError(
            "method='learned' learns the masks in one phase of gates: it cannot be combined "
            "with early_bird or gradual pruning (both watch magnitude pruning's rounds)."
        )
    if t.prune_subset is not None and (p.method == "learned" or eb is not None):
        raise ValueError(
            "prune_subset shortens IMP's pruning rounds: use it with method='imp' and without "
            "early_bird."
        )


def _describe_selector(selector) -> Any:
    """A JSON-ready form of include/exclude for the run's configuration."""
    if selector is None or isinstance(selector, str):
        return selector
    items = [selector] if not isinstance(selector, list | tuple) else list(selector)
    return [
        s
        if isinstance(s, str)
        else f"re:{s.pattern}"
        if hasattr(s, "pattern")
        else f"callable:{getattr(s, '__qualname__', type(s).__name__)}"
        for s in items
    ]


def _describe(obj) -> Any:
    """A JSON-ready description of a schedule or callback (for the run's config)."""
    inner = getattr(obj, "schedule", obj)
    config = getattr(inner, "get_config", None)
    return {"class": type(inner).__name__, **(config() if callable(config) else {})}
