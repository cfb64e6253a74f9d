"""The SFT datamodule's counts and options: truncation is counted in data_stats, the paper's turn selection."""

from tl_lightning.core.constants import IGNORE_INDEX
from tl_lightning.data.sft_datamodule import ToolSFTDataModule, turns_followed_by_user
from tl_lightning.data.sources import DataSource
from tl_lightning.format.schema import Conversation, Message, ToolCall, ToolSpec


def test_truncated_conversations_and_dropped_turns_are_counted(tiny_checkpoint):
    dm = ToolSFTDataModule(tokenizer=tiny_checkpoint, train=DataSource(size=12), val=DataSource(split="val", size=2),
                           max_length=800)
    dm.setup()
    stats = dm.stats["train"]
    assert stats["truncated_conversations"] > 0 and stats["dropped_turns"] > 0
    roomy = ToolSFTDataModule(tokenizer=tiny_checkpoint, train=DataSource(size=12), val=DataSource(split="val", size=2),
                              max_length=4096)
    roomy.setup()
    assert roomy.stats["train"]["truncated_conversations"] == roomy.stats["train"]["dropped_turns"] == 0


def test_paper_turn_selection_skips_a_turn_that_a_user_message_follows(tiny_checkpoint):
    conv = Conversation("u", (ToolSpec("ask_to_user"), ToolSpec("finish")), (
        Message("user", "book me something"),
        Message("assistant", "Which city?"),
        Message("user", "Paris"),
        Message("assistant", calls=(ToolCall("finish", {"answer": "booked"}),)),
    ))
    assert turns_followed_by_user(conv) == {1}
    trained = {}
    for rule in ("all", "paper"):
        dm = ToolSFTDataModule(tokenizer=tiny_checkpoint, trained_turns=rule)
        dm.load_tokenizer()
        enc, rendered, blocked = dm.encode_conversation(conv)
        trained[rule] = sum(lab != IGNORE_INDEX for lab in enc.labels)
        assert (1 in blocked) == (rule == "paper")
    assert 0 < trained["paper"] < trained["all"]
