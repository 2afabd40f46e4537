"""Incremental ``<think>…</think>`` splitter for DeepSeek-R1-style output.

Feeds arbitrary text pieces (a tag may be split across pieces) and returns
``(reasoning, content)`` increments, so streams can emit ``reasoning_content`` deltas before
``content`` deltas.
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ReasoningParser:
    """States: ``start`` (an opening tag may come, after optional whitespace),
    ``reasoning`` (inside the think block), ``content`` (after it, or no block at all).

    ``start_in_reasoning``: the chat template already opened ``<think>`` in the prompt
    (R1 distills do), so output begins inside the block.
    """

    def __init__(self, *, start_in_reasoning: bool = False) -> None:
        self._state = "reasoning" if start_in_reasoning else "start"
        self._buf = ""

    def feed(self, text: str) -> tuple[str, str]:
        self._buf += text
        reasoning: list[str] = []
        content: list[str] = []
        while self._buf:
            if self._state == "start":
                stripped = self._buf.lstrip()
                if stripped.startswith(OPEN):
                    self._buf = stripped[len(OPEN) :].lstrip("\n")
                    self._state = "reasoning"
                    continue
                if OPEN.startswith(stripped):  # maybe a tag still arriving
                    break
                self._state = "content"
                continue
            if self._state == "reasoning":
                idx = self._buf.find(CLOSE)
                if idx >= 0:
                    reasoning.append(self._buf[:idx])
                    self._buf = self._buf[idx + len(CLOSE) :].lstrip("\n")
                    self._state = "content"
                    continue
                keep = _partial_suffix(self._buf, CLOSE)
                reasoning.append(self._buf[: len(self._buf) - keep])
                self._buf = self._buf[len(self._buf) - keep :]
                break
            content.append(self._buf)
            self._buf = ""
        return "".join(reasoning), "".join(content)

    @property
    def in_content(self) -> bool:
        """True once the think block is over (or there was none): later tokens are answer."""
        return self._state == "content"

    def flush(self) -> tuple[str, str]:
        """End of output: whatever is held back is emitted where it belongs."""
        buf, self._buf = self._buf, ""
        if self._state == "reasoning":
            return buf, ""
        return "", buf
