"""Renderers: the paper's worked example rendered exactly; spans point at the right text; chat-template path."""

from tl_lightning.format.render import ChatTemplateFormat, PaperFormat
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
