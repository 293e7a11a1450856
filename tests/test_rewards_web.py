"""Web-page reward: section parsing and pooled item F1, on hand-made and real WMA texts."""
import json

import pytest

from wm.rewards.web import item_f1, web_rewards
from wm.textworld.web_answer import parse_sections


def _text(new=(), deleted=(), updated=()):
    block = lambda items: "\n".join(items) if items else "None"  # noqa: E731
    return f"New items:\n{block(new)}\n\nDeleted items:\n{block(deleted)}\n\nUpdated items:\n{block(updated)}"


@pytest.fixture
def wma(shared_data):
    with open(shared_data / "wma" / "sample_tao_annotated.json") as fh:
        return json.load(fh)


def test_parse_sections_bullets_none_markdown_and_think():
    text = (
        "<think>New items:\n[9] fake</think>\n**New items:**\n- [1] link 'A'\n2. [2] link 'B'\n\n"
        "## Deleted items: None\nUpdated items:\n  * [3] button 'C'  \nnone.\n"
    )
    assert parse_sections(text) == {
        "new": ["[1] link 'A'", "[2] link 'B'"], "deleted": [], "updated": ["[3] button 'C'"]}
    assert parse_sections("no headers at all") is None
    assert parse_sections("<think>New items:\n[1] a") is None


def test_item_f1_hand_computed():
    true = _text(new=["a", "b"], updated=["c", "d"])
    # pred: a (right), b listed as updated (wrong section), c (right), e (wrong)
    pred = _text(new=["a", "e"], updated=["b", "c"])
    r = item_f1(pred, true)
    assert r["precision"] == pytest.approx(2 / 4) and r["recall"] == pytest.approx(2 / 4)
    assert r["f1"] == pytest.approx(0.5) and r["parsed"]
    # item sets, as the reference: a duplicated line counts once (F1 1.0, not 0.667)
    dup = item_f1(_text(new=["a", "a"]), _text(new=["a"]))
    assert dup["precision"] == 1.0 and dup["recall"] == 1.0 and dup["f1"] == 1.0
    dup2 = item_f1(_text(new=["a", "a", "b"]), _text(new=["a", "c"]))
    assert dup2["precision"] == pytest.approx(1 / 2) and dup2["recall"] == pytest.approx(1 / 2)


def test_edge_cases():
    assert item_f1(_text(), _text())["f1"] == 1.0  # both empty ("None" is not an item)
    assert item_f1(_text(), _text(new=["a"]))["f1"] == 0.0
    assert item_f1(_text(new=["a"]), _text())["f1"] == 0.0
    bad = item_f1("the page shows a table", _text(new=["a"]))
    assert bad == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "parsed": False}
    with pytest.raises(ValueError, match="next_state_tao"):
        item_f1(_text(), "no headers")


@pytest.mark.real_data
def test_real_exact_partial_and_empty(wma):
    assert len(wma) == 10
    for rec in wma:
        true = rec["next_state_tao"]
        sections = parse_sections(true)
        n_true = sum(len(v) for v in sections.values())
        assert n_true > 0
        assert item_f1(true, true) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "parsed": True}
        half = {k: v[: len(v) // 2] for k, v in sections.items()}
        n_kept = sum(len(v) for v in half.values())
        r = item_f1(_text(half["new"], half["deleted"], half["updated"]), true)
        if n_kept:
            recall = n_kept / n_true
            assert r["precision"] == pytest.approx(1.0)
            assert r["recall"] == pytest.approx(recall)
            assert r["f1"] == pytest.approx(2 * recall / (1 + recall))
        assert item_f1(_text(), true)["f1"] == 0.0
    out = web_rewards([r["next_state_tao"] for r in wma] + ["garbage"], wma + wma[:1])
    assert out["f1"][:10].tolist() == [1.0] * 10
    assert out["parse_fail"].tolist() == [0.0] * 10 + [1.0]


@pytest.mark.real_data
def test_real_items_moved_to_the_wrong_section_do_not_count(wma):
    rec = next(r for r in wma if parse_sections(r["next_state_tao"])["new"])
    s = parse_sections(rec["next_state_tao"])
    pred = _text(new=[], deleted=s["deleted"], updated=s["updated"] + s["new"])
    r = item_f1(pred, rec["next_state_tao"])
    n = sum(len(v) for v in s.values())
    assert r["recall"] == pytest.approx((n - len(s["new"])) / n)
