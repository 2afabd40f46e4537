"""Incremental detokenizer: token bytes → text, UTF-8 safe, with stop strings honoured across
token boundaries (text that may be the start of a stop string is held back, and the matched
stop string is never emitted)."""

from __future__ import annotations

import codecs


class Detokenizer:
    def __init__(self, stop: list[str]) -> None:
        self._stop = [s for s in stop if s]
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        # holds back a multi-byte character until its last byte arrives; bytes that can never
        # form a character (a small model can sample such token sequences) become U+FFFD
        # without disturbing the characters after them
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._emitted = 0  # characters of _text already handed out
        self.stopped = False
        self.matched: str | None = None  # the stop string found, once ``stopped``

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to emit."""
        self._text += self._decoder.decode(piece)
        if self._stop:
            start = max(0, self._emitted - self._hold)
            found = [(i, s) for s in self._stop if (i := self._text.find(s, start)) >= 0]
            if found:
                at, self.matched = min(found, key=lambda f: f[0])
                self.stopped = True
                return self._take(at)
            return self._take(max(self._emitted, len(self._text) - self._partial()))
        return self._take(len(self._text))

    def _partial(self) -> int:
        """Length of the longest text suffix that is a proper prefix of a stop string."""
        best = 0
        tail = self._text[-self._hold :] if self._hold else ""
        for s in self._stop:
            for n in range(min(len(s) - 1, len(tail)), best, -1):
                if tail.endswith(s[:n]):
                    best = n
                    break
        return best

    def flush(self) -> str:
        """End of generation without a stop match: release what was held back."""
        if self.stopped:
            return ""
        # a character cut off by max_tokens is dropped, not sent as U+FFFD (as llama-server)
        self._decoder.reset()
        out = self._text[self._emitted :]
        self._emitted = len(self._text)
        return out

    def _take(self, end: int) -> str:
        out = self._text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return out
