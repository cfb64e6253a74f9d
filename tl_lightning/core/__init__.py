"""Layer 0: user-facing error types, shared constants, checkpoint and tokenizer resolution."""
