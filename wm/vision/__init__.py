"""Visual tokenizers and their training losses (shared/REFERENCE.md "Video world model").

- ``fsq_vqgan.FrameTokenizer``: per-frame FSQ-VQGAN (single-step world model).
- ``compressive.CompressiveTokenizer``: fine context grid + coarse, context-conditioned future
  grid with separate codebooks (multi-step world model).
- ``discriminator``: PatchGAN, hinge losses, R1 penalty.
- ``perceptual``: LPIPS via the ``lpips`` package or a native VGG16 re-implementation; ST-LPIPS.
- ``stlpips``: shift-tolerant LPIPS with the trained weights of the ``stlpips-pytorch`` wheel.
- ``registry``: build a tokenizer from its config; load one from the tokenizer stage's checkpoint.

Submodules are imported explicitly (vector_quantize_pytorch takes seconds to import).
"""
