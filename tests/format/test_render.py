"""Renderers: the paper's worked example rendered exactly; spans point at the right text; chat-template path,
with templates that render `tools=` and templates that do not (tools then go into the system message)."""

import pytest
from helpers import shared_data

from tl_lightning.data.loaders import load_source
from tl_lightning.format.render import TOOLS_INSTRUCTION, ChatTemplateFormat, PaperFormat, tool_system_block
from tl_lightning.format.schema import Conversation, Message, ToolCall, ToolParam, ToolSpec

# The paper's worked example (paper.md §3.1): tools getPaperDetails / getPapersByKeywords / finish.
TOOLS = (
    ToolSpec("getPaperDetails", "Get details of a paper.", (
        ToolParam("paperId", "string", "The paper id."), ToolParam("fields", "string", "Fields to return.", False))),
    ToolSpec("getPapersByKeywords", "Search papers by keywords.", (
        ToolParam("query", "string", "Keywords."), ToolParam("fields", "string", "Fields.", False),
        ToolParam("publicationTypes", "string", "Types.", False), ToolParam("openAccessPdf", "boolean", "Open PDF.",
                                                                            False))),
    ToolSpec("finish", "Finish the task.", (ToolParam("answer", "string", "Your answer."),)),
)
WORKED = Conversation("worked", TOOLS, (
    Message("user", "Find the ICLR paper on tool learning."),
    Message("assistant", calls=(ToolCall("getPapersByKeywords", {"keyword": "tool learning", "venue": "ICLR",
                                                                 "limit": 1}),)),
    Message("tool", "getPapersByKeywords() missing 1 positional argument: 'query'"),
    Message("assistant", calls=(ToolCall("getPapersByKeywords", {"query": "tool learning", "venue": "ICLR",
                                                                 "limit": 1}),)),
    Message("tool", '{"paperId": "ICLR2024TOOLLEARNING"}'),
    Message("assistant", calls=(ToolCall("finish", {"answer": "The paper is ICLR2024TOOLLEARNING."}),)),
))

GOLDEN = '''System: Function:
def getPaperDetails(paperId: string, fields: string = None):
    """Get details of a paper.

    Args:
        paperId (string): The paper id.
        fields (string): Fields to return.
    """

Function:
def getPapersByKeywords(query: string, fields: string = None, publicationTypes: string = None, openAccessPdf: boolean = None):
    """Search papers by keywords.

    Args:
        query (string): Keywords.
        fields (string): Fields.
        publicationTypes (string): Types.
        openAccessPdf (boolean): Open PDF.
    """

Function:
def finish(answer: string):
    """Finish the task.

    Args:
        answer (string): Your answer.
    """
User: Find the ICLR paper on tool learning.
Assistant: getPapersByKeywords(keyword='tool learning', venue='ICLR', limit=1)</s>
Output: getPapersByKeywords() missing 1 positional argument: 'query'
Assistant: getPapersByKeywords(query='tool learning', venue='ICLR', limit=1)</s>
Output: {"paperId": "ICLR2024TOOLLEARNING"}
Assistant: finish(answer='The paper is ICLR2024TOOLLEARNING.')</s>'''


def test_paper_worked_example_golden():
    assert PaperFormat().render(WORKED).text == GOLDEN


def test_segments_cover_text_and_spans_point_at_names_and_args():
    r = PaperFormat().render(WORKED)
    assert "".join(r.text[s.start:s.end] for s in r.segments) == r.text
    bodies = [s for s in r.segments if s.trainable]
    assert [s.message_index for s in bodies] == [1, 3, 5]
    assert all(s.role == "assistant" for s in bodies)
    assert [r.text[a:b] for s in bodies for a, b in s.name_spans] == ["getPapersByKeywords"] * 2 + ["finish"]
    keys = [(r.text[k[0]:k[1]], r.text[v[0]:v[1]]) for k, v in bodies[1].arg_spans]
    assert keys == [("query", "'tool learning'"), ("venue", "'ICLR'"), ("limit", "1")]
    assert r.text[bodies[0].end - 4:bodies[0].end] == "</s>"  # every turn learns to stop


def test_generation_prompt_ends_with_assistant_header():
    r = PaperFormat().render(WORKED, messages=WORKED.messages[:1], add_generation_prompt=True)
    assert r.text.endswith("\nUser: Find the ICLR paper on tool learning.\nAssistant:")
    assert not any(s.trainable for s in r.segments)
    assert GOLDEN.startswith(r.text)


def test_chat_template_format_spans(tokenizer):
    r = ChatTemplateFormat(tokenizer).render(WORKED)
    bodies = [s for s in r.segments if s.trainable]
    assert [r.text[a:b] for s in bodies for a, b in s.name_spans] == ["getPapersByKeywords"] * 2 + ["finish"]
    assert r.text[bodies[0].start:bodies[0].end].strip().startswith("getPapersByKeywords(keyword=")
    header = [s for s in r.segments if s.role == "header"]
    assert header and not any(s.trainable for s in header)


# A tools-aware ChatML template in the layout of Hermes / Qwen-2.5 (tools as JSON lines in the system message).
TOOLS_CHATML = (
    "{% if tools %}<|im_start|>system\n{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n"
    "{% endif %}# Tools\n<tools>\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}</tools><|im_end|>\n"
    "{% elif messages[0]['role'] == 'system' %}<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if not (loop.first and m['role'] == 'system') %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Plain ChatML (SmolLM2's template without its default system prompt): no tools block.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# A template that renders neither tools nor system messages: the tool list has nowhere to go.
NO_SYSTEM = ("{% for m in messages %}{% if m['role'] != 'system' %}{{ m['role'] }}: {{ m['content'] }}</s>\n{% endif %}"
             "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")


def with_template(tokenizer, template: str):
    import copy

    tok = copy.deepcopy(tokenizer)
    if "<|im_end|>" in template:  # ChatML tokenizers have its markers as special tokens (a turn must end in one)
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = template
    return tok


def assert_keeps_tools_and_covers(r, conv):
    assert "".join(r.text[s.start:s.end] for s in r.segments) == r.text
    assert all(t.name in r.text[: r.prompt_end] for t in conv.tools)  # in the prompt, before any trained token


def test_template_without_tools_block_gets_them_in_the_system_message(tokenizer):
    fmt = ChatTemplateFormat(tokenizer)  # the tiny model's LLaMA-2 template has no tools block
    assert not fmt.renders_tools
    r = fmt.render(WORKED)
    assert_keeps_tools_and_covers(r, WORKED)
    assert tool_system_block(WORKED.tools) in r.text
    bodies = [s for s in r.segments if s.trainable]
    assert [r.text[a:b] for s in bodies for a, b in s.name_spans] == ["getPapersByKeywords"] * 2 + ["finish"]


def test_template_with_tools_block_renders_them_itself_once(tokenizer):
    fmt = ChatTemplateFormat(with_template(tokenizer, TOOLS_CHATML))
    assert fmt.renders_tools
    r = fmt.render(WORKED, messages=WORKED.messages[:1], add_generation_prompt=True)
    assert_keeps_tools_and_covers(r, WORKED)
    assert "# Tools\n<tools>" in r.text and TOOLS_INSTRUCTION not in r.text


def test_conversation_system_text_follows_the_tool_block(tokenizer):
    fmt = ChatTemplateFormat(with_template(tokenizer, CHATML))
    conv = Conversation("sys", WORKED.tools, (Message("system", "Be brief."),) + WORKED.messages[:2])
    r = fmt.render(conv)
    assert_keeps_tools_and_covers(r, conv)
    system = r.segments[0]
    assert (system.role, system.message_index) == ("system", 0)  # one system message: the block, then its text
    assert r.text[system.start:system.end] == f"<|im_start|>system\n{tool_system_block(WORKED.tools)}\n\nBe brief.<|im_end|>\n"


def test_template_that_loses_the_tool_list_is_refused(tokenizer):
    with pytest.raises(ValueError, match="dropped tools"):
        ChatTemplateFormat(with_template(tokenizer, NO_SYSTEM)).render(WORKED)


@pytest.mark.parametrize("template", ["own", "tools_block"])
@pytest.mark.parametrize("fmt, path", [("rotbench", ("rotbench", "Data", "First_Turn", "clean.json")),
                                       ("toolalpaca", ("toolalpaca", "data", "eval_real.json"))])
def test_real_template_keeps_every_tool_in_the_prompt(smollm2_tokenizer, template, fmt, path):
    """SmolLM2's own ChatML template (no tools block) and the same tokenizer with a tools-aware template: every
    tool of every item is in the generation prompt."""
    tok = smollm2_tokenizer if template == "own" else with_template(smollm2_tokenizer, TOOLS_CHATML)
    renderer = ChatTemplateFormat(tok)
    assert renderer.renders_tools == (template == "tools_block")
    items = list(load_source(fmt, shared_data(*path)))
    for conv in items:
        r = renderer.render(conv, add_generation_prompt=True)
        assert_keeps_tools_and_covers(r, conv)
        assert r.text.endswith("<|im_start|>assistant\n")
    assert sum(len(c.tools) for c in items) > 500
