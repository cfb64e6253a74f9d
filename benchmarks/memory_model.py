"""An analytical memory model of one SFT optimizer step and one PPO iteration for a Llama-shaped model in NF4 + LoRA.

Every term is counted from what the forward keeps for backward (or holds at once), per token and per layer; no
constant is fitted to measurements. `benchmarks/memory.py` prints it beside measured peaks.

Activations saved per token and decoder layer without gradient checkpointing (d = bytes of the compute dtype):
  RMSNorm ×2, computed in fp32: input and normalised output, 4·h·4 bytes;
  the inputs of the q/k/v (shared), o, gate/up (shared) and down projections: (h + h + h + I)·d;
  attention (SDPA, memory-efficient kernels): rotated q, k, v and the output, (2h + 2·kv)·d;
  the MLP: gate, up and SiLU(gate), 3·I·d;
  LoRA: each adapted projection keeps its A output, 7·r·d.
With gradient checkpointing only each layer's input is kept (h·d), plus one layer's activations while it is
recomputed. Logits: the head's output (d) and its fp32 copy, log-softmax and gradient (3 × 4 bytes) per position
that reaches the head.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GiB = 1024 ** 3


@dataclass(frozen=True)
class Shape:
    """A Llama-architecture model shape."""

    name: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False


SHAPES = {
    "tiny": Shape("tiny (h64 L2)", 64, 2, 128, 4, 4, 1024),
    "h256l4": Shape("h256 L4", 256, 4, 512, 4, 4, 1024),
    "smollm2": Shape("SmolLM2-135M", 576, 30, 1536, 9, 3, 49152, tied=True),
    "codellama7b": Shape("CodeLlama-7B", 4096, 32, 11008, 32, 32, 32016),
}


@dataclass(frozen=True)
class Run:
    """What runs: tokens per micro-batch, LoRA rank, compute dtype bytes, checkpointing, head chunking."""

    batch: int
    seq: int
    lora_r: int = 16
    dtype_bytes: int = 2
    grad_ckpt: bool = False
    head_positions: int | None = None
    """Positions whose logits exist at once (None: every position that reaches the head, at once)."""


def weight_bytes(s: Shape) -> dict[str, float]:
    """NF4 linear weights (0.5 B/param + double-quantised absmax ≈ 0.0157 B/param) and the fp32 copies of the
    embedding, head and norms (peft's prepare_model_for_kbit_training upcasts every non-4-bit parameter to fp32)."""
    kv = s.hidden // s.heads * s.kv_heads
    linear = s.layers * (2 * s.hidden * s.hidden + 2 * s.hidden * kv + 3 * s.hidden * s.intermediate)
    dense = s.vocab * s.hidden * (1 if s.tied else 2) + (2 * s.layers + 1) * s.hidden
    return {"nf4_weights": linear * (0.5 + 1 / 64), "fp32_embed_head_norms": dense * 4}


def lora_params(s: Shape, r: int) -> int:
    kv = s.hidden // s.heads * s.kv_heads
    per_layer = 4 * r * (s.hidden + s.hidden) - 2 * r * (s.hidden - kv) + 3 * r * (s.hidden + s.intermediate)
    return s.layers * per_layer


def layer_activation_bytes(s: Shape, run: Run, tokens: int) -> float:
    kv = s.hidden // s.heads * s.kv_heads
    d = run.dtype_bytes
    per_token = 16 * s.hidden + (3 * s.hidden + s.intermediate) * d + (2 * s.hidden + 2 * kv) * d \
        + 3 * s.intermediate * d + 7 * run.lora_r * d
    return per_token * tokens


def logits_bytes(s: Shape, run: Run, positions: int) -> float:
    held = positions if run.head_positions is None else min(positions, run.head_positions)
    return held * s.vocab * (run.dtype_bytes + 3 * 4)


def sft_step(s: Shape, run: Run, trained_positions: int | None = None) -> dict[str, float]:
    """Peak memory above the loaded model of one SFT optimizer step (forward, backward, AdamW step). The head reads
    `trained_positions` (SFTSystem: the trained tokens only); None: every position (the full-logits path before)."""
    tokens = run.batch * run.seq
    positions = trained_positions or tokens
    logits = logits_bytes(s, run, positions)
    common = {"hidden_and_final_norm": tokens * s.hidden * (run.dtype_bytes + 8),
              "lora_grads_and_adam": lora_params(s, run.lora_r) * 12}
    if run.grad_ckpt:  # the logits are gone before backward recomputes the first layer: the larger of the two
        return {"checkpointed_layer_inputs": s.layers * tokens * s.hidden * run.dtype_bytes,
                "logits_or_one_recomputed_layer": max(logits, layer_activation_bytes(s, run, tokens)), **common}
    return {"activations": s.layers * layer_activation_bytes(s, run, tokens), "logits": logits, **common}


def ppo_iteration(s: Shape, run: Run, prompt: int, new_tokens: int, rollout_batch: int, adapter_critic: bool,
                  lean: bool = True, rollout_chunk: int | None = None) -> dict[str, float]:
    """Peak memory above the loaded model of one PPO iteration: the largest of its stages (generation, the no-grad
    reference/value passes, a minibatch update) plus what lives across them (rollout tensors, optimizer state).
    `rollout_chunk` (PPOSettings.rollout_chunk_size): sequences generated and passed without gradient at once."""
    kv = s.hidden // s.heads * s.kv_heads
    d, total = run.dtype_bytes, prompt + new_tokens
    at_once = min(rollout_batch, rollout_chunk or rollout_batch)
    per_token_layer = (4 * s.hidden + 3 * s.intermediate) * d  # one layer's transient tensors, no grad
    # generation: the KV cache plus the prefill's transient layer over every prompt token
    cache = 2 * s.layers * at_once * total * kv * d + at_once * prompt * per_token_layer
    one_layer = at_once * total * per_token_layer
    if lean:  # final hidden state only, head on response positions in chunks
        passes = one_layer + at_once * total * s.hidden * d + logits_bytes(s, replace(run, batch=1),
                                                                           at_once * new_tokens)
    else:  # every layer's hidden states and full-vocabulary logits of the whole sequence
        passes = one_layer + (s.layers + 1) * rollout_batch * total * s.hidden * d \
            + logits_bytes(s, replace(run, head_positions=None), rollout_batch * total)
    update_run = replace(run, batch=run.batch, seq=total, head_positions=run.head_positions if lean else None)
    update = sft_step(s, update_run, trained_positions=run.batch * new_tokens if lean else None)
    if not lean and run.grad_ckpt:  # output_hidden_states keeps every layer's output, which checkpointing drops
        update["checkpointed_layer_inputs"] *= 2
    n_lora = lora_params(s, run.lora_r) * (2 if adapter_critic else 1)
    update["lora_grads_and_adam"] = n_lora * 12
    return {"generation_kv_cache": cache, "reference_and_value_passes": passes,
            "update_minibatch": sum(update.values()), "peak_stage": max(cache, passes, sum(update.values()))}


def engine_generation(s: Shape, prompt: int, new_tokens: int, prompts: int, group: int, dtype_bytes: int,
                      dense_copy_bytes: int = 0, read_prefix_once: bool = False, padded_batch: bool = False
                      ) -> dict[str, float]:
    """Peak memory above the loaded policy of one rollout-engine call: `prompts` distinct prompts, each sampled
    `group` times. `dense_copy_bytes`: the engine's dense sampling copy (`dense_copy.dense_bytes`), 0 without;
    `read_prefix_once`: each prompt's keys and values are kept once for its group (`DecodeLoop` on CPU), not per
    row; `padded_batch`: every row is prefilled at once (`HFGenerate`), not one distinct prompt at a time."""
    kv = s.hidden // s.heads * s.kv_heads
    rows, per_token = prompts * group, 2 * s.layers * kv * dtype_bytes
    cache = per_token * (prompts * prompt + rows * new_tokens) if read_prefix_once \
        else per_token * rows * (prompt + new_tokens)
    per_token_layer = (4 * s.hidden + 3 * s.intermediate) * dtype_bytes  # one layer's transient tensors, no grad
    prefill = (rows if padded_batch else 1) * prompt * per_token_layer
    return {"dense_copy": dense_copy_bytes, "kv_cache": cache, "prefill_layer": prefill}


def dense_copy_bytes(s: Shape, dtype_bytes: int) -> int:
    """A dense copy of the shape's base: every linear weight, the embedding and output layer (one tensor when
    tied), and the norms."""
    kv = s.hidden // s.heads * s.kv_heads
    linear = s.layers * (2 * s.hidden * s.hidden + 2 * s.hidden * kv + 3 * s.hidden * s.intermediate)
    return (linear + (1 if s.tied else 2) * s.vocab * s.hidden + (2 * s.layers + 1) * s.hidden) * dtype_bytes
