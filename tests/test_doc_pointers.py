"""Messages and configs point to documentation that exists, and the text metrics are told apart
(issue #24, item 9).

- No string a message can print (a non-docstring string in ``wm/``) or a comment of
  ``conf/data/*.yaml`` names a ``.md`` file that is not in the repository (seven messages named
  ``data/README.md``), and a quoted section after ``docs/<name>.md`` is a heading of that file.
- Every missing-field message of the ByteSized32 and WebArena readers, and both data configs,
  point to docs/data.md's "ByteSized32 and WebArena (text worlds)", which names every file and
  field those readers need, the prompt styles and the length settings.
- docs/metrics.md has one row for each text key that a run logs: ``acc_changed`` (exact match
  on the changed transitions) and ``changed_acc`` (share of the changed items right) apart.
- notebooks/README.md says how to install Jupyter, with the pinned requirements file.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SECTION = "ByteSized32 and WebArena (text worlds)"
POINTER = f'docs/data.md, "{SECTION}"'
MD_PATH = re.compile(r"(?<![\w/.])((?:[\w.-]+/)+[\w.-]+\.md)\b")
SECTION_REF = re.compile(r"(docs/[\w-]+\.md),? [\"“]([^\"”]+)[\"”]")


def _message_strings() -> list[tuple[str, str]]:
    """(where, text) of every string constant in wm/ that is not a docstring."""
    out = []
    for path in sorted((ROOT / "wm").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        docs = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)}
        out += [(f"{path.relative_to(ROOT)}:{node.lineno}", node.value) for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docs]
    return out


def _data_config_comments() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "conf" / "data").glob("*.yaml")):
        lines = path.read_text().splitlines()
        text = " ".join(ln.split("#", 1)[1].strip() for ln in lines if "#" in ln)
        out.append((str(path.relative_to(ROOT)), text))
    return out


def _headings(doc: str) -> set[str]:
    """Markdown headings of ``doc`` (``#`` lines outside fenced code)."""
    out, fenced = set(), False
    for line in (ROOT / doc).read_text().splitlines():
        fenced ^= line.startswith("```")
        if line.startswith("#") and not fenced:
            out.add(line.lstrip("#").strip())
    return out


def _section(doc: str, title: str) -> str:
    text = (ROOT / doc).read_text()
    assert f"## {title}\n" in text, f"{doc} has no section \"{title}\""
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_no_message_names_a_missing_document():
    bad = [f"{where}: {path}" for where, text in _message_strings() + _data_config_comments()
           for path in MD_PATH.findall(text) if not (ROOT / path).is_file()]
    assert not bad, "pointers to files that are not in the repository:\n" + "\n".join(bad)


def test_every_quoted_section_is_a_heading():
    bad = [f"{where}: {doc} \"{title}\"" for where, text in
           _message_strings() + _data_config_comments()
           for doc, title in SECTION_REF.findall(text) if title not in _headings(doc)]
    assert not bad, "sections that are not headings:\n" + "\n".join(bad)


def _missing_field_errors() -> list[str]:
    from wm.data.text_worlds.records import check_fields, find_file
    from wm.language.prompts import text_game_prompt_parts, web_prompt_parts
    from wm.language.reference_prompts import bytesized32_reference_prompt, web_task_block
    from wm.textworld.game_state import require_field
    from wm.textworld.web_answer import format_target

    calls = [lambda: check_fields({}, ("game",), "x.jsonl:1"),
             lambda: find_file(ROOT / "no_such_folder", "test.jsonl"),
             lambda: require_field({}, "current_state"), lambda: format_target({}),
             lambda: text_game_prompt_parts({}, None), lambda: web_prompt_parts({}),
             lambda: bytesized32_reference_prompt({}, {}, None, None),
             lambda: web_task_block({})]
    messages = []
    for call in calls:
        with pytest.raises((KeyError, FileNotFoundError)) as err:
            call()
        messages.append(str(err.value))
    return messages


def test_text_data_messages_and_configs_point_to_the_text_world_section():
    assert SECTION in _headings("docs/data.md")
    for message in _missing_field_errors():
        assert POINTER in message, message
    for name in ("bytesized32", "webarena"):
        comments = dict(_data_config_comments())[f"conf/data/{name}.yaml"]
        assert POINTER in comments, f"conf/data/{name}.yaml: {comments[:300]}"


def test_the_text_world_section_names_what_the_readers_need():
    from wm.data.text_worlds.bytesized32 import BS32_FIELDS
    from wm.data.text_worlds.webarena import PROMPT_STYLES, WEB_FIELDS
    from wm.textworld.game_answer import STYLES

    text = _section("docs/data.md", SECTION)
    files = ("test.jsonl", "all_transitions.jsonl", "dynamic_states.json", "examples.json")
    settings = ("data.path", "max_val_records", "max_train_records", "val_path", "val_fraction",
                "max_prompt_tokens", "max_response_tokens", "overlong", "rules_path",
                "example_game")
    words = {*files, *BS32_FIELDS, *WEB_FIELDS, *STYLES, *PROMPT_STYLES, *settings}
    missing = sorted(w for w in words if not re.search(rf"[`.]{re.escape(w)}\b", text))
    assert not missing, f"docs/data.md \"{SECTION}\" does not name: {missing}"
    for source in ("cognitiveailab/GPT-simulator", "WMA-Agents", "CC BY-NC 4.0"):
        assert source in text, source


def _metric_rows(doc: str = "docs/metrics.md") -> dict[str, str]:
    rows = {}
    for line in (ROOT / doc).read_text().splitlines():
        m = re.match(r"\| `([\w/]+)` \|", line)
        if m:
            rows.setdefault(m.group(1), line)
    return rows


def test_every_text_metric_and_reward_key_has_one_row():
    from wm.rewards.text_game import text_game_rewards
    from wm.rewards.web import web_rewards
    from wm.tasks.text import TextStateTask

    fake = SimpleNamespace(rewards=lambda preds, batch, g: {"exact": torch.zeros(2),
                                                                "reward": torch.zeros(2)})
    logged = TextStateTask.metrics(fake, {"changed": torch.tensor([True, False])}, None, 1)
    keys = {*logged, *text_game_rewards([], []), *web_rewards([], [])}
    rows = _metric_rows()
    assert not keys - set(rows), f"docs/metrics.md has no row for {sorted(keys - set(rows))}"
    assert "exact" in rows["acc_changed"] and "changed transitions" in rows["acc_changed"]
    assert "changed_acc" in rows["acc_changed"]        # each row names the other
    assert "items" in rows["changed_acc"] and "acc_changed" in rows["changed_acc"]


def test_the_notebooks_readme_says_how_to_install_jupyter():
    text = (ROOT / "notebooks" / "README.md").read_text()
    assert "pip install -r requirements.txt jupyterlab" in text
    installs = re.findall(r"pip install[^\n`]*", text)
    assert all("-r requirements.txt" in cmd for cmd in installs), installs
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert nb.name in text, nb.name
