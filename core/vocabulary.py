"""A compact token vocabulary: only the token ids a corpus or a set of languages needs, shared by
training (`pretrain` / `distill --vocab-from/--languages`) and export (a pruned bundle).

The Gemma table (256,000 rows) is most of a small model's parameters and most of a phone bundle's
text tower. Token ids are never renumbered: the tokenizer.json stays the original (BPE with byte
fallback, whose ids cannot be renumbered consistently), and a compact text tower maps each original
id to a row of its small table (`TokenEmbeddings.row_of_id`). Every dropped id maps to the row of
`<unk>`: text outside the kept set still runs, degraded. A checkpoint trained this way is written
with the full table, each dropped id's row a copy of `<unk>`'s, so transformers loads it and gives
the same embeddings; `vocabulary.json` beside it lists the kept ids, and export prunes to them.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tokenizers

from siglip2_sdk.core.config import TextConfig
from siglip2_sdk.core.errors import CheckpointError, Siglip2Error, TokenizerError
from siglip2_sdk.core.tokenizer import Tokenizer

if TYPE_CHECKING:  # torch only where a tower is changed: choosing ids (`export --help`, checks) is torch-free
    import torch

    from siglip2_sdk.core.model import TextTower

UNK_TOKEN = "<unk>"
# Always kept: what the tokenizer and the tower's layout emit whatever the text (pad, eos), and bos/unk.
SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", UNK_TOKEN)
# SentencePiece byte fallback: a character missing from the vocabulary becomes its UTF-8 bytes.
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
WORD_START = "▁"  # SentencePiece's mark for a preceding space
MAX_NAMED_LANGUAGES = 4  # more languages than this are named by count and digest in a bundle name
VOCABULARY_FILE = "vocabulary.json"  # in a checkpoint folder: the kept ids its model was trained with
TABLE = "embeddings.token_embedding.weight"  # the token table, in a text tower's state dict

# Unicode blocks per script (ranges inclusive). Python's unicodedata has no Script property; blocks are
# a close stand-in for letters and marks. Digits, punctuation, symbols, emoji and separators are
# Unicode's "Common" script and are decided by general category instead, wherever their block is.
# Combining marks outside these blocks (U+0300 diacritics, variation selectors) are "Inherited".
SCRIPT_BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    # Basic Latin, Latin-1, Extended-A/B, IPA; phonetic extensions; Extended Additional (Vietnamese);
    # Extended-C/D/E; ligatures (ﬁ); fullwidth ASCII letters.
    "Latin": (
        (0x0000, 0x02AF), (0x1D00, 0x1DBF), (0x1E00, 0x1EFF), (0x2C60, 0x2C7F), (0xA720, 0xA7FF),
        (0xAB30, 0xAB6F), (0xFB00, 0xFB06), (0xFF00, 0xFF5E),
    ),
    "Greek": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    "Cyrillic": ((0x0400, 0x052F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)),
    "Armenian": ((0x0530, 0x058F), (0xFB13, 0xFB17)),
    "Hebrew": ((0x0590, 0x05FF), (0xFB1D, 0xFB4F)),
    "Arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "Devanagari": ((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
    "Bengali": ((0x0980, 0x09FF),),
    "Gurmukhi": ((0x0A00, 0x0A7F),),
    "Gujarati": ((0x0A80, 0x0AFF),),
    "Tamil": ((0x0B80, 0x0BFF),),
    "Telugu": ((0x0C00, 0x0C7F),),
    "Kannada": ((0x0C80, 0x0CFF),),
    "Malayalam": ((0x0D00, 0x0D7F),),
    "Sinhala": ((0x0D80, 0x0DFF),),
    "Thai": ((0x0E00, 0x0E7F),),
    "Lao": ((0x0E80, 0x0EFF),),
    "Myanmar": ((0x1000, 0x109F),),
    "Georgian": ((0x10A0, 0x10FF), (0x1C90, 0x1CBF), (0x2D00, 0x2D2F)),
    "Hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xFFA0, 0xFFDC)),
    "Ethiopic": ((0x1200, 0x139F), (0x2D80, 0x2DDF), (0xAB00, 0xAB2F)),
    "Canadian Aboriginal": ((0x1400, 0x167F), (0x18B0, 0x18FF)),
    "Khmer": ((0x1780, 0x17FF), (0x19E0, 0x19FF)),
    # CJK radicals; 々〆〇 (iteration/closing marks, ideographic zero); unified ideographs A and main;
    # compatibility ideographs; extensions B and later.
    "Han": (
        (0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
        (0x20000, 0x3134F),
    ),
    "Hiragana": ((0x3040, 0x309F),),
    "Katakana": ((0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "Bopomofo": ((0x3100, 0x312F), (0x31A0, 0x31BF)),
}  # fmt: skip

# Scripts -> the language tags written in them. Covers every caption language of the demo corpus
# (`siglip2-sdk data demo`) and the world's most used languages.
_LANGUAGES_BY_SCRIPTS: dict[tuple[str, ...], str] = {
    ("Latin",): "ach af ak an ast az br ca ca-valencia co cs cy da de en en-au en-gb eo es et eu ff fi "
    "fil fo fr fy ga gd gl ha hr hu id ig is it jv kab ku lb lt lv mg mi ms mt nb nl nn no nso oc pl pt "
    "pt-br rm ro shs sk sl so son sq sr-latn sv sw tk tl tr uz vec vi wo xh yo zu",
    ("Cyrillic",): "be bg kk ky mk mn ru sr tg tt uk",
    ("Greek",): "el",
    ("Armenian",): "hy",
    ("Hebrew",): "he yi",
    ("Arabic",): "ar fa ps sd ug ur",
    ("Devanagari",): "hi mr ne sa",
    ("Bengali",): "bn",
    ("Gurmukhi",): "pa",
    ("Gujarati",): "gu",
    ("Tamil",): "ta",
    ("Telugu",): "te",
    ("Kannada",): "kn",
    ("Malayalam",): "ml",
    ("Sinhala",): "si",
    ("Thai",): "th",
    ("Lao",): "lo",
    ("Myanmar",): "my",
    ("Georgian",): "ka",
    ("Ethiopic",): "am ti",
    ("Canadian Aboriginal",): "iu",
    ("Khmer",): "km",
    ("Hangul",): "ko",
    ("Han", "Hiragana", "Katakana"): "ja",
    ("Han",): "zh zh-cn zh-hans",
    ("Han", "Bopomofo"): "zh-tw zh-hant",
}
# Language tag (lowercase) -> its scripts.
LANGUAGE_SCRIPTS = {tag: scripts for scripts, tags in _LANGUAGES_BY_SCRIPTS.items() for tag in tags.split()}

_BLOCKS = sorted((start, end, script) for script, ranges in SCRIPT_BLOCKS.items() for start, end in ranges)
_BLOCK_STARTS = [start for start, _, _ in _BLOCKS]


def script_of(char: str) -> str | None:
    """The script of a letter or mark by its block; "Common" for digits, punctuation, symbols, emoji,
    separators and marks outside every script block; None for a letter of a script not in the table."""
    category = unicodedata.category(char)
    if category[0] not in "LM":
        return "Common"
    i = bisect.bisect_right(_BLOCK_STARTS, ord(char)) - 1
    if i >= 0 and ord(char) <= _BLOCKS[i][1]:
        return _BLOCKS[i][2]
    return "Common" if category[0] == "M" else None


def split_languages(text: str | None) -> list[str]:
    """`--languages en, de` as ["en", "de"]; none for None or an empty text."""
    return [tag.strip() for tag in (text or "").split(",") if tag.strip()]


def scripts_of_languages(languages: Sequence[str]) -> set[str]:
    """The scripts the languages are written in; an unknown tag is a Siglip2Error listing the known."""
    unknown = [tag for tag in languages if tag.lower() not in LANGUAGE_SCRIPTS]
    if unknown:
        raise Siglip2Error(
            f"unknown language {', '.join(map(repr, unknown))} for --languages; known: "
            f"{', '.join(sorted(LANGUAGE_SCRIPTS))}"
        )
    return {script for tag in languages for script in LANGUAGE_SCRIPTS[tag.lower()]}


@dataclass(frozen=True)
class KeptVocabulary:
    """The original token ids a pruned text tower keeps, and where they came from."""

    ids: np.ndarray  # sorted original ids; row i of the pruned table is the embedding of ids[i]
    of: int  # the full vocabulary size
    unk_id: int  # where every dropped id goes
    source: str  # in words, for the manifest: "languages en,de" and/or "data 'train-*.tar'"
    name: str  # the bundle-name suffix part, e.g. "en-de"

    @property
    def suffix(self) -> str:
        return f"-vocab-{self.name}"

    def manifest_entry(self) -> dict:
        return {"kept": len(self.ids), "of": self.of, "from": self.source, "unk_id": self.unk_id}

    def table_bytes(self, width: int, bytes_per_value: int = 4) -> tuple[int, int]:
        """Bytes of the token embedding table (full, pruned) at `width` columns."""
        return self.of * width * bytes_per_value, len(self.ids) * width * bytes_per_value

    def to_json(self) -> dict:
        return {**self.manifest_entry(), "name": self.name, "ids": self.ids.tolist()}

    @classmethod
    def from_json(cls, entry: dict, where: str | Path) -> KeptVocabulary:
        """A vocabulary as `to_json` wrote it; a CheckpointError naming `where` when it cannot be one."""
        try:
            ids = np.array(entry["ids"], dtype=np.int64)
            of, unk_id = int(entry["of"]), int(entry["unk_id"])
            vocabulary = cls(ids, of, unk_id, str(entry["from"]), str(entry["name"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"'{where}' is not a kept vocabulary: {exc!r}") from None
        sorted_unique = ids.ndim == 1 and len(ids) and bool(np.all(np.diff(ids) > 0))
        if not sorted_unique or ids[0] < 0 or ids[-1] >= vocabulary.of or vocabulary.unk_id not in ids:
            raise CheckpointError(
                f"'{where}': the kept ids must be sorted, distinct, below {vocabulary.of} and include "
                f"<unk> ({vocabulary.unk_id})"
            )
        return vocabulary

    def row_of_id(self) -> torch.Tensor:
        """Original id -> row of the kept table; every dropped id -> the row of `<unk>`. int64:
        ExecuTorch's int8 table lookup (embedding_byte) takes no other index type."""
        import torch

        kept = torch.from_numpy(self.ids)
        rows = torch.full((self.of,), int(np.searchsorted(self.ids, self.unk_id)), dtype=torch.int64)
        rows[kept] = torch.arange(len(kept), dtype=torch.int64)
        return rows


def read_vocabulary(folder: str | Path) -> KeptVocabulary | None:
    """The kept vocabulary recorded in a checkpoint folder, None for a full-vocabulary checkpoint."""
    path = Path(folder) / VOCABULARY_FILE
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read '{path}': {exc}") from None
    return KeptVocabulary.from_json(entry if isinstance(entry, dict) else {}, path)


def write_vocabulary(vocabulary: KeptVocabulary, folder: Path) -> None:
    (folder / VOCABULARY_FILE).write_text(json.dumps(vocabulary.to_json()) + "\n", encoding="utf-8")


def with_kept_rows(tower: TextTower, vocabulary: KeptVocabulary) -> TextTower:
    """A text tower sharing `tower`'s weights but holding only the kept rows of its token table; it
    takes the original ids and maps them to rows in its forward. What training on a compact
    vocabulary trains and what a pruned bundle runs."""
    import torch
    from torch import nn

    from siglip2_sdk.core.model import TextTower

    if len(tower.embeddings.token_embedding.weight) != vocabulary.of:
        raise Siglip2Error("the tower's token table is already pruned")
    kept = torch.from_numpy(vocabulary.ids).to(tower.embeddings.token_embedding.weight.device)
    state = dict(tower.state_dict())
    state[TABLE] = state[TABLE][kept]
    # Built on the meta device, then given the tower's weights: no second 256k table.
    with torch.device("meta"):
        compact = TextTower(tower.config)
        compact.embeddings.token_embedding = nn.Embedding(len(kept), tower.config.width)
    compact.load_state_dict(state, assign=True)
    compact.embeddings.row_of_id = vocabulary.row_of_id().to(kept.device)
    return compact


def full_table(tower: TextTower) -> torch.Tensor:
    """The tower's token table over every original id: a compact tower's kept rows in place, each
    dropped id's row a copy of `<unk>`'s, so a full-vocabulary model gives the same embeddings."""
    table = tower.embeddings.token_embedding.weight.detach()
    rows = tower.embeddings.row_of_id
    return table if rows is None else table[rows]


def check_sources(data: str | None, languages: Sequence[str]) -> None:
    """Fail on an unknown language or missing data before a checkpoint is loaded."""
    scripts_of_languages(languages)
    if data is not None:
        read_captions(data)


def kept_vocabulary(
    tokenizer_file: str | Path,
    text: TextConfig,
    *,
    data: str | None = None,
    languages: Sequence[str] = (),
) -> KeptVocabulary:
    """The ids a corpus (`data`: WebDataset shards or a .txt of captions) and/or `languages` need for
    the text tower `text`, their union, always with the special and byte-fallback tokens."""
    if data is None and not languages:
        raise Siglip2Error("pruning the vocabulary needs --vocab-from DATA and/or --languages")
    raw = _load_raw(Path(tokenizer_file), text.vocab_size)
    unk_id = _token_id(raw, UNK_TOKEN, tokenizer_file)
    kept = set(always_kept_ids(raw.get_vocab(with_added_tokens=True)))
    sources, names = [], []
    if languages:
        kept |= ids_of_languages(raw, languages)
        sources.append(f"languages {','.join(languages)}")
        names.append(_languages_name(languages))
    if data is not None:
        eos_id = _token_id(raw, "<eos>", tokenizer_file)
        tokenizer = Tokenizer(
            raw,
            Path(tokenizer_file),
            length=text.context_length,
            lowercase=True,
            pad_id=text.pad_id,
            eos_id=eos_id,
        )
        kept |= ids_in_captions(tokenizer, read_captions(data))
        sources.append(f"data '{data}'")
        names.append(_data_name(data))
    ids = np.array(sorted(kept), dtype=np.int64)
    return KeptVocabulary(ids, text.vocab_size, unk_id, " + ".join(sources), "-".join(names))


def always_kept_ids(vocab: dict[str, int]) -> list[int]:
    """Special tokens and the 256 byte-fallback tokens: any text still tokenizes into known rows."""
    return [i for token, i in vocab.items() if token in SPECIAL_TOKENS or BYTE_TOKEN.fullmatch(token)]


def ids_of_languages(raw: tokenizers.Tokenizer, languages: Sequence[str], lowercase: bool = True) -> set[int]:
    """Tokens made only of characters of the languages' scripts and Common/Inherited characters.
    Control tokens (`<unused0>`, `<start_of_turn>`) never come out of the text and are left out; so
    are tokens with an uppercase letter when the bundle lowercases text first (they never occur)."""
    scripts = scripts_of_languages(languages) | {"Common"}
    control = {i for i, token in raw.get_added_tokens_decoder().items() if token.special}
    allowed: dict[str, bool] = {}

    def fits(char: str) -> bool:
        if char not in allowed:
            reachable = not lowercase or char.lower() == char
            allowed[char] = reachable and script_of(char) in scripts
        return allowed[char]

    return {
        i
        for token, i in raw.get_vocab(with_added_tokens=True).items()
        if i not in control and all(fits(char) for char in token.replace(WORD_START, ""))
    }


def ids_in_captions(tokenizer: Tokenizer, captions: Iterable[str], batch: int = 4096) -> set[int]:
    """Every id that occurs in the tokenized captions, as the text tower sees them (truncated)."""
    seen: set[int] = set()
    chunk: list[str] = []
    for caption in captions:
        chunk.append(caption)
        if len(chunk) == batch:
            seen.update(np.unique(tokenizer(chunk)).tolist())
            chunk = []
    if chunk:
        seen.update(np.unique(tokenizer(chunk)).tolist())
    return seen


def read_captions(data: str) -> Iterable[str]:
    """Every caption in every language of WebDataset shards and the names of their labels (what
    `--label-captions` trains on), or every line of a .txt file."""
    from siglip2_sdk.core.shards import expand_shards, iter_examples, label_captions

    if data.endswith(".txt"):
        path = Path(data).expanduser()
        if not path.is_file():
            raise Siglip2Error(f"caption file '{data}' does not exist (one caption per line)")
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    shards = expand_shards(data)
    return (
        caption
        for example in iter_examples(shards)
        for caption in (*example.captions.values(), *label_captions(example.labels).values())
    )


def _languages_name(languages: Sequence[str]) -> str:
    if len(languages) <= MAX_NAMED_LANGUAGES:
        return "-".join(tag.lower() for tag in languages)
    # A folder name of 79 tags would pass file-system limits; the manifest lists them all.
    digest = hashlib.sha256(",".join(sorted(tag.lower() for tag in languages)).encode()).hexdigest()[:6]
    return f"{len(languages)}-languages-{digest}"


def _data_name(data: str) -> str:
    stem = Path(data).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9]+", "-", stem).strip("-") or "data"


def _load_raw(path: Path, vocab_size: int) -> tokenizers.Tokenizer:
    # Loaded once for both the vocabulary and the captions: the Gemma file takes seconds to parse.
    if not path.is_file():
        raise TokenizerError(f"tokenizer file '{path}' does not exist")
    try:
        raw = tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises a bare Exception for any parse error
        raise TokenizerError(f"tokenizer file '{path}' cannot be loaded: {e}") from e
    if raw.get_vocab_size(with_added_tokens=True) > vocab_size:
        raise TokenizerError(f"'{path}' has more tokens than the model's vocabulary ({vocab_size:,})")
    return raw


def _token_id(raw: tokenizers.Tokenizer, token: str, path: str | Path) -> int:
    token_id = raw.token_to_id(token)
    if token_id is None:
        raise TokenizerError(f"'{path}' has no {token} token; vocabulary pruning needs the Gemma specials")
    return token_id
