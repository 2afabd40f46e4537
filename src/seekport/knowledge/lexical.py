"""The lexical leg's words: Chinese by jieba, other scripts by Snowball stems.

Both sides of a search go through ``Analyzer.terms``: a chunk's text before it is indexed (the
full-text index then only splits on spaces) and a query before it is matched. Chinese runs are
cut in jieba's search mode (a long word and the dictionary words inside it: 上海交通大学 also
gives 上海, 交通, 大学, so the whole name and its parts both match); a knowledge base's own
words (names, product codes) join jieba's dictionary so they are never split. Latin-script
words are lower-cased and stemmed (PyStemmer, English by default); a code such as ``GB-2312``
or ``v1.2.3`` is kept whole as well as in its parts, so an exact code finds its chunk.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from typing import Any

# Bumped whenever terms() changes what it makes: a knowledge base indexed by an older version
# has its full-text rows rewritten from its chunks (no embedding needed).
VERSION = 2

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ALNUM = f"[^\\W_{_HAN}]+"  # letters and digits of other scripts (Han runs go to jieba)
_RUN = re.compile(f"(?P<han>[{_HAN}]+)|(?P<word>{_ALNUM}(?:[-._]{_ALNUM})*)")
_PARTS = re.compile(_ALNUM)

# Very common English words: matched by nearly every chunk, they cost time and add nothing.
_STOPWORDS = """
a an and are as at be but by for from has have he in is it its of on or that the their there
these they this to was were which will with what when where who why how do does did not no
"""
STOPWORDS = frozenset(_STOPWORDS.split())
_HAN_PUNCT_ONLY = re.compile(r"^[\W_]+$")


class Analyzer:
    """Text → index terms. Thread-safe; jieba's dictionary loads on first use (~1 s)."""

    def __init__(self, words: Iterable[str] = (), language: str = "english") -> None:
        self._words = [w.strip() for w in words if w.strip()]
        digest = hashlib.sha256("\n".join(sorted(self._words)).encode()).hexdigest()[:8]
        # what the index's words depend on: this code's version and the user's words
        self.version = f"{VERSION}:{digest}" if self._words else str(VERSION)
        self._language = language
        self._lock = threading.Lock()
        self._jieba: Any = None
        self._stemmer: Any = None

    def _tools(self) -> tuple[Any, Any]:
        with self._lock:
            if self._jieba is None:
                import jieba
                import Stemmer

                jieba.setLogLevel(logging.WARNING)
                tok = jieba.Tokenizer()
                tok.initialize()
                for w in self._words:
                    tok.add_word(w)
                self._stemmer = Stemmer.Stemmer(self._language)
                self._jieba = tok
            return self._jieba, self._stemmer

    def add_words(self, words: Iterable[str]) -> None:
        """A knowledge base's own words (kept whole by jieba from now on)."""
        words = [w.strip() for w in words if w.strip()]
        self._words.extend(words)
        if self._jieba is not None:
            with self._lock:
                for w in words:
                    self._jieba.add_word(w)

    def terms(self, text: str) -> list[str]:
        """The index terms of ``text``, in order (repeats kept: BM25 counts them)."""
        jieba, stemmer = self._tools()
        text = unicodedata.normalize("NFKC", text).lower()
        out: list[str] = []
        for m in _RUN.finditer(text):
            han = m.group("han")
            if han is not None:
                out.extend(
                    w
                    for w in jieba.cut_for_search(han)
                    if w.strip() and not _HAN_PUNCT_ONLY.match(w)
                )
                continue
            word = m.group("word")
            parts = _PARTS.findall(word)
            if len(parts) > 1:  # a code: whole, and its parts
                out.append(word)
            for p in parts:
                if p in STOPWORDS:
                    continue
                out.append(stemmer.stemWord(p) if p.isascii() and p.isalpha() else p)
        return out

    def document(self, text: str) -> str:
        """The terms as the full-text index stores them: separated by spaces."""
        return " ".join(self.terms(text))
