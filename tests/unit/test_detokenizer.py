"""Stop strings across token boundaries and UTF-8 split across tokens."""

from __future__ import annotations

from seekport.engine.detokenizer import Detokenizer


def feed_all(d: Detokenizer, pieces: list[bytes]) -> str:
    out = []
    for p in pieces:
        out.append(d.feed(p))
        if d.stopped:
            break
    out.append(d.flush())
    return "".join(out)


def test_no_stop_passes_everything_through() -> None:
    assert feed_all(Detokenizer([]), [b"Hello", b" world"]) == "Hello world"


def test_stop_split_across_tokens_is_not_emitted() -> None:
    d = Detokenizer(["END"])
    assert d.feed(b"abc E") == "abc "  # "E" may start the stop string: held back
    assert d.feed(b"N") == ""
    assert d.feed(b"Dtail") == ""
    assert d.stopped


def test_the_earliest_matching_stop_string_is_reported() -> None:
    d = Detokenizer(["tail", "END"])
    assert d.feed(b"abc ENDtail") == "abc "
    assert d.stopped and d.matched == "END"
    assert Detokenizer(["x"]).matched is None


def test_held_back_prefix_is_released_when_it_does_not_match() -> None:
    d = Detokenizer(["END"])
    assert d.feed(b"x E") == "x "
    assert d.feed(b"Nx") == "ENx"
    assert not d.stopped


def test_held_back_text_is_flushed_at_the_end() -> None:
    d = Detokenizer(["END"])
    assert d.feed(b"abc EN") == "abc "
    assert d.flush() == "EN"


def test_first_of_several_stops_wins() -> None:
    assert feed_all(Detokenizer(["b", "c"]), [b"a", b"cb"]) == "a"


def test_multibyte_character_split_over_tokens() -> None:
    raw = "你好".encode()
    d = Detokenizer([])
    assert d.feed(raw[:2]) == ""
    assert d.feed(raw[2:4]) == "你"
    assert d.feed(raw[4:]) == "好"


def test_chinese_stop_string() -> None:
    assert feed_all(Detokenizer(["。"]), ["第一句。第二句".encode()]) == "第一句"


def test_longest_partial_match_with_repeated_characters_is_held() -> None:
    d = Detokenizer(["aab"])
    assert d.feed(b"xaa") == "x"  # "aa" may become "aab"
    assert d.feed(b"a") == "a"  # "aaa": only the last "aa" can still match
    assert d.feed(b"b") == ""
    assert d.stopped


def test_long_stop_strings_stay_cheap() -> None:
    stop = "z" * 255 + "!"
    d = Detokenizer([stop])
    out = "".join(d.feed(b"z") for _ in range(2000))
    assert out == "z" * (2000 - 255)  # only a possible prefix of the stop is held back


def test_characters_after_an_invalid_byte_still_decode_across_tokens() -> None:
    # a small model can sample bytes that never form a character (here a lone 0xE4 followed
    # by ASCII); the characters split across later tokens must still come out whole
    ni, hao = "你".encode(), "好".encode()
    d = Detokenizer([])
    pieces = [b"\xe4", b"A", ni[:2], ni[2:], hao[:1], hao[1:]]
    out = [d.feed(p) for p in pieces]
    assert "".join(out) + d.flush() == "\ufffdA你好"
    assert out[2] == "" and out[3] == "你"  # held back until its last byte, then whole


def test_a_character_cut_off_at_the_end_is_dropped() -> None:
    d = Detokenizer([])
    assert d.feed(b"ok" + "你".encode()[:2]) == "ok"
    assert d.flush() == ""
