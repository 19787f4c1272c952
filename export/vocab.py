"""Vocabulary pruning at export: the text tower a pruned bundle runs. Which ids are kept, and how a
tower keeps only their rows, is core/vocabulary.py's, shared with training on a compact vocabulary."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from siglip2_sdk.core.model import SiglipModel
from siglip2_sdk.core.vocabulary import KeptVocabulary, with_kept_rows


class PrunedTextEncoder(nn.Module):
    """The text tower with only the kept rows of its token table; takes the original ids and maps
    them in the graph (a gather on a buffer), dropped ids to the `<unk>` row."""

    def __init__(self, model: SiglipModel, vocabulary: KeptVocabulary):
        super().__init__()
        self.text_model = with_kept_rows(model.text_model, vocabulary)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_model.pooled(input_ids), dim=-1)
