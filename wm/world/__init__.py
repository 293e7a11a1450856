"""World-model pieces: action tokenizer, vocabulary layout, sequence layouts, LLaMA presets."""
from wm.world.actions import ActionTokenizer
from wm.world.layout import MultiStepLayout, SingleStepLayout
from wm.world.vocab import VocabLayout

__all__ = ["ActionTokenizer", "VocabLayout", "SingleStepLayout", "MultiStepLayout", "build_llama", "load_llama"]


def __getattr__(name):
    if name in ("build_llama", "load_llama"):
        from wm.world import llama

        return getattr(llama, name)
    raise AttributeError(f"module 'wm.world' has no attribute {name!r}")
