"""The memo behind cache hits' short way: an entry serves only the principal object and the
configuration generation it was made under, and the entries stay within their byte bound."""

from __future__ import annotations

from seekport.gateway.auth import Principal
from seekport.gateway.hit_memo import MAX_BODY, HitMemo, Notes
from seekport.protocol.chat import ChatCompletionRequest


def remember(memo: HitMemo, who: Principal, raw: bytes, generation: int = 0) -> None:
    body = {"model": "m1", "messages": [{"role": "user", "content": raw.decode()}]}
    req = ChatCompletionRequest.model_validate(body)
    notes = Notes(raw, generation, (req, body))
    memo.remember(who, "chat", notes, req, body, f"k:{raw!r}", None, None)


def test_an_entry_serves_only_its_principal_object_and_generation() -> None:
    memo = HitMemo()
    who = Principal("key_1", "a", "user")
    remember(memo, who, b"question")
    assert memo.get(who, "chat", b"question", 0) is not None
    assert memo.get(who, "chat", b"question!", 0) is None  # other bytes
    assert memo.get(who, "completion", b"question", 0) is None  # another endpoint
    assert memo.get(Principal("key_2", "b", "user"), "chat", b"question", 0) is None
    # the same key re-read (its terms may have changed): the entry is dropped
    assert memo.get(Principal("key_1", "a", "user"), "chat", b"question", 0) is None
    assert len(memo) == 0
    remember(memo, who, b"question", generation=1)
    assert memo.get(who, "chat", b"question", 2) is None  # a reload since


def test_entries_stay_within_their_bytes_least_recently_used_first() -> None:
    memo = HitMemo(max_bytes=3000)
    who = Principal("key_1", "a", "user")
    for i in range(4):
        remember(memo, who, f"{i}".encode() * 1000)
    assert len(memo) == 3  # the first one went
    assert memo.get(who, "chat", b"0" * 1000, 0) is None
    assert memo.get(who, "chat", b"1" * 1000, 0) is not None
    remember(memo, who, b"x" * (MAX_BODY + 1))  # too long to keep
    assert len(memo) == 3
