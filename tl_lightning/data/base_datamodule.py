"""What every tl-lightning datamodule shares: a lazily loaded tokenizer and the renderer of its prompt format."""

from __future__ import annotations

import lightning as L

from tl_lightning.data.render import Renderer, make_renderer


class ToolDataModule(L.LightningDataModule):
    """Base for datamodules whose hparams hold `tokenizer` (path or hub id) and `prompt_format`."""

    tok = None

    def load_tokenizer(self):
        from tl_lightning.models.loading import load_tokenizer

        if self.tok is None:
            self.tok = load_tokenizer(self.hparams.tokenizer)
        return self.tok

    def renderer(self) -> Renderer:
        return make_renderer(self.hparams.prompt_format, self.tok)
