"""The call format: rendering with spans, and the ast-only parser (round trip, forms, robustness)."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_lightning.format.call_format import parse_calls, render_call, render_calls
from tl_lightning.format.schema import ToolCall


def test_non_identifier_keys_round_trip():
    call = ToolCall("execute_pycode", {"code:": "print(1)", "lang": "py", "class": 1, "\ufb00": 2})
    rc = render_call(call)
    assert rc.text == "execute_pycode(**{'code:': 'print(1)'}, lang='py', **{'class': 1}, **{'\ufb00': 2})"
    assert [(rc.text[slice(*k)], rc.text[slice(*v)]) for k, v in rc.args] == [
        ("'code:'", "'print(1)'"), ("lang", "'py'"), ("'class'", "1"), ("'\ufb00'", "2")]
    assert parse_calls(rc.text).calls == (call,)


def test_render_single_quote_style_and_spans():
    call = ToolCall("getPapersByKeywords", {"query": "tool learning", "venue": "ICLR", "limit": 1})
    rc = render_call(call)
    assert rc.text == "getPapersByKeywords(query='tool learning', venue='ICLR', limit=1)"
    assert rc.text[slice(*rc.name)] == "getPapersByKeywords"
    assert [(rc.text[slice(*k)], rc.text[slice(*v)]) for k, v in rc.args] == [
        ("query", "'tool learning'"), ("venue", "'ICLR'"), ("limit", "1")]


@pytest.mark.parametrize("text, expected", [
    ("f(a='x', b=2)", [ToolCall("f", {"a": "x", "b": 2})]),
    ('f(a="x", b=-2.5, c=None, d=True, e=[1, "2"], g={"k": [false]})'.replace("false", "False"),
     [ToolCall("f", {"a": "x", "b": -2.5, "c": None, "d": True, "e": [1, "2"], "g": {"k": [False]}})]),
    ("f(flag=true, v=null)", [ToolCall("f", {"flag": True, "v": None})]),
    ("math.sqrt(x=4)", [ToolCall("math.sqrt", {"x": 4})]),
    ("a(x=1)\nb(y=2)", [ToolCall("a", {"x": 1}), ToolCall("b", {"y": 2})]),
    ("a(x=1); b(y=2)", [ToolCall("a", {"x": 1}), ToolCall("b", {"y": 2})]),
    ("[a(x=1), b(y=(1, 2))]", [ToolCall("a", {"x": 1}), ToolCall("b", {"y": [1, 2]})]),
    ("```python\nf(a=1)\n```", [ToolCall("f", {"a": 1})]),
    ('Thought: look it up\nAction: get_x\nAction Input: {"q": "a b", "n": 3}', [ToolCall("get_x", {"q": "a b",
                                                                                                   "n": 3})]),
    ("Thought:\nAction: finish\nAction Input: {'answer': 'done'}", [ToolCall("finish", {"answer": "done"})]),
    ('Action: a\nAction Input: {}\nAction: b\nAction Input: {"k": 1}', [ToolCall("a", {}), ToolCall("b", {"k": 1})]),
    ('search_advice\n{"query": "love"}', [ToolCall("search_advice", {"query": "love"})]),
    ("preferred-routes_get()", [ToolCall("preferred-routes_get", {})]),
    ("f(p=1/4, a=500*500, b=-2+3.5, c=7-10)", [ToolCall("f", {"p": 0.25, "a": 250000, "b": 1.5, "c": -3})]),
    ("preferred-routes_search_get(origin='A-B', note='x-y(z)')",
     [ToolCall("preferred-routes_search_get", {"origin": "A-B", "note": "x-y(z)"})]),
])
def test_parse_forms(text, expected):
    r = parse_calls(text)
    assert r.ok, r.failure
    assert list(r.calls) == expected


@pytest.mark.parametrize("text, kind", [
    ("", "empty"), ("   ", "empty"), ("hello world", "syntax"), ("f(1, 2)", "positional_argument"),
    ("f(a=g())", "non_literal_value"), ("f(a=x)", "non_literal_value"), ("f(**d)", "non_literal_value"),
    ("f(**{1: 2})", "non_literal_value"), ("f(a=1, **{'a': 2})", "duplicate_argument"),
    ("x = f(a=1)", "not_a_call"), ("1 + 2", "not_a_call"), ("a - b(x=1)", "not_a_call"), ("f(a=1, a=2)",
                                                                                          "duplicate_argument"),
    ("Action: f\nAction Input: [1, 2]", "bad_action_input"), ("Action: f\nAction Input: {oops", "bad_action_input"),
    ("f(a=1" * 10, "syntax"), ("x" * 30_000, "too_long"),
    ("f(x=2**3)", "non_literal_value"), ("f(x=1/0)", "non_literal_value"), ("f(x='a'*3)", "non_literal_value"),
    ("f(x=99999999999*99999999999)", "non_literal_value"),
])
def test_parse_failures_are_typed(text, kind):
    r = parse_calls(text)
    assert not r.ok and r.failure.kind == kind, r


def test_parser_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    attacks = [f"__import__('os').system('touch {marker}')", f"f(a=__import__('os').system('touch {marker}'))",
               f"f(a=open('{marker}', 'w'))", "f(a=(lambda: 1)())", "f(a=[x for x in range(10**9)])",
               "f(a=1 if True else 2)", "f(a=b'bytes')", "f(a=1j)", "f(a=...)", "exec('1')"]
    for text in attacks:
        r = parse_calls(text)
        assert not r.ok or all(not isinstance(v, bytes) for c in r.calls for v in c.arguments.values())
    assert not marker.exists()


def test_parser_bounded_on_pathological_input():
    cases = ["f(a=" + "[" * 5000 + "]" * 5000 + ")", "f(a=" + "9" * 19_000 + ")", "(" * 15_000,
             "f(a={" * 3000, "'" * 19_999, "Action:" * 2000]
    for text in cases:
        t = time.perf_counter()
        r = parse_calls(text)
        assert time.perf_counter() - t < 2.0
        assert r.ok or r.failure is not None


json_scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True).filter(
    lambda s: s not in {"None", "True", "False"} and not __import__("keyword").iskeyword(s))


@settings(max_examples=300, deadline=None)
@given(name=identifiers, args=st.dictionaries(identifiers | st.text(min_size=1, max_size=8), json_values, max_size=5))
def test_round_trip_render_parse(name, args):
    call = ToolCall(name, args)
    r = parse_calls(render_call(call).text)
    assert r.ok, (render_call(call).text, r.failure)
    assert r.calls == (call,)


@settings(max_examples=100, deadline=None)
@given(calls=st.lists(st.builds(ToolCall, identifiers, st.dictionaries(identifiers, json_values, max_size=3)),
                      min_size=1, max_size=3))
def test_round_trip_several_calls(calls):
    text = "\n".join(rc.text for _, rc in render_calls(calls))
    assert parse_calls(text).calls == tuple(calls)


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_random_text_never_raises(text):
    r = parse_calls(text)
    assert r.ok or r.failure.kind


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="f(a=b)'\"[]{}:,.\n Action Input Thought 0123456789-_", max_size=200))
def test_adversarial_call_like_text_never_raises(text):
    r = parse_calls(text)
    assert r.ok or r.failure.kind
