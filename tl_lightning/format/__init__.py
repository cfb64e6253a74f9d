"""The bottom layer: what a tool-use conversation *is* and how it looks as text.

`schema` (tools, calls, messages, conversations), `call_format` (the one place that renders and parses calls),
`render` (conversation → text + character spans, with the prompt's BOS policy) and `tools` (facts about tools,
such as which take free text). Everything above imports from here; nothing here imports from above.
"""
