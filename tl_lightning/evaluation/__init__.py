"""Decoding step prompts into tool calls and scoring them (SFT validation, benchmark evaluation, PPO scoring)."""
