"""What every tl-lightning datamodule shares: a lazily loaded tokenizer, the renderer of its prompt format, and
prompt batches (`PromptBatch`) that travel to the system as they are."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.batches import PromptBatch, collate_prompts, prompt_item
from tl_lightning.data.tokenization import prompt_token_ids
from tl_lightning.format.render import Renderer, make_renderer
from tl_lightning.format.schema import Conversation
from tl_lightning.rewards.taxonomy import ScoringMode


class ToolDataModule(L.LightningDataModule):
    """Base for datamodules whose hparams hold `tokenizer` (path or hub id) and `prompt_format`."""

    tok = None

    def load_tokenizer(self):
        if self.tok is None:
            self.tok = load_tokenizer(self.hparams.tokenizer)
        return self.tok

    def renderer(self) -> Renderer:
        return make_renderer(self.hparams.prompt_format, self.load_tokenizer())

    def prompt_items(self, prompts: list[Conversation], group: str = "",
                     scoring: ScoringMode = "lenient") -> list[dict]:
        """Step prompts → items of a prompt loader (tokenized once, here, with this module's renderer)."""
        ids = prompt_token_ids(prompts, self.renderer(), self.load_tokenizer())
        return [prompt_item(i, c, group, scoring) for i, c in zip(ids, prompts)]

    @staticmethod
    def prompt_loader(items: list[dict], batch_size: int) -> DataLoader:
        return DataLoader(items, batch_size=batch_size, shuffle=False, collate_fn=collate_prompts)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        if isinstance(batch, PromptBatch):  # token lists and conversations: the system places tensors itself
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)
