"""The rollout engine's memory model by hand (benchmarks/memory_model.py: engine_generation, dense_copy_bytes)."""

from benchmarks.memory_model import Shape, dense_copy_bytes, engine_generation

SHAPE = Shape("toy", hidden=8, layers=2, intermediate=16, heads=2, kv_heads=1, vocab=10, tied=True)  # kv width 4


def test_a_prompt_read_once_keeps_its_cache_once_per_group():
    # 2 prompts x 3 samples, prompt 5 + 2 new tokens, fp32: 2 layers x (k, v) x 4 wide x 4 bytes = 64 B per token
    per_row = engine_generation(SHAPE, 5, 2, 2, 3, 4)
    assert per_row["kv_cache"] == 64 * 6 * (5 + 2)
    once = engine_generation(SHAPE, 5, 2, 2, 3, 4, read_prefix_once=True)
    assert once["kv_cache"] == 64 * (2 * 5 + 6 * 2)
    # one layer's transients per prefilled token: (4 x 8 + 3 x 16) x 4 bytes = 320 B; one prompt at a time
    assert once["prefill_layer"] == 320 * 5
    assert engine_generation(SHAPE, 5, 2, 2, 3, 4, padded_batch=True)["prefill_layer"] == 320 * 5 * 6


def test_a_dense_copy_holds_every_weight_once():
    from dataclasses import replace

    linear = 2 * (2 * 8 * 8 + 2 * 8 * 4 + 3 * 8 * 16)  # q, o; k, v; gate, up, down per layer
    assert dense_copy_bytes(SHAPE, 4) == (linear + 10 * 8 + 5 * 8) * 4  # a tied embedding and head; 2 x 2 + 1 norms
    assert dense_copy_bytes(replace(SHAPE, tied=False), 4) == (linear + 2 * 10 * 8 + 5 * 8) * 4
    assert engine_generation(SHAPE, 5, 2, 2, 3, 4, dense_copy_bytes=123)["dense_copy"] == 123
