"""The demo reward model's architecture: a BERT encoder, the mean of its last hidden states over
the attention mask, and a linear scalar head (one place, shared by training and scoring).

A frozen-feature probe on mean-pooled MiniLM states ranked AlpacaEval answers better (0.69 held-out
pairwise) than BERT's [CLS] pooler that AutoModelForSequenceClassification uses. On disk: the
encoder's HF folder (config, weights, tokenizer) plus HEAD_FILE with the head's weight and bias;
a folder without HEAD_FILE is a plain sequence-classification reward model (the paper's DeBERTa).
Imports torch: load it lazily (the registry and the Snakefile must not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

HEAD_FILE = "reward_head.safetensors"


def is_mean_pool_folder(folder: str | Path) -> bool:
    """Whether a local model folder holds a mean-pooled reward model (HEAD_FILE beside the encoder)."""
    return (Path(folder) / HEAD_FILE).is_file()


class MeanPoolReward(nn.Module):
    """Encoder -> masked mean of the last hidden states -> Linear(hidden, 1); forward returns one
    reward per row (shape [batch])."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, 1)

    @property
    def device(self) -> torch.device:
        """Where the weights are (the encoder's device)."""
        return self.head.weight.device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Rewards of a padded batch."""
        return self.head(self.pool(input_ids, attention_mask, token_type_ids)).squeeze(-1)

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The masked mean of the encoder's last hidden states ([batch, hidden])."""
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def save(self, folder: str | Path) -> None:
        """The encoder's HF folder + HEAD_FILE (the tokenizer is saved by the caller)."""
        from safetensors.torch import save_file

        self.encoder.save_pretrained(str(folder))
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, str(Path(folder) / HEAD_FILE))

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> MeanPoolReward:
        """Load a saved model in eval mode (float32; the demo model is small)."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        model = cls(AutoModel.from_pretrained(str(folder), add_pooling_layer=False))
        model.head.load_state_dict(load_file(str(Path(folder) / HEAD_FILE)))
        return model.to(device).eval()
