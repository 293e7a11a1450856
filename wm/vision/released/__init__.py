"""Plain-torch ports of the paper's released RT-1 visual tokenizers (no diffusers needed).

The two architectures of thuml/RLVR-World's ``vid_wm/ivideogpt`` under their released parameter
names, so the hub checkpoints (shared/CHECKPOINTS.md) load strictly, each exposing the project's
tokenizer contract (docs/architecture.md "Tokenizers"):

- ``frame_fsq.ReleasedFrameTokenizer``: per-frame FSQ VQGAN (``CNNFSQModel256``,
  ``thuml/rt1-frame-tokenizer``; single-step world model).
- ``compressive_fsq.ReleasedCompressiveTokenizer``: compressive context/future tokenizer
  (``CompressiveVQModelFSQ``, ``thuml/rt1-compressive-tokenizer``; multi-step world model).
- ``blocks``: the shared diffusers-named blocks (the FSQ quantizer is in ``frame_fsq``).
- ``io``: ``load_released_tokenizer`` / ``save_released`` (diffusers-style folders) and
  ``resolve_checkpoint`` (local folder or Hugging Face hub id).
"""
from wm.vision.released.compressive_fsq import ReleasedCompressiveTokenizer
from wm.vision.released.frame_fsq import ReleasedFrameTokenizer
from wm.vision.released.io import load_released_tokenizer, resolve_checkpoint, save_released

__all__ = ["ReleasedCompressiveTokenizer", "ReleasedFrameTokenizer", "load_released_tokenizer",
           "resolve_checkpoint", "save_released"]
