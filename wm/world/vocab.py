"""The world model's token-id space (RLVR-World video world model vocabulary).

Reference (shared/REFERENCE.md, "Video world model"): ids are laid out as

    [context visual | future visual (only if the tokenizer's codebooks are not shared) |
     action bins | BOS | EOS (= PAD)]

Single-step (per-frame tokenizer, one shared FSQ codebook of 4,375 codes): visual 0-4374,
actions 4375-4630, BOS 4631, EOS/PAD 4632, vocabulary 4,633. Multi-step (compressive tokenizer,
separate context and future codebooks): 4,375 + 4,375 + 256 + 2 = 9,008.

The paper's released multi-step model orders the two visual ranges the other way round
(``visual_order="future_first"``: future 0-4374, context 4375-8749, actions from 8750;
shared/CHECKPOINTS.md): both orders are expressed exactly, so a released model sees the ids it
was trained on.

Every other module gets ids from a :class:`VocabLayout`; nothing else numbers ids by hand.
All action dimensions share the same ``action_bins`` ids (as in the reference).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

VISUAL_ORDERS = ("context_first", "future_first")


@dataclass(frozen=True)
class VocabLayout:
    """Offsets of every token family in the world model's vocabulary."""

    context_codes: int
    """Codebook size of the context-frame tokenizer (reference: 4,375 = FSQ levels 7*5*5*5*5)."""
    future_codes: int
    """Codebook size of the future-frame tokenizer (equal to ``context_codes`` when shared)."""
    shared_codebook: bool
    """True: context and future frames share one id range (the per-frame tokenizer)."""
    action_bins: int = 256
    """Bins per action dimension; all dimensions share these ids."""
    action_dim: int | None = None
    """Optional number of action dimensions, only used to validate inputs of ``action_ids``."""
    visual_order: str = "context_first"
    """Separate codebooks only: "context_first" (ours) or "future_first" (the reference's
    released multi-step model)."""

    def __post_init__(self) -> None:
        for name in ("context_codes", "future_codes", "action_bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VocabLayout.{name} must be >= 1, got {getattr(self, name)}")
        if self.shared_codebook and self.context_codes != self.future_codes:
            raise ValueError(f"VocabLayout: shared_codebook=True needs context_codes == future_codes, "
                             f"got {self.context_codes} and {self.future_codes}")
        if self.visual_order not in VISUAL_ORDERS:
            raise ValueError(f"VocabLayout.visual_order={self.visual_order!r}: use one of "
                             f"{VISUAL_ORDERS} (data.task.visual_order)")
        if self.action_dim is not None and self.action_dim < 1:
            raise ValueError(f"VocabLayout.action_dim must be >= 1 or None, got {self.action_dim}")

    @classmethod
    def from_tokenizer(cls, tok, action_dim: int | None = None, action_bins: int = 256,
                       visual_order: str = "context_first") -> "VocabLayout":
        """Read ``tok.codebook_sizes`` ``(context, future)`` and ``tok.shared_codebook``
        (the tokenizer contract in docs/architecture.md)."""
        try:
            context_codes, future_codes = (int(n) for n in tok.codebook_sizes)
            shared = bool(tok.shared_codebook)
        except (AttributeError, TypeError, ValueError) as err:
            raise ValueError(f"VocabLayout.from_tokenizer: {type(tok).__name__} must expose "
                             "codebook_sizes=(context, future) and shared_codebook (docs/architecture.md, "
                             f"'Tokenizers'): {err}") from err
        return cls(context_codes, future_codes, shared, int(action_bins), action_dim, visual_order)

    # ------------------------------------------------------------------ offsets and special ids
    @property
    def _future_first(self) -> bool:
        return not self.shared_codebook and self.visual_order == "future_first"

    @property
    def context_offset(self) -> int:
        return self.future_codes if self._future_first else 0

    @property
    def future_offset(self) -> int:
        if self.shared_codebook or self._future_first:
            return 0
        return self.context_codes

    @property
    def action_offset(self) -> int:
        return self.context_codes if self.shared_codebook else self.context_codes + self.future_codes

    @property
    def bos_id(self) -> int:
        return self.action_offset + self.action_bins

    @property
    def eos_id(self) -> int:
        return self.bos_id + 1

    @property
    def pad_id(self) -> int:
        """PAD is EOS (as in the reference)."""
        return self.eos_id

    @property
    def vocab_size(self) -> int:
        return self.eos_id + 1

    # ------------------------------------------------------------------ ranges [lo, hi)
    def context_visual_range(self) -> tuple[int, int]:
        return self.context_offset, self.context_offset + self.context_codes

    def future_visual_range(self) -> tuple[int, int]:
        return self.future_offset, self.future_offset + self.future_codes

    def action_range(self) -> tuple[int, int]:
        return self.action_offset, self.action_offset + self.action_bins

    # ------------------------------------------------------------------ codes/bins <-> ids
    @staticmethod
    def _shift(x: torch.Tensor, lo: int, hi: int, offset: int, what: str) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise TypeError(f"VocabLayout: {what} must be an integer tensor, got {x.dtype}")
        if x.numel() and (int(x.min()) < lo or int(x.max()) >= hi):
            raise ValueError(f"VocabLayout: {what} must lie in [{lo}, {hi}), "
                             f"got values in [{int(x.min())}, {int(x.max())}]")
        return x.long() + offset

    def context_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Context-tokenizer codes ``0..context_codes-1`` -> vocabulary ids."""
        return self._shift(codes, 0, self.context_codes, self.context_offset, "context codes")

    def future_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Future-tokenizer codes ``0..future_codes-1`` -> vocabulary ids."""
        return self._shift(codes, 0, self.future_codes, self.future_offset, "future codes")

    def action_ids(self, bins: torch.Tensor) -> torch.Tensor:
        """Action bins ``(..., A)`` in ``0..action_bins-1`` -> vocabulary ids."""
        bins = torch.as_tensor(bins)
        if self.action_dim is not None and (bins.ndim == 0 or bins.shape[-1] != self.action_dim):
            raise ValueError(f"VocabLayout.action_ids: expected (..., {self.action_dim}) bins, "
                             f"got shape {tuple(bins.shape)}")
        return self._shift(bins, 0, self.action_bins, self.action_offset, "action bins")

    def context_codes_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids of context-frame tokens -> codes."""
        lo, hi = self.context_visual_range()
        return self._shift(ids, lo, hi, -lo, "context-frame ids")

    def future_codes_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids of future-frame tokens -> codes."""
        lo, hi = self.future_visual_range()
        return self._shift(ids, lo, hi, -lo, "future-frame ids")

    def action_bins_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Vocabulary ids of action tokens -> bins."""
        lo, hi = self.action_range()
        return self._shift(ids, lo, hi, -lo, "action ids")
