"""Rollout engines: the decode loop and the dense sampling copy decode what transformers' generate decodes."""

import pytest
import torch
from transformers import LlamaConfig

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.models.decode_batch import DecodeBatch, Part, forward
from tl_lightning.models.dense_copy import DenseCopy, dense_bytes
from tl_lightning.models.engine import DecodeLoop, HFGenerate, _prefill, _top_p
from tl_lightning.models.generation import GenerationSettings, left_pad
from tl_lightning.models.kv_cache import bytes_per_row_token, left_padded_cache, roomy_cache
from tl_lightning.models.loading import ModelSettings, load_policy
from tl_lightning.models.prefill_plan import PrefixGroup, buckets, distinct, prefill_cost, prefix_groups


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    """The tiny NF4 + LoRA policy with a non-zero adapter (so that the merge matters)."""
    torch.manual_seed(0)
    model = load_policy(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32"), "cpu")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model.eval(), load_tokenizer(tiny_checkpoint)


def _prompts():
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 1000, (n,), generator=g).tolist() for n in (5, 17, 9, 40, 17)]
    # repeated prompts share their prefill; two prompts extend prompt 3 (shared prefix 39, tails of 1, 5 and 2)
    return prompts + [prompts[1], prompts[0], prompts[3] + [7, 8, 9, 10], prompts[3] + [11]]


def test_the_test_prompts_share_a_prefix():
    unique, _ = distinct(_prompts())
    assert PrefixGroup(39, (3, 5, 6)) in prefix_groups(unique, 32)


def test_distinct_by_hand():
    unique, copies = distinct([[1], [2, 3], [1], [4], [2, 3]])
    assert unique == [[1], [2, 3], [4]] and copies == [[0, 2], [1, 4], [3]]


def test_prefix_groups_by_hand():
    a, b = [1, 2, 3, 4, 5], [1, 2, 3, 4, 6, 7]
    # a and b share 4 tokens; c shares 1 with them (below min_shared 2); d = a's prefix + 9 (shares 4 with a)
    c, d = [1, 9], [1, 2, 3, 4, 9]
    assert prefix_groups([a, b, c, d], 2) == [PrefixGroup(4, (0, 1, 3)), PrefixGroup(1, (2,))]
    # a prompt that is another's prefix keeps one token of its own
    assert prefix_groups([[5, 6, 7], [5, 6, 7, 8]], 2) == [PrefixGroup(2, (0, 1))]
    # joining must pay: e shares 2 tokens with a 3-member group sharing 4 (loses 3 x 2 = 6 > 2 gained): alone
    e = [1, 2, 8, 8, 8]
    assert prefix_groups([a, b, d, e], 2) == [PrefixGroup(4, (0, 1, 2)), PrefixGroup(4, (3,))]


def test_buckets_by_hand():
    singles = [PrefixGroup(n - 1, (i,)) for i, n in enumerate([3, 9, 1, 5, 2])]
    lengths = [3, 9, 1, 5, 2]
    # shortest first; a bucket holds at most 10 padded tokens: [1, 2, 3] (3 x 3 = 9), then [5], then [9]
    assert [[g.members[0] for g in b] for b in buckets(singles, lengths, 10)] == [[2, 4, 0], [3], [1]]
    assert len(buckets(singles, lengths, None)) == 1
    # a shared prefix of 6 for members of 8 and 9 tokens: 1 x 6 + 2 x 3 = 12 padded tokens, plus a single of 4
    # (prefix 3, tail 1): 2 x 6 + 3 x 3 = 21
    shared = [PrefixGroup(6, (0, 1)), PrefixGroup(3, (2,))]
    assert prefill_cost(shared[:1], [8, 9, 4]) == 12 and prefill_cost(shared, [8, 9, 4]) == 21


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).log_softmax(-1)  # probabilities 0.64, 0.24, 0.09, 0.03
    kept = torch.isfinite(_top_p(scores, 0.8))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(_top_p(scores, 0.5)).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize("engine", [
    DecodeLoop(), DecodeLoop(dense_copy="none"),
    DecodeLoop(share_prefixes=False, prefill_tokens=None, dense_copy="none"),
    DecodeLoop(prefill_tokens=20, dense_copy="none"),
    DecodeLoop(prefill_tokens=20, dense_copy="none", merge_decode_gib=None),
    DecodeLoop(prefill_tokens=20, dense_copy="none", merge_decode_gib=1e-9),
    DecodeLoop(min_shared_prefix=1000, dense_copy="none"),
    DecodeLoop(prefill_tokens=20, dense_copy="none", unpadded_prefill=False),
    DecodeLoop(prefill_tokens=20, dense_copy="none", read_prefix_once=False),
    DecodeLoop(prefill_tokens=20, dense_copy="none", merge_decode_gib=None, unpadded_prefill=False),
], ids=["default (dense copy on CPU)", "policy", "plain", "buckets decoded as one batch", "buckets decoded alone",
        "merge budget too small", "identical prompts only", "padded prefill", "prefixes copied to every row",
        "a shared prefix decoded alone, padded"])
def test_greedy_decode_loop_equals_transformers_generate(policy, engine):
    model, tok = policy
    settings = GenerationSettings(max_new_tokens=24)
    free = HFGenerate().generate(model, _prompts(), tok.pad_token_id, [tok.eos_token_id], settings).responses
    stops = [tok.eos_token_id, free[0][4], free[3][10]]  # rows finish at different steps and leave the batch
    reference = HFGenerate().generate(model, _prompts(), tok.pad_token_id, stops, settings)
    ours = engine.generate(model, _prompts(), tok.pad_token_id, stops, settings)
    assert ours.responses == reference.responses and ours.logprobs is None
    assert len({len(r) for r in ours.responses}) > 1  # some rows stopped early


@pytest.mark.parametrize("prefill_tokens", [8192, 20], ids=["one bucket", "buckets decoded as one batch"])
def test_sampling_records_the_log_prob_of_each_sampled_token(policy, prefill_tokens):
    model, tok = policy
    settings = GenerationSettings(max_new_tokens=12, do_sample=True, temperature=0.7)
    torch.manual_seed(3)
    engine = DecodeLoop(prefill_tokens=prefill_tokens)
    out = engine.generate(model, _prompts(), tok.pad_token_id, [tok.eos_token_id], settings)
    prompt, response, logq = _prompts()[3], out.responses[3], out.logprobs[3]
    assert len(logq) == len(response) and all(q <= 0 for q in logq)
    with torch.no_grad():  # the recorded log q is the token's log-prob under softmax(logits / T)
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0, len(prompt) - 1:-1]
    expected = torch.log_softmax(logits / 0.7, -1).gather(1, torch.tensor(response)[:, None]).squeeze(1)
    assert torch.allclose(torch.tensor(logq), expected, atol=1e-4)
    torch.manual_seed(3)
    again = DecodeLoop(prefill_tokens=prefill_tokens).generate(model, _prompts(), tok.pad_token_id,
                                                               [tok.eos_token_id], settings)
    assert again.responses == out.responses  # seeded: reproducible


def test_dense_copy_merges_lora_into_the_dequantized_base(policy):
    model, tok = policy
    copy = DenseCopy(torch.float32).refresh(model)
    ids = torch.tensor(_prompts()[:1])
    with torch.no_grad():
        assert torch.allclose(copy(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
    settings = GenerationSettings(max_new_tokens=24)
    reference = HFGenerate().generate(model, _prompts(), tok.pad_token_id, [tok.eos_token_id], settings)
    assert DecodeLoop().generate(copy, _prompts(), tok.pad_token_id, [tok.eos_token_id], settings).responses == \
        reference.responses
    with torch.no_grad():  # a policy update reaches the copy at the next refresh, in place
        next(p for n, p in model.named_parameters() if "lora_B" in n).add_(0.5)
        changed = model(input_ids=ids).logits
        assert DenseCopy(torch.float32).refresh(model) is not copy
        same = DenseCopy(torch.float32)
        same.model = copy
        assert same.refresh(model) is copy and torch.allclose(copy(input_ids=ids).logits, changed, atol=1e-5)


def test_dense_copy_refuses_past_its_budget(policy):
    from tl_lightning.core.errors import UserError

    model, _ = policy
    need = dense_bytes(model, torch.float32)
    assert need > 0
    with pytest.raises(UserError, match="dense sampling copy needs"):
        DenseCopy(torch.float32, max_gib=need / 2**30 / 2).refresh(model)


def test_auto_copy_on_cpu_within_budget_and_rebuilt_after_an_update(policy):
    model, tok = policy
    engine = DecodeLoop()
    copy = engine.sampling_model(model)
    assert copy is not model and engine.sampling_model(model) is copy  # built once while the policy is unchanged
    assert DecodeLoop(dense_copy="none").sampling_model(model) is model
    assert DecodeLoop(dense_max_gib=1e-9).sampling_model(model) is model  # auto: over budget, no copy
    ids = torch.tensor(_prompts()[:1])
    lora_b = next(p for n, p in model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        before = copy(input_ids=ids).logits.clone()
        lora_b.add_(0.3)
        try:
            assert torch.equal(engine.sampling_model(model)(input_ids=ids).logits, before)  # not told: stale
            engine.policy_changed()
            assert torch.allclose(engine.sampling_model(model)(input_ids=ids).logits, model(input_ids=ids).logits,
                                  atol=1e-5)
        finally:
            lora_b.sub_(0.3)


def test_buckets_within_the_budget_decode_as_one_batch(policy, monkeypatch):
    import tl_lightning.models.engine as engine_module

    model, tok = policy
    batches = []

    class Spy(DecodeBatch):
        def __init__(self, parts):
            batches.append(len(parts))
            super().__init__(parts)

    monkeypatch.setattr(engine_module, "DecodeBatch", Spy)
    settings = GenerationSettings(max_new_tokens=4)
    DecodeLoop(prefill_tokens=20, dense_copy="none").generate(model, _prompts(), tok.pad_token_id, [-1], settings)
    assert batches == [len(buckets(prefix_groups(distinct(_prompts())[0], 32),
                                   [len(p) for p in distinct(_prompts())[0]], 20))]
    assert batches[0] > 1
    batches.clear()
    DecodeLoop(prefill_tokens=20, dense_copy="none", merge_decode_gib=None).generate(
        model, _prompts(), tok.pad_token_id, [-1], settings)
    assert set(batches) == {1}
    batches.clear()
    model.config._attn_implementation = "eager"  # not tested in parts: every bucket decodes alone, as before
    try:
        eager = DecodeLoop(prefill_tokens=20, dense_copy="none").generate(model, _prompts(), tok.pad_token_id, [-1],
                                                                          settings)
    finally:
        model.config._attn_implementation = "sdpa"
    assert set(batches) == {1}
    assert eager.responses == HFGenerate().generate(model, _prompts(), tok.pad_token_id, [-1], settings).responses


def _prefilled(model, prompts: list[list[int]], pad_id: int):
    ids, mask = left_pad(prompts, pad_id)
    cache = roomy_cache(model.config, room=4)
    return Part(cache, mask), forward(model, ids, mask, cache)


@torch.no_grad()
def test_parts_decode_as_each_part_alone(policy):
    """Two parts of different lengths stepped as one batch give each row the logits it gets alone; a row that
    leaves takes its cache rows with it, and an emptied part is dropped."""
    model, tok = policy
    short, long = _prompts()[:3], _prompts()[3:5]
    alone = []
    for prompts in (short, long):
        part, logits = _prefilled(model, prompts, tok.pad_token_id)
        alone.append(DecodeBatch([part]).forward(model, logits.argmax(-1)[:, None]))
    parts = [_prefilled(model, p, tok.pad_token_id) for p in (short, long)]
    together = DecodeBatch([part for part, _ in parts])
    first = torch.cat([logits for _, logits in parts]).argmax(-1)
    logits = together.forward(model, first[:, None])
    assert together.parts[0].mask.size(1) != together.parts[1].mask.size(1)  # never padded to one length
    assert torch.allclose(logits, torch.cat(alone), atol=1e-5)
    assert model.config._attn_implementation == "sdpa"  # switched for the step only
    together.keep(torch.tensor([1, 3]))  # row 1 of the short part, row 0 of the long part
    assert len(together) == 2 and [len(p) for p in together.parts] == [1, 1]
    assert together.parts[0].cache.layers[0].keys.size(0) == 1
    together.keep(torch.tensor([1]))
    assert len(together.parts) == 1 and len(together) == 1
    assert together.forward(model, torch.tensor([[5]])).shape == (1, logits.size(-1))


def test_bytes_per_row_token_by_hand():
    config = LlamaConfig(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, hidden_size=8)
    cache = roomy_cache(config, room=4)
    for layer in cache.layers:
        layer.update(torch.zeros(3, 1, 5, 4), torch.zeros(3, 1, 5, 4))
    assert bytes_per_row_token(cache) == 2 * 2 * 4 * 4  # 2 layers, K and V, 1 head of 4, fp32
    cache.layers[0].update(torch.ones(3, 1, 1, 4), torch.ones(3, 1, 1, 4))  # a decode step appends in place
    assert cache.layers[0].keys.shape[-2] == 6 and cache.layers[0].keys[0, 0, -1, 0] == 1.0



def test_left_padded_cache_by_hand():
    config = LlamaConfig(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, hidden_size=8)
    rows = []
    for n in (2, 3):
        cache = roomy_cache(config, room=0)
        for layer in cache.layers:
            keys = torch.arange(1.0, n + 1).view(1, 1, n, 1).expand(1, 1, n, 4)
            layer.update(keys, torch.full((1, 1, n, 4), -1.0))
        rows.append(cache)
    joined = left_padded_cache(config, rows, room=4)
    keys = joined.layers[1].keys[:, 0, :, 0]
    assert keys.tolist() == [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]  # right-aligned, the padding zeroed
    assert joined.layers[0].values[0, 0, :, 0].tolist() == [0.0, -1.0, -1.0]
    joined.layers[0].update(torch.ones(2, 1, 1, 4), torch.ones(2, 1, 1, 4))  # room to append in place
    assert joined.layers[0]._k.shape[-2] == 3 + 4 and joined.layers[0].keys.shape[-2] == 4


@torch.no_grad()
@pytest.mark.parametrize("prompts", [[0, 1, 2, 4], [1, 3, 5, 6]], ids=["whole prompts", "a shared prefix, then tails"])
def test_unpadded_prefill_equals_padded_and_runs_the_causal_kernel(policy, prompts, monkeypatch):
    """Prompts prefilled one at a time give the bucket the logits and cache of a padded batch, and sdpa never
    gets a mask for them (so it can skip the masked half), where the padded batch needs one."""
    model, tok = policy
    unique = distinct(_prompts())[0]
    bucket = [g for g in prefix_groups(unique, 32) if set(g.members) <= set(prompts)]
    masks = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        masks.append(kwargs.get("attn_mask") is not None)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    padded, padded_logits = _prefill(model, bucket, unique, tok.pad_token_id, 4, alone=False)
    masked_padded, masks[:] = list(masks), []
    unpadded, logits = _prefill(model, bucket, unique, tok.pad_token_id, 4, alone=True)
    assert torch.allclose(logits, padded_logits, atol=1e-5)
    assert torch.equal(unpadded.mask, padded.mask)
    real = padded.mask.bool()[:, None, :, None]  # the padding's keys differ (zeros against computed): masked
    for a, b in zip(unpadded.cache.layers, padded.cache.layers):
        assert torch.allclose(a.keys * real, b.keys * real, atol=1e-5)
    heads = len(bucket) * model.config.num_hidden_layers  # the whole prompts, or the shared prefixes
    assert all(masked_padded[:heads]) and not any(masks[:heads])


def test_attention_over_a_shared_prefix_equals_attention_over_each_rows_copy():
    """Rows read their prefix once per step, grouped by owner, joined with their own keys by log-sum-exp: the
    same as a softmax over the copy of the prefix each row had before, padding masked (GQA: 4 heads, 2 kv)."""
    from tl_lightning.models.shared_prefix import SharedPrefix, attend_with_prefix

    g = torch.Generator().manual_seed(0)
    prefix_k, prefix_v = torch.randn(2, 2, 6, 8, generator=g), torch.randn(2, 2, 6, 8, generator=g)
    prefix_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])  # the second prefix left-padded
    owner = torch.tensor([1, 0, 1, 1])
    own_k, own_v = torch.randn(4, 2, 3, 8, generator=g), torch.randn(4, 2, 3, 8, generator=g)
    own_mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]])
    query = torch.randn(4, 4, 1, 8, generator=g)
    prefix = SharedPrefix([prefix_k], [prefix_v], prefix_mask, owner)
    assert prefix.slots()[0].tolist() == [0, 0, 1, 2] and prefix.slots()[1] == 3
    out = attend_with_prefix(query, own_k, own_v, own_mask, prefix, 0, 8 ** -0.5)
    keys = torch.cat([prefix_k[owner], own_k], 2).repeat_interleave(2, 1)
    values = torch.cat([prefix_v[owner], own_v], 2).repeat_interleave(2, 1)
    mask = torch.cat([prefix_mask[owner], own_mask], 1).bool()[:, None, None, :]
    expected = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=mask)
    assert out.shape == (4, 1, 4, 8) and torch.allclose(out, expected.transpose(1, 2), atol=1e-6)
    prefix.select(torch.tensor([0, 3]))  # rows leave; their prefixes stay, read for those left
    out = attend_with_prefix(query[[0, 3]], own_k[[0, 3]], own_v[[0, 3]], own_mask[[0, 3]], prefix, 0, 8 ** -0.5)
    assert torch.allclose(out, expected.transpose(1, 2)[[0, 3]], atol=1e-6)


@torch.no_grad()
def test_copies_of_a_prompt_keep_its_cache_once_and_decode_what_copies_decode(policy):
    """A GRPO group (one prompt, 4 samples; another, 2) and a shared tool list whose members are sampled twice
    each: with `read_prefix_once` the rows hold only their own tokens, each prompt's keys and values once;
    decoding gives the copies' logits."""
    from tl_lightning.models.engine import _expanded

    model, tok = policy
    unique = distinct(_prompts())[0]
    for bucket, copies in [([PrefixGroup(16, (1,)), PrefixGroup(4, (0,))], [[0, 1, 2, 3], [4, 5]]),
                           ([g for g in prefix_groups(unique, 32) if 3 in g.members], [[0, 1], [2, 3], [4, 5]])]:
        logits_per_way, nbytes = [], []
        for own in (lambda: roomy_cache(model.config, 4), None):
            part, logits = _prefill(model, bucket, unique, tok.pad_token_id, 4, alone=True)
            part = _expanded(part, logits, copies, own).part
            nbytes.append(part.nbytes(4))
            assert (part.prefix is not None) == (own is not None)
            batch = DecodeBatch([part])
            step = batch.forward(model, logits.argmax(-1)[:1].expand(len(part))[:, None])
            logits_per_way.append(batch.forward(model, step.argmax(-1)[:, None]))
        assert torch.allclose(*logits_per_way, atol=1e-5)
        assert nbytes[0] < nbytes[1]


def test_sample_categorical_draws_the_distribution_and_never_a_token_of_zero_mass():
    from tl_lightning.models.engine import sample_categorical

    torch.manual_seed(0)
    probs = torch.tensor([[0.0, 0.1, 0.0, 0.2, 0.7, 0.0]]).expand(200_000, 6)
    counts = torch.bincount(sample_categorical(probs), minlength=6) / 200_000
    assert counts[[0, 2, 5]].tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(counts[[1, 3, 4]], torch.tensor([0.1, 0.2, 0.7]), atol=0.005)  # ~5 standard errors
    assert sample_categorical(torch.tensor([[0.0, 0.0, 1.0]])).tolist() == [2]


def test_a_column_major_copy_holds_the_same_weights_and_generates_the_same(policy):
    model, tok = policy
    rows = DenseCopy(torch.float32).refresh(model)
    columns = DenseCopy(torch.float32, column_major=True)
    columns.refresh(model)
    pairs = [(a, b) for a, b in zip(rows.modules(), columns.model.modules()) if isinstance(a, torch.nn.Linear)]
    assert pairs and all(torch.equal(a.weight, b.weight) and b.weight.t().is_contiguous()
                         and not b.weight.is_contiguous() for a, b in pairs)
    settings = GenerationSettings(max_new_tokens=24)
    greedy = [DecodeLoop().generate(copy, _prompts(), tok.pad_token_id, [tok.eos_token_id], settings).responses
              for copy in (rows, columns.model)]
    assert greedy[0] == greedy[1]
    lora_b = next(p for n, p in model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        lora_b.add_(0.3)
        try:  # a refresh writes the updated weights into the same layout
            assert columns.refresh(model) is columns.model
            updated = DenseCopy(torch.float32).refresh(model)
            for a, b in zip(updated.modules(), columns.model.modules()):
                if isinstance(a, torch.nn.Linear):
                    assert torch.equal(a.weight, b.weight) and b.weight.t().is_contiguous()
        finally:
            lora_b.sub_(0.3)
    assert DecodeLoop().sampling_model(model).lm_head.weight.t().is_contiguous()  # the CPU default
    assert DecodeLoop(column_major_copy=False).sampling_model(model).lm_head.weight.is_contiguous()


def test_the_copy_of_a_tied_model_stays_tied_and_its_budget_counts_each_weight_once(tmp_path, policy):
    from transformers import LlamaForCausalLM

    from tl_lightning.models.tiny import build_tokenizer, tokenizer_corpus

    model, _ = policy  # untied, with LoRA: adapters are merged, not counted
    assert dense_bytes(model, torch.float32) == 4 * sum(p.numel() for p in DenseCopy().refresh(model).parameters())
    tok = build_tokenizer(tokenizer_corpus(), 512)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True, pad_token_id=0)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tied = load_policy(ModelSettings(checkpoint=str(tmp_path), quantization="nf4", compute_dtype="float32"),
                       "cpu").eval()
    for column_major in (False, True):
        copy = DenseCopy(torch.float32, column_major=column_major).refresh(tied)
        assert copy.lm_head.weight is copy.model.embed_tokens.weight
        assert dense_bytes(tied, torch.float32) == 4 * sum(p.numel() for p in copy.parameters())
        ids = torch.tensor([[1, 5, 9, 33, 70]])
        with torch.no_grad():
            assert torch.allclose(copy(input_ids=ids).logits, tied(input_ids=ids).logits, atol=1e-5)
