"""Config errors as one line naming the option: value types of command-line overrides, and
errors raised while building objects from the config.

- :func:`check_override_types`: Hydra accepts ``stage.max_steps=2O`` as the string ``"2O"``; the
  Trainer then fails deep inside with a ``TypeError`` that names ``trainer``, not the option.
  Each ``key=value`` override is compared with the type of the same key in the config composed
  without the value overrides (the defaults of the chosen groups and experiment): a number,
  flag, list or mapping replaced by something else is refused with the key, the value given and
  an override of the right type (the default's value).
- :func:`one_line_errors`: train.py and eval.py run their body inside it. A constructor error
  raised while Hydra builds an object (``InstantiationException``: three lines, the option's
  path last) and this project's own user-facing errors (missing or unreadable files, bad data)
  become a one-line exit naming the config key, as does an error whose message starts with the
  option it is about (``num_threads='x': ...``). ``HYDRA_FULL_ERROR=1`` keeps the traceback.

- :func:`check_choices`: an option with a fixed set of values (``data.task.decoding``, ...)
  outside that set is refused before any run folder or checkpoint is looked at.

Light on purpose (no torch/lightning at import): train.py calls it before anything heavy.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CONF = Path(__file__).resolve().parents[2] / "conf"


class ConfigValueError(SystemExit):
    """A command-line value of the wrong type (the message is the one line to print)."""


def _kind(value) -> str | None:
    """The type family of a plain config value that an override must keep, or None (any)."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(value, bool):
        return "a boolean (true/false)"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple, ListConfig)):
        return "a list"
    if isinstance(value, (dict, DictConfig)):
        return "a mapping"
    return None                          # strings and nulls take anything


def _same_kind(default, value) -> bool:
    kind = _kind(default)
    return kind is None or value is None or kind == _kind(value)


def _show(value) -> str:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_show(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value)


def _is_group(key: str) -> bool:
    key = key.split("@", 1)[0]
    return key.startswith("hydra/") or (CONF / key).is_dir()


def check_override_types(cfg, overrides: list[str], config_name: str) -> None:
    """Refuse a ``key=value`` override whose value has another type than the key's default
    (see the module docstring). Needs Hydra's global state (inside ``@hydra.main``)."""
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    groups = [o.input_line for o in parsed if _is_group(o.key_or_group)]
    values = [o for o in parsed if not _is_group(o.key_or_group) and not o.is_delete()
              and not o.is_add() and not o.is_force_add()
              and not o.key_or_group.startswith("hydra.")]
    if not values:
        return
    try:
        base = compose(config_name=config_name, overrides=groups)
    except Exception:  # noqa: BLE001 (the run itself reports a config that does not compose)
        return
    for o in values:
        key = o.key_or_group
        try:
            default = OmegaConf.select(base, key, throw_on_missing=False)
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
        except Exception:  # noqa: BLE001 (an unresolvable interpolation: not a type question)
            continue
        if not _same_kind(default, value):
            given = o.input_line.split("=", 1)[1] if "=" in o.input_line else o.input_line
            raise ConfigValueError(
                f"{key}={given}: {key} takes {_kind(default)}, e.g. `{key}={_show(default)}` "
                "(its default)")


#: options with a fixed set of values -> "module:constant" holding the allowed values (imported
#: only when the option is in the config); checked before anything is loaded, so a bad value is
#: not reported after the run folder and the checkpoints it would need
CHOICES = {"data.task.decoding": "wm.tasks.video_decoding:DECODINGS",
           "data.task.layout": "wm.tasks.video:LAYOUTS"}


def check_choices(cfg) -> None:
    """Refuse a value outside its option's allowed set (:data:`CHOICES`), naming both."""
    import importlib

    from omegaconf import OmegaConf

    for key, where in CHOICES.items():
        value = OmegaConf.select(cfg, key, throw_on_missing=False, default=None)
        if value is None:
            continue
        module, name = where.split(":")
        allowed = tuple(getattr(importlib.import_module(module), name))
        if value not in allowed:
            raise ConfigValueError(f"{key}={value!r}: choose one of {allowed}")


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn config-construction and user-facing errors into a one-line exit (module docstring)."""
    from hydra.errors import InstantiationException

    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        yield
        return
    try:
        yield
    except InstantiationException as err:
        cause = _root_cause(err)
        full_key = next((line.split(":", 1)[1].strip() for line in str(err).splitlines()
                         if line.startswith("full_key:")), "")
        where = f" (while building {full_key} from the config)" if full_key else ""
        raise SystemExit(f"{type(cause).__name__}: {_first_line(cause)}{where}") from None
    except Exception as err:
        if not _user_facing(err):
            raise
        raise SystemExit(f"{type(err).__name__}: {_first_line(err)}") from None


def _user_facing(err: BaseException) -> bool:
    """This project's errors meant for the user: bad data, unreadable or missing checkpoints,
    and value errors whose message starts with the option (``num_threads='x': use ...``)."""
    import re
    import sys

    if isinstance(err, (ValueError, TypeError, KeyError)) and \
            re.match(r"[\w.]+=\S", _first_line(err).strip("'\"")):
        return True
    kinds = [FileNotFoundError]
    for module, name in (("wm.data.episodes", "DataError"),
                         ("wm.utils.checkpoints", "CheckpointError")):
        cls = getattr(sys.modules.get(module), name, None)   # imported only if it could be raised
        if cls is not None:
            kinds.append(cls)
    return isinstance(err, tuple(kinds))
