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
- :func:`check_added_keys`: an appended key (``+stage.max_step=10``) that nothing reads is
  refused with the nearest valid option. A key is read when it is an argument of the object its
  node builds (the ``_target_``'s signature, or the dataclass of one that takes ``**kwargs``:
  :data:`KWARGS_SCHEMAS`), lies inside such an argument's value (a mapping such as
  ``data.task.reward.weights``), adds an object (``+callbacks.x._target_=...``), or is named by
  an interpolation of the config (``${oc.select:stage.batch_size,16}``). Every option of the
  stage modules is listed in ``conf/stage/*.yaml`` (tests/test_config_options.py keeps the YAML
  equal to the code), so options never need ``+``.

Why not Hydra structured configs (ConfigStore schemas): a schema must be registered in Python
before every compose (tests and notebooks compose ``conf/`` directly), and typed nodes reject
``stage.module.group_size=lots`` inside composition with a multi-line error instead of the
one-line message above.

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


#: ``_target_``s that take their options as ``**kwargs`` -> the dataclass that defines them
KWARGS_SCHEMAS = {"wm.stages.grpo.GRPOModule": "wm.stages.grpo_settings:GRPOSettings"}
#: keys Hydra itself reads in a node that builds an object
HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def target_options(target: str) -> dict | None:
    """``{option: default}`` the ``_target_`` callable takes (``inspect.Parameter.empty`` when
    required); a ``**kwargs`` callable adds its :data:`KWARGS_SCHEMAS` dataclass' fields. None:
    any keyword (``**kwargs`` without a schema) or not importable here (not judged)."""
    import dataclasses
    import importlib
    import inspect

    from hydra.utils import get_object

    try:
        params = inspect.signature(get_object(target)).parameters.values()
    except Exception:  # noqa: BLE001 (Hydra reports an unimportable target itself)
        return None
    options = {p.name: p.default for p in params
               if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        if target not in KWARGS_SCHEMAS:
            return None
        module, name = KWARGS_SCHEMAS[target].split(":")
        schema = getattr(importlib.import_module(module), name)
        options.update({f.name: f.default for f in dataclasses.fields(schema)})
    return options


def _interpolated_keys(cfg) -> set[str]:
    """Absolute keys named by the config's interpolations (``${a.b}``, ``${oc.select:a.b,x}``)."""
    import re

    from omegaconf import OmegaConf

    keys: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and "${" in node:
            keys.update(re.findall(r"\$\{(?:oc\.select:)?([A-Za-z_][\w.]*)", node))

    walk(OmegaConf.to_container(cfg, resolve=False))
    return keys


def _nearest(name: str, candidates, prefix: str) -> str:
    """``did you mean <prefix>.<closest>?``, or the valid options when none is close."""
    import difflib

    names = sorted(c for c in candidates if not c.startswith("_"))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    dot = f"{prefix}." if prefix else ""
    if close:
        return f"did you mean {dot}{close[0]}?"
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return f"its options: {shown}" if names else "it has no options"


def _unread(cfg, key: str, added: set[str]) -> str | None:
    """Why nothing reads the appended ``key`` (the message's tail), or None when something does."""
    from omegaconf import DictConfig, OmegaConf

    parts = key.split(".")
    if parts[-1] in HYDRA_KEYS:
        return None                                 # adds an object, or a Hydra flag
    for depth in range(len(parts) - 1, -1, -1):
        node = OmegaConf.select(cfg, ".".join(parts[:depth])) if depth else cfg
        if isinstance(node, DictConfig) and "_target_" in node:
            if depth < len(parts) - 1:
                return None                         # inside an argument's value (a mapping)
            options = target_options(str(node._target_))
            if options is None or parts[-1] in options:
                return None
            return (f"{node._target_} takes no option {parts[-1]}; "
                    + _nearest(parts[-1], options, ".".join(parts[:-1])))
    if key in _interpolated_keys(cfg):
        return None
    # a plain settings node, read by code: its options are the keys it had before the append
    for depth in range(len(parts) - 1, -1, -1):
        prefix = ".".join(parts[:depth])
        node = OmegaConf.select(cfg, prefix) if depth else cfg
        existing = [k for k in node if f"{prefix}.{k}".lstrip(".") not in added
                    and not any(a.startswith(f"{prefix}.{k}.".lstrip(".")) for a in added)] \
            if isinstance(node, DictConfig) else []
        if existing or depth == 0:
            group = cfg.get(parts[0]) if depth and _is_group(parts[0]) else None
            name = group.get("name") if isinstance(group, DictConfig) else None
            where = f"{parts[0]}={name}" if isinstance(name, str) else "the config"
            return (f"nothing reads {key} ({where} has no option "
                    f"{'.'.join(parts[:depth + 1])}); " + _nearest(parts[depth], existing, prefix))
    return None


def check_added_keys(cfg, overrides: list[str], config_name: str) -> None:
    """Refuse an appended ``+key=value`` (or ``++key=value`` of a new key) that nothing reads,
    naming the nearest valid option (module docstring). Needs Hydra's global state for ``++``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    added = [o for o in parsed if (o.is_add() or o.is_force_add())
             and not _is_group(o.key_or_group) and not o.key_or_group.startswith("hydra.")]
    if any(o.is_force_add() for o in added):
        from hydra import compose

        try:
            base = compose(config_name=config_name,
                           overrides=[o.input_line for o in parsed if _is_group(o.key_or_group)])
        except Exception:  # noqa: BLE001 (the run itself reports a config that does not compose)
            base = None
        added = [o for o in added if not o.is_force_add() or base is None or
                 OmegaConf.select(base, o.key_or_group, default=_ABSENT,
                                  throw_on_missing=False) is _ABSENT]
    keys = {o.key_or_group for o in added}
    for o in added:
        why = _unread(cfg, o.key_or_group, keys)
        if why:
            raise ConfigValueError(f"{o.input_line}: {why}")


_ABSENT = object()
