"""One-pass tokenization: labels, MAE blocks and PKT weights checked token by token."""

from tl_lightning.core.constants import IGNORE_INDEX
from tl_lightning.data.mae import MAESettings, apply_mae
from tl_lightning.data.tokenization import encode_rendered, tokenize_rendered
from tl_lightning.data.weighting import PKTWeighting
from tl_lightning.format.render import PaperFormat
from tl_lightning.format.schema import Conversation, Message, ToolCall, ToolSpec
from tl_lightning.objectives.token_weights import pkt_weight


def test_token_by_token_labels_with_erroneous_middle_turn(tokenizer):
    tools = (ToolSpec("get_paper_details"), ToolSpec("get_papers_by_keywords"), ToolSpec("finish"))
    conv = Conversation("t", tools, (
        Message("user", "papers on tool learning"),
        Message("assistant", calls=(ToolCall("get_papers", {"query": "tool learning"}),)),
        Message("tool", "NameError: name 'get_papers' is not defined"),
        Message("assistant", calls=(ToolCall("get_papers_by_keywords", {"query": "tool learning"}),)),
        Message("tool", '{"results": [{"id": "P-1"}]}'),
        Message("assistant", calls=(ToolCall("finish", {"answer": "P-1"}),)),
    ))
    kept, blocked = apply_mae(conv, MAESettings())
    assert blocked == {1}
    rendered = PaperFormat(tokenizer.eos_token).render(kept)
    enc = encode_rendered(rendered, tokenizer, conv.tool_names, blocked, PKTWeighting())
    offsets = tokenizer(rendered.text, return_offsets_mapping=True)["offset_mapping"]
    text_of = [rendered.text[a:b] for a, b in offsets]
    trained = [(text_of[i], enc.weights[i], enc.key_mask[i]) for i, lab in enumerate(enc.labels)
               if lab != IGNORE_INDEX]
    # Turn 1 (blocked by MAE) contributes nothing; turns 3 and 5 are trained in full, each ending with </s>.
    assert "".join(t for t, _,
                   _ in trained) == " get_papers_by_keywords(query='tool learning')</s> finish(answer='P-1')</s>"
    assert enc.n_blocked > 0 and "get_papers(" in rendered.text  # the erroneous call stays in the context
    first_turn = trained[: [t for t, _, _ in trained].index("</s>") + 1]
    keys = [t for t, _, k in first_turn if k]
    # get_papers_by_keywords: its first token, plus the token where it diverges from get_paper_details ("s" at char 9)
    assert keys[0].strip().startswith("get") and len(keys) >= 2
    n_key = len(keys)
    w = pkt_weight(n_key, len(first_turn) - n_key, 9.0)
    assert w > 1 and all(wt == (w if k else 1.0) for _, wt, k in first_turn)
    finish_turn = trained[len(first_turn):]
    assert [k for _, _, k in finish_turn] == [True] + [False] * (len(finish_turn) - 1)  # finish: only its first token


def _three_turns():
    tools = (ToolSpec("get_weather"), ToolSpec("finish"))
    return Conversation("t3", tools, (
        Message("user", "weather in Paris?"),
        Message("assistant", calls=(ToolCall("get_weather", {"city": "Paris"}),)),
        Message("tool", '{"temp": 21}'),
        Message("assistant", calls=(ToolCall("finish", {"answer": "It is 21 degrees in Paris."}),)),
    ))


def test_truncation_never_trains_half_a_turn(tokenizer):
    conv = _three_turns()
    rendered = PaperFormat(tokenizer.eos_token).render(conv)
    full = encode_rendered(rendered, tokenizer, conv.tool_names)
    second = [s for s in rendered.segments if s.trainable][1]
    offsets = tokenize_rendered(rendered, tokenizer, offsets=True)["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if a >= second.start and b <= second.end and b > a]
    cut = inside[len(inside) // 2]  # the limit falls inside the last call
    enc = encode_rendered(rendered, tokenizer, conv.tool_names, max_length=cut)
    assert enc.truncated and enc.dropped_turns == 1 and len(enc.input_ids) == cut
    trained = [i for i, lab in enumerate(enc.labels) if lab != IGNORE_INDEX]
    first_turn = [i for i, lab in enumerate(full.labels) if lab != IGNORE_INDEX and i < inside[0]]
    assert trained == first_turn  # the whole first turn, nothing of the cut one (before: its first half was trained)
    assert full.dropped_turns == 0 and not full.truncated


def test_per_turn_normalisation_gives_each_turn_weight_one(tokenizer):
    conv = _three_turns()
    rendered = PaperFormat(tokenizer.eos_token).render(conv)
    enc = encode_rendered(rendered, tokenizer, conv.tool_names, weighting=PKTWeighting(), per_turn=True)
    offsets = tokenize_rendered(rendered, tokenizer, offsets=True)["offset_mapping"]
    for seg in (s for s in rendered.segments if s.trainable):
        turn = [enc.weights[i] for i, (a, b) in enumerate(offsets) if a >= seg.start and b <= seg.end and b > a]
        assert abs(sum(turn) - 1.0) < 1e-5 and max(turn) > min(turn)  # PKT still up-weights key tokens within it


def test_untrained_tail_is_trimmed_with_the_same_loss_and_gradients(tokenizer):
    """A last call blocked by MAE (and the tool output after it) is no label: the trimmed sequence ends at the last
    trained token, and a causal model gives it the same weighted loss and gradients as the full one."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tl_lightning.objectives.weighted_ce import weighted_cross_entropy

    conv = _three_turns()
    conv = Conversation(conv.id, conv.tools, (*conv.messages[:-1], Message(
        "assistant", calls=(ToolCall("get_wether", {"city": "Paris"}),)), Message("tool", "NameError: name "
                                                                                  "'get_wether' is not defined")))
    kept, blocked = apply_mae(conv, MAESettings())
    assert blocked == {len(conv.messages) - 2}
    rendered = PaperFormat(tokenizer.eos_token).render(kept)
    full = encode_rendered(rendered, tokenizer, conv.tool_names, blocked, PKTWeighting())
    trim = encode_rendered(rendered, tokenizer, conv.tool_names, blocked, PKTWeighting(), trim_untrained_tail=True)
    last = max(i for i, lab in enumerate(full.labels) if lab != IGNORE_INDEX)
    assert len(trim.input_ids) == last + 1 < len(full.input_ids)
    assert trim.labels == full.labels[:last + 1] and trim.weights == full.weights[:last + 1]
    assert trim.n_trainable == full.n_trainable and not trim.truncated
    assert full.n_blocked > 0 and trim.n_blocked == 0  # the blocked call was the tail
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4))
    grads = []
    for enc in (full, trim):
        model.zero_grad()
        logits = model(input_ids=torch.tensor([enc.input_ids])).logits
        loss = weighted_cross_entropy(logits, torch.tensor([enc.labels]), torch.tensor([enc.weights]))
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0])
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
