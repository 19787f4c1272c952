"""SigLIP 2 text tokenization with big_vision semantics, on top of a Hugging Face `tokenizer.json`.

big_vision (which trained SigLIP 2) lowercases, encodes with the Gemma SentencePiece model without
BOS, appends EOS, truncates keeping EOS last ("sticky"), and right-pads with 0 to 64 tokens. The
text tower pools the last position, so the layout must match exactly; transformers'
`Siglip2Tokenizer` pads on the left, which is why this module does not reuse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tokenizers

from .config import TextConfig
from .errors import TokenizerError


class Tokenizer:
    """Turns texts into the fixed-length int64 token rows the SigLIP 2 text tower expects."""

    def __init__(
        self,
        raw: tokenizers.Tokenizer,
        path: Path,
        *,
        length: int,
        lowercase: bool,
        pad_id: int,
        eos_id: int,
    ):
        """Wrap an already loaded tokenizer; most callers want `Tokenizer.from_file`."""
        if length < 1:
            raise ValueError(f"length must be at least 1 (room for EOS), got {length}")
        self._raw = raw
        # A saved tokenizer.json may carry its own padding/truncation (transformers writes left
        # padding for Siglip2); the layout here is ours alone.
        self._raw.no_padding()
        self._raw.no_truncation()
        # SentencePiece never turns text such as "<eos>" into a control token; without this a
        # caption could inject EOS or pad ids in the middle of a row.
        self._raw.encode_special_tokens = True
        self._path = path
        self._length = length
        self._lowercase = lowercase
        self._pad_id = pad_id
        self._eos_id = eos_id

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        length: int = 64,
        lowercase: bool = True,
        pad_id: int = 0,
        eos_token: str = "<eos>",
    ) -> Tokenizer:
        """Load a Hugging Face `tokenizer.json` (the Gemma 256k one for SigLIP 2)."""
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(
                f"tokenizer file '{path}' does not exist; pass the path to a tokenizer.json "
                "(siglip2_sdk.core.assets.fetch_gemma_tokenizer() fetches the Gemma one)"
            )
        try:
            raw = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises a bare Exception for any parse error
            raise TokenizerError(f"tokenizer file '{path}' cannot be loaded: {e}") from e
        eos_id = raw.token_to_id(eos_token)
        if eos_id is None:
            raise TokenizerError(
                f"tokenizer file '{path}' has no token {eos_token!r}; it is not the Gemma tokenizer "
                "SigLIP 2 uses, or pass the right eos_token"
            )
        return cls(raw, path, length=length, lowercase=lowercase, pad_id=pad_id, eos_id=eos_id)

    @classmethod
    def for_text_tower(cls, path: str | Path, text: TextConfig) -> Tokenizer:
        """The tokenizer laid out for a text tower (its context length and pad id), refused when it
        has more tokens than the tower's vocabulary (ids past the embedding table)."""
        tokenizer = cls.from_file(path, length=text.context_length, pad_id=text.pad_id)
        if tokenizer.vocab_size > text.vocab_size:
            raise TokenizerError(
                f"'{path}' has {tokenizer.vocab_size:,} tokens but the model's vocabulary has "
                f"{text.vocab_size:,}: this tokenizer does not belong to this model"
            )
        return tokenizer

    @property
    def length(self) -> int:
        """Tokens per row (64 for SigLIP 2); the text tower pools position `length - 1`."""
        return self._length

    @property
    def lowercase(self) -> bool:
        return self._lowercase

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def eos_id(self) -> int:
        return self._eos_id

    @property
    def vocab_size(self) -> int:
        return self._raw.get_vocab_size(with_added_tokens=True)

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return (
            f"Tokenizer(path='{self._path}', length={self._length}, lowercase={self._lowercase}, "
            f"pad_id={self._pad_id}, eos_id={self._eos_id})"
        )

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """Token ids, int64 of shape (N, length): EOS-terminated, truncated keeping EOS, right-padded."""
        batch = [texts] if isinstance(texts, str) else list(texts)
        out = np.full((len(batch), self._length), self._pad_id, dtype=np.int64)
        for row, ids in zip(out, self._encode_batch(batch), strict=True):
            kept = [*ids[: self._length - 1], self._eos_id]
            row[: len(kept)] = kept
        return out

    def encode(self, text: str) -> list[int]:
        """The ids of one text with lowercasing and EOS but no truncation or padding, for inspection."""
        return [*self._encode_batch([text])[0], self._eos_id]

    def _encode_batch(self, texts: list[str]) -> list[list[int]]:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TokenizerError(f"text at index {i} is {type(text).__name__}, not str")
        if self._lowercase:
            texts = [text.lower() for text in texts]
        # No special tokens: the file's post-processor would prepend <bos>, which SigLIP 2 never saw.
        return [e.ids for e in self._raw.encode_batch(texts, add_special_tokens=False)]
