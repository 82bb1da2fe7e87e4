"""The options of a ticket search, each declared once, without TensorFlow.

Three frozen groups of :func:`keras_lottery.find_ticket`'s options, named after
the steps of the paper's algorithm they control:

* :class:`Pruning` -- how many prunings, how much and what (step 3),
* :class:`Reset` -- what the survivors are reset to (step 4),
* :class:`Training` -- how every round trains (step 2).

(:class:`keras_lottery.EarlyBird` says when a round may stop early.)

Every field is declared once, with its default, its type and range or choices
and a one-line help text (its :class:`Spec`), and checked once, when the
object is made.  The run configuration's defaults and checks
(:mod:`keras_lottery.runs.directory`) and the options of ``keras-lottery find`` are
derived from these declarations.  This package imports nothing but the
standard library, so the command line's ``--help`` stays instant; use it as
``keras_lottery.Pruning`` (or ``keras_lottery.options``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

#: What happens to the survivors after each pruning (step 4), and to the mask (step 3).
STRATEGIES = (
    "rewind",
    "reinit",
    "rearrange",
    "random_prune",
    "invert",
    "continue",
    "finetune",
    "lr_rewind",
)
SCOPES = ("layerwise", "global")
#: Granularities by name; an ``"N:M"`` pattern such as ``"2:4"`` is one too.
GRANULARITIES = ("weight", "unit")
#: How whole units are ranked (``granularity="unit"``).
UNIT_CRITERIA = ("input", "l1", "l2", "output", "product")
#: Ways to the masks: iterative magnitude pruning, or masks learned in one phase.
METHODS = ("imp", "learned")
#: Which examples the pruning rounds train on (``prune_subset``).
SUBSET_RULES = ("critical", "random")


class _Unset:
    """The default of a flat keyword of ``find_ticket``: take the option object's default."""

    def __repr__(self) -> str:
        return "<default>"


#: Marks a keyword that was not given.
UNSET: Any = _Unset()
_SAME: Any = _Unset()


@dataclass(frozen=True)
class Spec:
    """How one option is typed, checked, explained and set in a run configuration.

    Args:
        help: one line, for docs and ``--help``.
        kind: ``bool``, ``int``, ``float`` or ``str`` (one of ``choices``);
            ``object`` for a value checked by ``check``.
        low, high: bounds of a number (``high`` always excluded).
        open_low: ``low`` itself is excluded.
        optional: ``None`` is allowed (and means "not set").
        choices: the allowed strings.
        hint: added to the message of an out-of-range value.
        run_default: the default in a run configuration, where it differs.
        run: whether the option is a key of a run configuration (and an
            option of ``keras-lottery find``).
        check: ``check(name, value) -> value`` for a value of a special form.
        parse_text: ``parse_text(value) -> value`` turning JSON/YAML/command-line text
            into the option's type; it never raises (the check does).
    """

    help: str
    kind: type = object
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    optional: bool = False
    choices: tuple[str, ...] = ()
    hint: str = ""
    run_default: Any = _SAME
    run: bool = True
    check: Callable[[str, Any], Any] | None = None
    parse_text: Callable[[Any], Any] | None = None

    def validate(self, name: str, value: Any) -> Any:
        """``value`` if it is allowed (an integral number becomes an ``int``); else a ValueError."""
        if value is None and self.optional:
            return None
        if self.check is not None:
            return self.check(name, value)
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}.")
            return value
        if self.choices:
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(
                    f"{name} must be one of {', '.join(self.choices)}. Unknown {name}: {value!r}."
                )
            return value
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if self.kind is int:
            if not (number and isinstance(value, numbers.Integral) and self._in_range(value)):
                raise ValueError(f"{name} must be {self._int_words()}, got {value!r}{self._hint}.")
            return int(value)
        if number and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}.")
        if not (number and self._in_range(value)):
            raise ValueError(f"{name} must be {self._range_words()}, got {value!r}{self._hint}.")
        return value

    def parse(self, value: Any) -> Any:
        """``value`` from JSON, YAML or the command line in the option's type, where it converts.

        Nothing is checked here: :meth:`validate` names what is wrong.
        """
        if self.parse_text is not None:
            return self.parse_text(value)
        if self.kind in (int, float):
            return _to_number(value, self.kind)
        return value

    def _in_range(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or value < self.high

    def _int_words(self) -> str:
        if self.low == 1 and self.high is None:
            return "a positive integer"
        return (
            f"an integer >= {self.low}" if self.high is None else f"an integer in {self._bounds()}"
        )

    def _range_words(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low}"
        return f"in {self._bounds()}"

    def _bounds(self) -> str:
        return f"{'(' if self.open_low else '['}{float(self.low)}, {float(self.high)})"

    @property
    def _hint(self) -> str:
        return f" ({self.hint})" if self.hint else ""


def _to_number(value: Any, kind: type) -> Any:
    """A number from text: ``"0.2"`` -> 0.2, ``1`` -> 1.0 (a float option), ``"3"`` -> 3.

    An integer option takes ``3.0`` as 3; what does not convert is returned as it is.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return value
    if kind is int and isinstance(value, int):
        return value
    if kind is int and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    try:
        number = float(value)
    except ValueError:
        return value
    if kind is int and math.isfinite(number) and number.is_integer():
        return int(number)
    return number


def option(default: Any, help: str, **spec: Any) -> Any:
    """A dataclass field: ``default`` and its :class:`Spec`."""
    return field(default=default, metadata={"spec": Spec(help, **spec)})


def _rate(help: str, default: float | None, **spec: Any) -> Any:
    return option(default, help, kind=float, low=0.0, high=1.0, open_low=True, **spec)


# -- options of a special form ------------------------------------------------


def _n_m_text(value: Any) -> str | None:
    """``"N:M"`` with ``0 < N < M`` in its plain form (``" 02:4"`` -> ``"2:4"``), else None."""
    if not isinstance(value, str):
        return None
    n, sep, m = value.strip().partition(":")
    if sep and n.isdigit() and m.isdigit() and 0 < int(n) < int(m):
        return f"{int(n)}:{int(m)}"
    return None


def _check_granularity(name: str, value: Any) -> str:
    if value in GRANULARITIES or (isinstance(value, str) and _n_m_text(value) is not None):
        return value
    raise ValueError(
        f"{name} must be one of {', '.join(GRANULARITIES)} or an N:M pattern with "
        f"0 < N < M such as '2:4'; got {value!r}."
    )


def _parse_granularity(value: Any) -> Any:
    return value if value in GRANULARITIES else (_n_m_text(value) or value)


def _check_rewind_to(name: str, value: Any) -> str | int:
    if value == "init" and isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise ValueError(f"{name} must be 'init' or an iteration >= 0, got {value!r}.")


def _parse_rewind_to(value: Any) -> Any:
    return value if value == "init" else _to_number(value, int)


#: The longest mask phase of ``method="learned"``, in trainings.
MAX_MASK_PHASE = 4.0


def _check_mask_phase(name: str, value: Any) -> float:
    """A length in ``(0, MAX_MASK_PHASE]`` trainings."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and 0.0 < value <= MAX_MASK_PHASE):
        raise ValueError(f"{name} must be in (0, {MAX_MASK_PHASE:g}] (trainings), got {value!r}.")
    return float(value)


_LAYER_RATE = Spec("", kind=float, low=0.0, high=1.0, open_low=True)


def _check_layer_rates(name: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name} must map layer names to rates, got {value!r}.")
    return {k: _LAYER_RATE.validate(f"{name}[{k!r}]", v) for k, v in value.items()}


def _parse_layer_rates(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value or {}
    return {str(k): _to_number(v, float) for k, v in sorted(value.items())}


# -- the option groups ------------------------------------------------------------


class _Options:
    """Checks every field of a frozen option dataclass against its :class:`Spec`."""

    #: The keyword of ``find_ticket`` that takes this group.
    keyword: ClassVar[str]

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = f.metadata["spec"].validate(f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self._check_together()

    def _check_together(self) -> None:
        """Rules between fields (after each field is checked)."""

    @classmethod
    def specs(cls) -> dict[str, Spec]:
        """``{field: Spec}`` in declaration order."""
        return {f.name: f.metadata["spec"] for f in fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{field: default}`` of ``find_ticket``."""
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}  # type: ignore[arg-type]

    @classmethod
    def gather(cls, given: Any, flat: Mapping[str, Any]):
        """The group from ``find_ticket``: the object ``given``, or its flat keywords.

        ``flat`` maps the group's field names to keyword values (:data:`UNSET`
        where a keyword was not given).
        """
        passed = {k: v for k, v in flat.items() if k in cls.specs() and v is not UNSET}
        if given is None:
            return cls(**passed)
        if not isinstance(given, cls):
            raise TypeError(
                f"{cls.keyword} must be a {cls.__name__}(...) or None, got {type(given).__name__}."
            )
        if passed:
            names = ", ".join(f"{k}=" for k in passed)
            raise TypeError(
                f"{names} and {cls.keyword}={cls.__name__}(...) both set {cls.__name__} options: "
                f"pass them inside {cls.__name__}(...) or give only the keywords."
            )
        return given

    def to_dict(self) -> dict[str, Any]:
        """``{field: value}``, as the search's configuration holds them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class Pruning(_Options):
    """Step 3: how many prunings, how much of each layer and what is pruned.

    ``rounds`` prunings of ``rate`` of the remaining weights end at sparsity
    ``1 - (1 - rate) ** rounds``; ``target_sparsity`` sets that end instead.
    ``layer_rates`` keys match a weight's path (``"dense_1/kernel"``), a glob
    over paths (``"*attention*"``) or the name of the layer holding it.
    ``granularity="unit"`` removes whole units (Dense columns, conv filters,
    depthwise channels; the output layer keeps its units) ranked by
    ``unit_criterion``; ``"N:M"`` such as ``"2:4"`` keeps N of every M
    consecutive inputs.  ``scope="global"`` (one threshold, as open_lth) takes
    neither ``layer_rates`` nor units.

    >>> Pruning(rounds=5, rate=0.2)          # the paper's iterative pruning
    >>> Pruning(target_sparsity=0.9, one_shot=True)
    """

    keyword: ClassVar[str] = "pruning"

    rounds: int = option(
        5, "Number of prunings n (final sparsity 1 - (1 - rate)**n).", kind=int, low=1
    )
    rate: float = _rate(
        "Fraction of the remaining weights pruned per round (paper: 0.2).",
        0.2,
        hint="0.2 prunes 20% per round",
    )
    output_rate: float | None = _rate(
        "Rate of the output layer (default: rate / 2, as in the paper).", None, optional=True
    )
    layer_rates: Mapping[str, float] | None = option(
        None,
        "Rates by weight path, glob over paths or layer name (they win over rate, output_rate).",
        optional=True,
        run_default={},
        check=_check_layer_rates,
        parse_text=_parse_layer_rates,
    )
    target_sparsity: float | None = _rate(
        "Final sparsity instead of rate: prune 1-(1-target)**(1/rounds) per round (e.g. 0.9).",
        None,
        optional=True,
        hint="a sparsity of 1 would remove every weight",
    )
    one_shot: bool = option(
        False, "Prune to the final sparsity in a single round (the paper's one-shot).", kind=bool
    )
    scope: str = option(
        "layerwise",
        "One threshold per layer (layerwise, paper) or one for all layers (global).",
        kind=str,
        choices=SCOPES,
    )
    granularity: str = option(
        "weight",
        "What is pruned: single weights, whole units (Dense columns, conv filters; compact the "
        "ticket to run faster) or N:M groups (e.g. 2:4: of every 4 consecutive inputs of a "
        "unit, 2 are kept).",
        check=_check_granularity,
        parse_text=_parse_granularity,
    )
    unit_criterion: str = option(
        "product",
        "Unit score for granularity unit: the L1 (input, l1) or L2 (l2) norm of its weights, "
        "the L1 norm of its outgoing weights (output) or both multiplied (product).",
        kind=str,
        choices=UNIT_CRITERIA,
    )
    method: str = option(
        "imp",
        "imp: prune by magnitude, round after round; learned: learn a gate per weight in one "
        "training, ending on the sparsity the rounds would reach, then train the ticket "
        "(two trainings in all).",
        kind=str,
        choices=METHODS,
    )
    mask_phase: float = option(
        1.0,
        "method learned: length of the mask-learning phase, in trainings (0.5: half of one; "
        "up to 4).",
        kind=float,
        check=_check_mask_phase,
    )

    def _check_together(self) -> None:
        if self.scope == "global" and (self.layer_rates or self.granularity == "unit"):
            raise ValueError(
                "scope='global' uses one threshold for all layers: it cannot be "
                "combined with layer_rates or granularity='unit'."
            )
        if self.method == "learned" and self.granularity != "weight":
            raise ValueError(
                "method='learned' learns a gate per weight: use granularity='weight' "
                f"(got {self.granularity!r})."
            )

    @property
    def prunings(self) -> int:
        """How many times the search prunes: 1 when one-shot or learned, else ``rounds``."""
        return 1 if self.one_shot or self.method == "learned" else self.rounds

    def rounds_after(self, r: int) -> int:
        """Rounds of ``rate`` in the masks pruned after round ``r`` (all of them in one go)."""
        return self.rounds if self.prunings == 1 else r + 1


@dataclass(frozen=True)
class Reset(_Options):
    """Step 4: what the surviving weights (and the optimizer) start the next round from.

    ``strategy``: ``"rewind"`` (the lottery ticket: θ0, or θk with
    ``rewind_to=k``, the weights after k iterations of round 0) or a control:
    ``"reinit"`` (same masks, fresh weights from the layers' initializers),
    ``"rearrange"`` (same count per layer at random positions, θ0 values),
    ``"random_prune"`` (random masks, same sparsity), ``"invert"`` (keep the
    *lowest*-ranked survivors instead, same counts: smallest magnitudes, or
    lowest learned scores; Frankle et al. 2021's sanity check), ``"continue"`` (Han et
    al.: keep the trained weights), ``"finetune"`` (keep them and retrain at
    ``finetune_lr_scale`` times the learning rate), ``"lr_rewind"`` (Renda et
    al. 2020: keep the trained survivors, fresh optimizer, replay the
    learning-rate schedule from iteration 0, or from k with ``rewind_to=k``).

    >>> Reset(strategy="rewind", rewind_to=500)   # late rewinding to iteration 500
    """

    keyword: ClassVar[str] = "reset"

    strategy: str = option(
        "rewind",
        "rewind = lottery ticket; lr_rewind keeps the trained weights and replays the "
        "learning-rate schedule (Renda et al.); the others are the paper's controls.",
        kind=str,
        choices=STRATEGIES,
    )
    rewind_to: str | int = option(
        "init",
        "'init' (θ0) or an iteration k of round 0 (late rewinding).",
        check=_check_rewind_to,
        parse_text=_parse_rewind_to,
    )
    finetune_lr_scale: float = option(
        0.1,
        "Factor on the learning rate of strategy='finetune'.",
        kind=float,
        low=0.0,
        open_low=True,
        run=False,
    )


@dataclass(frozen=True)
class Training(_Options):
    """Step 2: how long and how every round trains.

    >>> Training(steps=1000, batch_size=60, seed=0)
    """

    keyword: ClassVar[str] = "training"

    epochs: int = option(
        1, "Training length of every round, in epochs.", kind=int, low=1, run_default=8
    )
    steps: int | None = option(
        None,
        "Training length of every round, in iterations (wins over epochs).",
        kind=int,
        low=1,
        optional=True,
    )
    batch_size: int = option(60, "Examples per batch of (x, y) arrays.", kind=int, low=1)
    eval_every: int | None = option(
        None,
        "Evaluate every this many iterations (default: each epoch).",
        kind=int,
        low=1,
        optional=True,
    )
    seed: int | None = option(
        None,
        "Seed of data order, initializers and masks (None: not seeded).",
        kind=int,
        low=0,
        optional=True,
        run_default=0,
    )
    prune_subset: float | None = _rate(
        "Pruning rounds (not the final ticket) train on this fraction of the training examples "
        "(data-efficient IMP; None: all of them). Needs (x, y) arrays.",
        None,
        optional=True,
    )
    subset_rule: str = option(
        "critical",
        "Which examples prune_subset keeps: critical (after each pruning, those the pruned "
        "network gets most wrong, after Zhang et al. 2021) or random (a control).",
        kind=str,
        choices=SUBSET_RULES,
    )


#: Criteria of :func:`keras_lottery.prune_at_init`.
AT_INIT_METHODS = ("snip", "grasp", "synflow", "magnitude", "random")

#: Run options that prune the network at θ0 before the search (``--at-init snip
#: --sparsity 0.95``): not ``find_ticket`` options, so in no group.  Unset (None)
#: they leave the run id of a configuration unchanged.
AT_INIT_SPECS: dict[str, Spec] = {
    "at_init": Spec(
        "Prune at θ0 by this criterion first (keras_lottery.prune_at_init, global scope); "
        "round 0 trains that sparse network, later rounds continue IMP from its masks.",
        kind=str,
        choices=AT_INIT_METHODS,
        optional=True,
    ),
    "sparsity": Spec(
        "Sparsity of --at-init (e.g. 0.95 keeps 5% of the pruned weights).",
        kind=float,
        low=0.0,
        high=1.0,
        optional=True,
    ),
}


#: The option groups, by the keyword of ``find_ticket`` that takes each.
GROUPS: dict[str, type[_Options]] = {cls.keyword: cls for cls in (Pruning, Reset, Training)}


def run_specs() -> dict[str, Spec]:
    """``{key: Spec}`` of every option that is a key of a run configuration."""
    return {name: spec for cls in GROUPS.values() for name, spec in cls.specs().items() if spec.run}


def run_defaults() -> dict[str, Any]:
    """``{key: default}`` of those options in a run configuration."""
    out = {}
    for cls in GROUPS.values():
        defaults = cls.defaults()
        for name, spec in cls.specs().items():
            if spec.run:
                out[name] = defaults[name] if spec.run_default is _SAME else spec.run_default
    return out


__all__ = [
    "AT_INIT_METHODS",
    "AT_INIT_SPECS",
    "GRANULARITIES",
    "GROUPS",
    "METHODS",
    "Pruning",
    "Reset",
    "SCOPES",
    "STRATEGIES",
    "SUBSET_RULES",
    "Spec",
    "Training",
    "UNIT_CRITERIA",
    "UNSET",
    "option",
    "run_defaults",
    "run_specs",
]
