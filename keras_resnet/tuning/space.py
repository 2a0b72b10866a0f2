"""The search space: what :class:`~keras_resnet.tuning.hypermodel.HyperResNet` samples.

:data:`SEARCH_SPACE` is one dict over keys of the spec table (:mod:`keras_resnet.specs`)
and arguments of the training recipe. :func:`narrow_space` narrows it per search: a
single value fixes a key, a list picks a subset of choices, a ``(low, high)`` pair narrows
a range. Nothing here imports TensorFlow or Keras.
"""

import dataclasses
import math

from keras_resnet import specs
from keras_resnet.training.config import AUGMENTATIONS, SCHEDULES
from keras_resnet.utils import is_number

FAMILIES = ("cifar", "imagenet")
TUNERS = ("random", "hyperband", "bayesian")


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``values`` (a single value: fixed)."""

    values: tuple

    def __init__(self, *values):
        object.__setattr__(self, "values", tuple(values))


@dataclasses.dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``, sampled uniformly or log-uniformly."""

    low: float
    high: float
    log: bool = False


# ------------------------------------------------------------------------ search space
# key: default search (a pair: (small inputs, large inputs) where the families differ).
SEARCH_SPACE = {
    # model: keys of keras_resnet.specs
    "variant": (Choice("v1", "v2"), Choice("v1", "v1.5", "v1d", "v2")),
    # CIFAR depths valid for both v1 (6n+2) and v2 (9n+2); ImageNet depths of DEPTHS
    "depth": (Choice(20, 38, 56), Choice(18, 26, 34, 50)),
    "width_multiplier": Choice(0.5, 1.0, 2.0),
    "se": Choice(False, True),
    "stochastic_depth_rate": Choice(0.0, 0.1, 0.2),
    # recipe: arguments of keras_resnet.training.compile_model
    "lr": Range(0.05, 1.0, log=True),  # per 256 images, scaled to the global batch
    "weight_decay": Range(1e-5, 1e-3, log=True),
    "label_smoothing": Choice(0.0, 0.1),
    "warmup_fraction": Choice(0.0, 0.1, 0.2),  # warm-up epochs = fraction x epochs
    "schedule": Choice("step", "cosine"),
    # augmentation strength: presets of keras_resnet.data, weakest first
    "augmentation": (Choice("none", "crop", "cifar"), Choice("none", "imagenet")),
}


def _is_number(value):
    return is_number(value) and math.isfinite(value)


# key -> (test of one value, what it must be); "variant" and "depth" depend on the family
_VALUE_RULES = {
    "width_multiplier": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "se": (lambda v: isinstance(v, bool), "True or False"),
    "stochastic_depth_rate": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "lr": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "weight_decay": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "label_smoothing": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "warmup_fraction": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "schedule": (lambda v: v in SCHEDULES, f"one of {SCHEDULES}"),
}


def default_space(family):
    """:data:`SEARCH_SPACE` for one family: ``{key: Choice | Range}``."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}. Received: family={family!r}")
    index = FAMILIES.index(family)
    return {k: v[index] if isinstance(v, tuple) else v for k, v in SEARCH_SPACE.items()}


def _allowed(key, value, family, variants):
    """(ok, expected) for one value of ``key``."""
    if key == "variant":
        names = tuple(specs.CIFAR_VARIANTS if family == "cifar" else specs.VARIANTS)
        return value in names, f"one of {names} for {family} inputs"
    if key == "depth":
        if family == "imagenet":
            return value in specs.DEPTHS, f"one of {sorted(specs.DEPTHS)} (keras_resnet.specs.DEPTHS)"
        ok = isinstance(value, int) and all(specs.cifar_blocks(value, v) for v in variants)
        rules = {"v1": "6n+2", "v2": "9n+2"}
        return ok, "a CIFAR depth valid for every variant searched (" + ", ".join(
            f"{v}: {rules[v]}" for v in variants) + ")"
    if key == "augmentation":
        return value in AUGMENTATIONS, f"one of {AUGMENTATIONS}"
    test, expected = _VALUE_RULES[key]
    return test(value), expected


def narrow_space(space, family):
    """The default space of ``family`` narrowed by ``space`` (``{key: value | list |
    (low, high) | Choice | Range}``); ValueError naming a bad key or value."""
    space = {} if space is None else space
    if not isinstance(space, dict):
        raise ValueError(f"space must be a dict of search keys. Received: space={space!r}")
    result = default_space(family)
    unknown = sorted(set(space) - set(result))
    if unknown:
        raise ValueError(
            f"Unknown search key(s) {unknown}; keys are {sorted(result)}. Received: space={space!r}")
    for key, given in space.items():
        default = result[key]
        if isinstance(given, (Choice, Range)):
            narrowed = given
        elif isinstance(default, Range) and isinstance(given, tuple) and len(given) == 2:
            narrowed = Range(float(given[0]), float(given[1]), default.log)
        elif isinstance(given, (list, tuple)):
            narrowed = Choice(*given)
        else:
            narrowed = Choice(given)
        if isinstance(narrowed, Range) and (
            not (_is_number(narrowed.low) and _is_number(narrowed.high)) or narrowed.low > narrowed.high
        ):
            raise ValueError(f"space[{key!r}] must be a range low <= high. Received: {key}={given!r}")
        if isinstance(narrowed, Choice) and not narrowed.values:
            raise ValueError(f"space[{key!r}] must hold at least one value. Received: {key}={given!r}")
        result[key] = narrowed
    variants = result["variant"].values
    for key, entry in result.items():
        values = (entry.low, entry.high) if isinstance(entry, Range) else entry.values
        for value in values:
            ok, expected = _allowed(key, value, family, variants)
            if not ok:
                raise ValueError(f"{key} must be {expected}. Received: {key}={value!r}")
        if isinstance(entry, Range) and entry.log and entry.low <= 0:
            raise ValueError(f"{key} is sampled on a log scale: low must be > 0. Received: {key}={entry!r}")
    return result


def _keys_only(space):
    """``space`` reduced to a check of its keys (values need the input size)."""
    if not isinstance(space, dict):
        return space
    unknown = {k: v for k, v in space.items() if k not in SEARCH_SPACE}
    return unknown


def _sample(hp, key, entry):
    """One keras-tuner hyperparameter for a space entry."""
    if isinstance(entry, Range):
        if entry.low == entry.high:
            return hp.Fixed(key, float(entry.low))
        return hp.Float(key, float(entry.low), float(entry.high), sampling="log" if entry.log else "linear")
    values = list(dict.fromkeys(entry.values))
    if len(values) == 1:
        return hp.Fixed(key, values[0])
    if all(isinstance(v, bool) for v in values):
        return hp.Boolean(key)
    if all(_is_number(v) for v in values) and not all(isinstance(v, int) for v in values):
        values = [float(v) for v in values]
    return hp.Choice(key, values)




def parse_space(items):
    """``["variant=v1", "depth=20,32", "lr=0.05:0.4", "se=false"]`` -> a space dict."""
    def scalar(text):
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text.strip()

    space = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(
                f"--space must be KEY=VALUE, KEY=V1,V2 or KEY=LOW:HIGH. Received: --space {item!r}")
        key = key.strip()
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 2:
                raise ValueError(f"--space ranges are LOW:HIGH. Received: --space {item!r}")
            space[key] = tuple(scalar(p) for p in parts)
        elif "," in text:
            space[key] = [scalar(p) for p in text.split(",")]
        else:
            space[key] = scalar(text)
    return space


