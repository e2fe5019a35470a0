"""`--opt KEY=VALUE` options: the Option type, parsing, the reference-code quirks, and the one
rule that names a method's options `<model>.<name>` in a run spec."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from msde_bench.errors import MsdeError

_KIND_WORDS = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Option:
    """One `--opt KEY=VALUE` option of a paradigm or method.

    `default` fixes the type (bool, int, float or str); `choices` lists the allowed values;
    `min`/`max` bound a number (inclusive); `check(value)` returns an error text, or None when
    the value is fine. A bad value fails when `--opt` is parsed, before anything runs.
    `aliases` are other names `--opt` accepts (e.g. the official code's spelling); specs store
    the option under its own name."""

    default: Any
    help: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    check: Callable[[Any], str | None] | None = None
    aliases: tuple[str, ...] = ()

    def parse(self, key: str, text: str) -> Any:
        kind = type(self.default)
        try:
            if kind is bool:
                low = text.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError
                value = low in ("true", "1", "yes", "on")
            elif kind is int:
                value = int(text)
            elif kind is float:
                value = float(text)
            else:
                value = text
        except ValueError:
            raise MsdeError(f"--opt {key}={text}: expected {_KIND_WORDS.get(kind, kind.__name__)}") from None
        problem = self.problem(value)
        if problem:
            raise MsdeError(f"--opt {key}={text}: {problem}")
        return value

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None."""
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.choices is not None and value not in self.choices:
            return f"choose one of {', '.join(map(str, self.choices))}"
        if self.min is not None and value < self.min:
            return f"must be >= {self.min:g}"
        if self.max is not None and value > self.max:
            return f"must be <= {self.max:g}"
        return self.check(value) if self.check is not None else None


def positive(value: float) -> str | None:
    """An Option check: the value must be > 0."""
    return None if value > 0 else "must be > 0"


#: The reference code's bugs that change numbers. The harness does the correct thing by default;
#: each quirk can be switched on with --opt NAME=true to reproduce the reference.
QUIRKS: dict[str, Option] = {
    "quirk_double_softmax": Option(False, "apply softmax before cross-entropy (the reference classifier ends in "
                                          "softmax and its probabilities go into CrossEntropyLoss)"),
    "quirk_eval_normalisation": Option(False, "evaluate with mean = std = 0.5 while training with ImageNet "
                                              "mean/std, as the reference code does"),
    "quirk_24_epochs": Option(False, "under --recipe paper, train 24 epochs: the reference loop is "
                                     "range(1, 25) although it asks for 25"),
    "quirk_pool_normalised": Option(False, "L2-normalise the trunk's last feature map over channels before "
                                           "anything uses it, so that the classifier average-pools the "
                                           "normalised map, as the reference ResNet does"),
}


#: --quirks values: none (each quirk by its --opt), or reference (every reference-code quirk on)
QUIRK_SETS = ("none", "reference")


def alias_keys(valid: dict[str, Option]) -> dict[str, str]:
    """{alias key: option key} for every alias; a method option's alias keeps its `<model>.` prefix."""
    out = {}
    for key, opt in valid.items():
        prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
        out.update({prefix + alias: key for alias in opt.aliases})
    return out


def parse_options(pairs: list[str] | tuple[str, ...], valid: dict[str, Option]) -> dict[str, Any]:
    """Parses KEY=VALUE strings against the valid options (or their aliases); returns every option
    with its value."""
    values = {k: o.default for k, o in valid.items()}
    aliases = alias_keys(valid)
    for item in pairs:
        if "=" not in item:
            raise MsdeError(f"--opt {item!r}: expected KEY=VALUE")
        key, text = item.split("=", 1)
        key = aliases.get(key.strip(), key.strip())
        if key not in valid:
            names = ", ".join(sorted(valid)) or "(none)"
            raise MsdeError(f"--opt {key}: unknown option; valid options here: {names}")
        values[key] = valid[key].parse(key, text)
    return values


# -- the `<model>.<option>` rule: a method's options are stored under its name, so a method's
# `beta` never clashes with a paradigm's. This is the only place that spells the rule.

def method_key(model: str, name: str) -> str:
    """The spec key of method option `name` of `model`."""
    return f"{model}.{name}"


def method_values(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The method's own options out of a spec's options, by their bare names."""
    prefix = f"{model}."
    return {k[len(prefix):]: v for k, v in options.items() if k.startswith(prefix)}


def is_method_key(model: str, key: str) -> bool:
    return key.startswith(f"{model}.")
