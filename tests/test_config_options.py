"""Every option is settable on the command line, and the code is the one source of truth (#27 D).

- The options of each stage's module (``GRPOSettings``, ``GRPOLossConfig``, ``MLEModule`` and
  ``TokenizerModule`` arguments) are exactly the keys of ``conf/stage/<stage>.yaml``, so
  ``stage.module.loss.importance=sequence`` needs no ``+``; a YAML value that differs from the
  code's default says so on its line (``# code default: <value>``).
- Every option named in docs/stages.md and docs/metrics.md composes with a valid value and lands
  in the config (parsed from the docs, so a documented option cannot be missing from conf/).
- An appended key that nothing reads (``+stage.max_step=10``) is refused with one line naming the
  key and the nearest valid option, for every stage.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from wm.cli.config_check import CHOICES, ConfigValueError, check_added_keys, target_options
from wm.rl.advantages import ADVANTAGES
from wm.rl.aggregation import AGGREGATIONS
from wm.rl.kl import KL_ESTIMATORS
from wm.rl.loss import GRPOLossConfig
from wm.rl.surrogate import IMPORTANCE_LEVELS
from wm.stages.grpo_settings import GRPOSettings, settings_table

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DOCS = [ROOT / "docs" / "stages.md", ROOT / "docs" / "metrics.md"]
MODULE_STAGES = ["tokenizer", "mle", "grpo"]
ABSENT = object()


def _compose(overrides, name="train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def _options(node: DictConfig) -> dict:
    """``{option: default}`` of the object a config node builds (``target_options``)."""
    options = target_options(node._target_)
    assert options is not None, f"{node._target_} takes any keyword: give it a schema"
    return options


# --------------------------------------------------------------------- conf/stage = the code
@pytest.mark.parametrize("stage", MODULE_STAGES)
def test_every_module_option_is_a_key_of_its_stage_yaml(stage):
    module = _compose([f"stage={stage}"]).stage.module
    nodes = {"stage.module": module}
    if "loss" in module:
        nodes["stage.module.loss"] = module.loss
    for path, node in nodes.items():
        keys = set(node) - {"_target_", "_partial_"}
        options = set(_options(node))
        assert not options - keys, f"{path} lacks {sorted(options - keys)} (add them to " \
                                   f"conf/stage/{stage}.yaml with the code's default)"
        assert not keys - options, f"{path} has {sorted(keys - options)}, which nothing reads"


def _literal_lines(stage: str) -> list[tuple[str, str, str]]:
    """``(path, value, comment)`` of the scalar lines of ``stage.module`` (and its ``loss``)."""
    out, parents = [], []
    for line in (CONF / "stage" / f"{stage}.yaml").read_text().splitlines():
        m = re.match(r"^( *)([\w]+):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)) // 2, m.group(2), m.group(3)
        parents = parents[:indent] + [key]
        value, _, comment = rest.partition("#")
        if value.strip() and parents[0] == "module" and len(parents) <= 3:
            out.append((".".join(parents[1:]), value.strip(), comment.strip()))
    return out


@pytest.mark.parametrize("stage", MODULE_STAGES)
def test_yaml_defaults_are_the_code_defaults_or_say_so(stage):
    """A literal in conf/stage/<stage>.yaml equals the code's default, or its line carries
    ``# code default: <value>`` (the quickstart's sizes): YAML and code cannot drift silently."""
    module = _compose([f"stage={stage}"]).stage.module
    for path, value, comment in _literal_lines(stage):
        node_path, _, name = path.rpartition(".")
        node = OmegaConf.select(module, node_path) if node_path else module
        if not isinstance(node, DictConfig) or "_target_" not in node or name.startswith("_") \
                or node_path.endswith("optimizer") or value.startswith(("${", "{")):
            continue
        default = _options(node).get(name, inspect.Parameter.empty)
        if default is inspect.Parameter.empty:
            continue
        given = OmegaConf.select(node, name)
        if given != default:
            assert re.search(rf"code default: {re.escape(_show(default))}\b", comment), \
                f"stage.module.{path}: {value} in conf/stage/{stage}.yaml, {default!r} in the " \
                f"code; make them equal or add `# code default: {_show(default)}` to the line"


def _show(value) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_experiments_set_only_real_options(experiment):
    cfg = _compose([f"experiment={experiment}"])
    module = cfg.stage.get("module")
    if module is None:
        return
    for node in [module] + ([module.loss] if "loss" in module else []):
        unknown = set(node) - set(_options(node)) - {"_target_", "_partial_"}
        assert not unknown, f"experiment={experiment} sets {sorted(unknown)}, which nothing reads"


# ------------------------------------------------------------------ documented options compose
ROOTS = ("stage.", "data.", "model.", "vision.", "trainer.", "loss.")


def documented_options() -> dict[str, str | None]:
    """``{key: value or None}`` of every option the docs name: backticked dotted keys
    (``stage.max_steps``, ``loss.importance=sequence``), rows of option tables
    (``| option (`stage.module.*`) |``) and the ``GRPOLossConfig`` field list of metrics.md."""
    found: dict[str, str | None] = {}

    def add(key, value):
        if key.startswith("loss."):
            key = "stage.module." + key
        if value is not None and (value.startswith("<") or not value):
            value = None
        if found.get(key) is None:
            found[key] = value

    for doc in DOCS:
        text = doc.read_text()
        for span in re.findall(r"`([^`\n]+)`", text):
            m = re.fullmatch(r"\+?([a-z_]+(?:\.[a-z_]+)+)(?:=(\S*))?", span)
            if m and m.group(1).startswith(ROOTS):
                add(m.group(1), m.group(2))
        prefix = None
        for line in text.splitlines():
            header = re.match(r"\| option \(`([\w.]+)\.\*`\)", line)
            if header:
                prefix = header.group(1)
            elif prefix and (row := re.match(r"\| `(\w+)` \|", line)):
                add(f"{prefix}.{row.group(1)}", None)
            elif not line.startswith("|"):
                prefix = None
        listed = re.search(r"`GRPOLossConfig` fields[^:]*:(.*?)`validate\(\)`", text, re.S)
        for span in re.findall(r"`(\w+)=[^`]*`", listed.group(1) if listed else ""):
            add(f"stage.module.loss.{span}", None)
    return found


def appended_options() -> dict[str, str]:
    """``{key: value}`` of the options the docs set with ``+`` on purpose (a key kept out of the
    shared config, e.g. so that runs which do not set it keep their run identity)."""
    spans = re.findall(r"`\+([a-z_]+(?:\.[a-z_]+)+)=(\S+)`", "".join(d.read_text() for d in DOCS))
    return dict(spans)


#: string options: a valid value other than the default
STRING_CHOICES = {"kl_estimator": KL_ESTIMATORS, "aggregation": AGGREGATIONS,
                  "advantage": ADVANTAGES, "importance": IMPORTANCE_LEVELS}
BASES = [["stage=grpo", "data=pusht"], ["stage=mle", "data=pusht"],
         ["stage=tokenizer", "data=pusht"], ["stage=pipeline"], ["stage=grpo", "data=toy_text"],
         ["stage=grpo", "data=webarena"]]
_BASE_CFGS: dict = {}


def _base_with(key):
    for base in BASES:
        cfg = _BASE_CFGS.get(tuple(base))
        if cfg is None:
            cfg = _BASE_CFGS[tuple(base)] = _compose(base)
        if OmegaConf.select(cfg, key, default=ABSENT, throw_on_missing=False) is not ABSENT:
            return base, cfg
    return None, None


def _valid_other_value(key: str, default):
    """A valid value of ``key`` other than ``default`` (the type decides)."""
    name = key.rsplit(".", 1)[1]
    if key in CHOICES or name in STRING_CHOICES:
        allowed = STRING_CHOICES.get(name) or _allowed(key)
        return next(v for v in allowed if v != default)
    if name in ("top_k", "top_p") and key.startswith("stage.module."):
        return None                                    # GRPO rollouts refuse any other value
    if isinstance(default, bool):
        return not default
    if isinstance(default, (list, tuple)):
        return list(default[:-1])                       # a shorter list of valid entries
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default / 2 if default else 0.5
    if default is None:
        return "/tmp/x.ckpt" if name.endswith(("_policy", "_ckpt", "path")) else 2
    if isinstance(default, str):
        return default + "_x"
    raise AssertionError(f"{key}: no test value for {default!r}")


def _allowed(key):
    import importlib

    module, name = CHOICES[key].split(":")
    return tuple(getattr(importlib.import_module(module), name))


def _override_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return _show(value)


def test_the_docs_name_the_options_that_issue_27_found_missing():
    options = documented_options()
    for key in ("stage.module.loss.importance", "stage.module.loss.max_len", "stage.max_steps",
                "stage.module.group_size", "stage.module.dynamic_sampling_max_draws"):
        assert key in options, key
    assert len(options) > 40


@pytest.mark.parametrize("key", sorted(documented_options()))
def test_every_documented_option_composes_and_lands(key):
    value = documented_options()[key]
    base, cfg = _base_with(key)
    if base is None and key in appended_options():      # documented as `+key=value`
        value = appended_options()[key]
        base, _ = _base_with(key.rsplit(".", 1)[0])
        assert base is not None, f"+{key}: its parent is in no config"
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            overrides = [*base, f"+{key}={value}"]
            cfg = compose(config_name="train", overrides=overrides)
            check_added_keys(cfg, overrides, "train")    # something reads it
        (parsed,) = OverridesParser.create().parse_overrides([f"{key}={value}"])
        assert OmegaConf.select(cfg, key) == parsed.value()
        return
    assert base is not None, f"{key} (documented) is in no config: add it to conf/ with its " \
                             "default, so that it is settable without +"
    default = OmegaConf.select(cfg, key, throw_on_missing=False)
    if isinstance(default, DictConfig) and value is None:
        return                                          # a mapping (e.g. reward weights): present
    if value is None:
        value = _override_value(_valid_other_value(key, OmegaConf.to_object(default)
                                if isinstance(default, ListConfig) else default))
    (parsed,) = OverridesParser.create().parse_overrides([f"{key}={value}"])
    got = OmegaConf.select(_compose([*base, f"{key}={value}"]), key)
    if isinstance(got, (DictConfig, ListConfig)):
        got = OmegaConf.to_container(got)
    assert got == parsed.value(), f"{key}={value} composed to {got!r}"


def test_the_stage_and_loss_option_values_the_test_picks_are_valid():
    """The values the test above composes are accepted by the code that reads them."""
    cfg = _compose(["stage=grpo", "data=pusht"])
    module = OmegaConf.to_container(cfg.stage.module, resolve=True)
    settings = {k: v for k, v in module.items() if k in GRPOSettings.__dataclass_fields__}
    loss = {k: v for k, v in module["loss"].items() if k != "_target_"}
    for name, default in loss.items():
        trial = {**loss, name: _valid_other_value(f"stage.module.loss.{name}", default)}
        if trial["importance"] == "sequence":           # GSPO averages over responses
            trial["aggregation"] = "seq-mean-token-mean"
        GRPOLossConfig(**trial).validate()
    for name, default in settings.items():
        GRPOSettings.from_options({**settings,
                                   name: _valid_other_value(f"stage.module.{name}", default)})


def test_importance_sequence_composes_from_the_command_line():
    out = subprocess.run([sys.executable, "train.py", "stage=grpo", "data=pusht",
                          "stage.module.loss.importance=sequence", "stage.module.loss.max_len=10",
                          "--cfg", "job"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "importance: sequence" in out.stdout and "max_len: 10" in out.stdout


def test_the_stages_doc_lists_the_loss_options_from_the_code():
    text = (ROOT / "docs" / "stages.md").read_text()
    table = text.split("<!-- grpo-loss:begin -->\n")[1].split("\n<!-- grpo-loss:end -->")[0]
    assert table == settings_table(GRPOLossConfig, "stage.module.loss"), \
        "regenerate the loss table in docs/stages.md from settings_table(GRPOLossConfig, ...)"
    metrics = (ROOT / "docs" / "metrics.md").read_text()
    listed = re.search(r"`GRPOLossConfig` fields[^:]*:(.*?)`validate\(\)`", metrics, re.S).group(1)
    names = re.findall(r"`(\w+)=[^`]*`", listed)
    assert names == [f.name for f in dataclasses.fields(GRPOLossConfig)], \
        "docs/metrics.md's GRPOLossConfig field list differs from the dataclass"


# ------------------------------------------------------------- appended keys nothing reads
def _check_added(overrides, name="train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=name, overrides=list(overrides))
        check_added_keys(cfg, list(overrides), name)


@pytest.mark.parametrize("stage", ["tokenizer", "mle", "grpo", "pipeline"])
@pytest.mark.parametrize("added, key, nearest", [
    ("+stage.max_step=10", "stage.max_step", "stage.max_steps"),
    ("+stage.module.optimizer.lrr=1", "stage.module.optimizer.lrr", "stage.module.optimizer.lr"),
    ("+stage.module.log_image_every_n_steps=5", "stage.module.log_image_every_n_steps",
     "stage.module.log_images_every_n_steps"),
])
def test_an_appended_key_that_nothing_reads_is_refused(stage, added, key, nearest):
    with pytest.raises(ConfigValueError) as err:
        _check_added([f"stage={stage}", added])
    msg = str(err.value.code)
    assert "\n" not in msg and msg.startswith(f"{added}: ") and key in msg, msg
    if stage == "pipeline" and key.startswith("stage.module."):   # its steps have one
        assert "(stage=pipeline has no option stage.module)" in msg, msg
    else:
        assert f"did you mean {nearest}?" in msg, msg


@pytest.mark.parametrize("overrides", [
    ["stage=grpo", "+stage.module.loss.importanc=sequence"],
    ["stage=mle", "+data.task.layot=multi_step"],
    ["stage=mle", "+model.lr.mlee=1e-4"],
    ["stage=grpo", "data=toy_text", "+data.task.reward_keys=f1"],
    ["stage=mle", "++stage.module.val_samples=false"],
])
def test_a_misspelled_appended_option_names_the_real_one(overrides):
    with pytest.raises(ConfigValueError, match=r"did you mean [\w.]+\?"):
        _check_added(overrides)


def test_eval_refuses_an_appended_key_too():
    with pytest.raises(ConfigValueError, match=r"did you mean num_samples\?"):
        _check_added(["ckpt=x.ckpt", "+num_sample=4"], name="eval")


@pytest.mark.parametrize("overrides", [
    ["stage=mle", "+trainer.enable_model_summary=false"],           # an argument of the Trainer
    ["stage=mle", "+stage.module.optimizer.amsgrad=true"],          # ... of the optimizer
    ["stage=mle", "+stage.batch_size=8"],                           # read by ${oc.select:...}
    ["stage=grpo", "+data.task.reward.weights.ssim=1.0"],           # a value of a mapping arg
    ["stage=mle", "+callbacks.probe._target_=lightning.pytorch.callbacks.Timer",
     "+callbacks.probe.duration=null"],                              # a new object and its args
    ["stage=mle", "++stage.max_steps=5"],                           # ++ of an existing key
    ["stage=grpo", "stage.module.loss.importance=sequence"],        # plain overrides
])
def test_appended_keys_that_something_reads_pass(overrides):
    _check_added(overrides)


def test_the_command_line_refuses_an_unread_key_in_one_line():
    """Found: ``+stage.max_step=10`` silently trained the default 1,000 steps."""
    out = subprocess.run([sys.executable, "train.py", "stage=mle", "+stage.max_step=10"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0 and len(lines) == 1, out.stderr
    assert lines[0].startswith("+stage.max_step=10: ") and "did you mean stage.max_steps?" \
        in lines[0], lines[0]
