"""Offline LM rig: BPE tokenizer, tiny Qwen2, save/load, LoRA (generate, backward, merge,
save), the adapter-free KL reference, and the clear error for a model that is not there."""
import pytest
import torch

from wm.language.model import (
    apply_lora,
    is_lora,
    load_causal_lm,
    reference_logits_context,
    save_hf,
)
from wm.language.tiny import build_tiny_qwen2, tiny_lm, train_bpe_tokenizer

TEXTS = [
    'State: {"lamp": "off", "count": 2}\nAction: toggle\nThe final answer is: {"lamp": "on", "count": 2}',
    'State: {"lamp": "on", "count": 9}\nAction: increment\nThe final answer is: {"lamp": "on", "count": 0}',
] * 10


@pytest.fixture(scope="module")
def rig():
    return tiny_lm(TEXTS, vocab_size=300)


def _batch(tok):
    return tok(['State: {"lamp": "off"', "Action: look"], return_tensors="pt", padding=True)


def test_tokenizer_round_trip_and_special_tokens():
    tok = train_bpe_tokenizer(TEXTS, vocab_size=300)
    for text in TEXTS[:2] + ["unseen ünïcode ✓ <think>x</think>"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert {tok.pad_token, tok.bos_token, tok.eos_token} == {"<|pad|>", "<|bos|>", "<|eos|>"}
    assert len(tok("</think>", add_special_tokens=False)["input_ids"]) == 1
    assert tok.decode(tok("<think>a</think>")["input_ids"], skip_special_tokens=True) == "<think>a</think>"


def test_save_and_load_round_trip(rig, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = rig
    model.eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    text = TEXTS[0] + " 12345 <think>x</think> ünï"
    assert len(tok2) == len(tok) and tok2(text)["input_ids"] == tok(text)["input_ids"]
    assert tok2.padding_side == "left" and tok2.pad_token_id == tok.pad_token_id
    batch = _batch(tok)
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, model(**batch).logits)


def test_lora_generate_backward_reference_merge_save(tmp_path):
    model, tok = tiny_lm(TEXTS, vocab_size=300, hidden=32, layers=1, heads=2)
    base = build_tiny_qwen2(tok, hidden=32, layers=1, heads=2)
    base.load_state_dict(model.state_dict())
    lm = apply_lora(model, {"r": 4})
    assert is_lora(lm) and not is_lora(base)
    trainable = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    for name, p in lm.named_parameters():  # make the adapter do something
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    lm.eval()
    batch = _batch(tok)
    out = lm.generate(**batch, max_new_tokens=4, do_sample=True)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)

    logits = lm(**batch).logits
    logits.float().pow(2).mean().backward()
    assert all(p.grad is not None for n, p in lm.named_parameters() if p.requires_grad)

    with torch.no_grad():
        base_logits = base.eval()(**batch).logits
        with reference_logits_context(lm):
            ref = lm(**batch).logits
        assert not torch.allclose(logits, base_logits)
        torch.testing.assert_close(ref, base_logits)
        torch.testing.assert_close(lm(**batch).logits, logits)  # adapters back on

    paths = save_hf(lm, tok, tmp_path)
    assert (paths["adapter"] / "adapter_config.json").is_file()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(paths["merged"]).eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, logits, atol=1e-4, rtol=1e-4)
    assert is_lora(lm)  # the live model is left unmerged


def test_reference_context_is_a_no_op_without_lora(rig):
    model, tok = rig
    with reference_logits_context(model) as m:
        assert m is model


def test_missing_model_error_names_it_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="no-such-org/no-such-model") as err:
        load_causal_lm("no-such-org/no-such-model")
    assert "HF_HOME" in str(err.value) and "local folder" in str(err.value)
    with pytest.raises(OSError, match=str(tmp_path)):
        load_causal_lm(str(tmp_path))
    with pytest.raises(ValueError, match="dtype"):
        load_causal_lm(str(tmp_path), dtype="int3")


def test_load_local_tiny_model_with_lora(rig, tmp_path):
    model, tok = rig
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    lm, tok2 = load_causal_lm(str(tmp_path), lora={"r": 2}, dtype="fp32")
    assert is_lora(lm) and tok2.pad_token is not None
    assert next(lm.parameters()).dtype == torch.float32
