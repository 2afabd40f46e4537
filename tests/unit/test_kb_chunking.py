"""Chunks fit the embedder's token budget, overlap by about the asked share, cut at sentence
boundaries (Chinese and English) when they can, cut hard only a sentence longer than a chunk,
lose no text and carry their heading path as metadata."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable

import pytest

from seekport.errors import InvalidRequestError
from seekport.knowledge.chunking import Chunk, chunk_document
from seekport.knowledge.parsing import ParsedDocument, Section

_WORDS = re.compile(r"[\u3400-\u9fff]|[^\W_]+|[^\w\s]")


def words(text: str) -> list[int]:
    """A stand-in tokenizer: one token per Chinese character, per word, per punctuation mark."""
    return [hash(t) & 0xFFFF for t in _WORDS.findall(text)]


def utf8_bytes(text: str) -> list[int]:
    """A tokenizer that splits into many tokens: one per UTF-8 byte (three per Chinese char)."""
    return list(text.encode())


Tokenizer = Callable[[str], list[int]]

ZH = [
    "今天天气很好。",
    "我们去公园散步吧！",
    "你觉得这个计划怎么样？",
    "首先需要准备一些食物和水；",
    "然后我们坐地铁到公园门口。",
    "公园里有很多花，还有一个很大的湖。",
    "湖边有人在钓鱼，也有孩子在放风筝。",
    "天黑之前我们必须回家！",
]
EN = [
    "The quick brown fox jumps over the lazy dog.",
    "Retrieval works best when chunks follow the structure of the text!",
    "Does a sentence that ends with a question mark stay whole?",
    "Version 3.14 of the tool is not a sentence boundary.",
    "Each chunk carries its heading path as metadata.",
]


def corpus(seed: int, paragraphs: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        pool = ZH if rng.random() < 0.5 else EN
        sep = "" if pool is ZH else " "
        out.append(sep.join(rng.choice(pool) for _ in range(rng.randint(1, 12))))
    return out


def doc(*sections: tuple[tuple[str, ...], str]) -> ParsedDocument:
    return ParsedDocument("text", None, tuple(Section(h, t) for h, t in sections))


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.findall(r".+?(?:[。！？；]|[.!?](?=\s|$)|$)", text) if s.strip()]


def overlap_of(prev: str, nxt: str) -> str:
    """The longest start of ``nxt`` that ends ``prev``."""
    for k in range(min(len(prev), len(nxt)), 0, -1):
        if prev.endswith(nxt[:k]):
            return nxt[:k]
    return ""


@pytest.mark.parametrize("tokenizer", [words, utf8_bytes])
@pytest.mark.parametrize("size", [16, 64, 512])
def test_chunks_never_exceed_the_size_and_count_their_own_tokens(
    tokenizer: Tokenizer, size: int
) -> None:
    paragraphs = corpus(size, 40)
    chunks = chunk_document(doc(((), "\n\n".join(paragraphs))), tokenizer, size=size)
    assert chunks and [c.position for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text and c.text == c.text.strip()
        assert c.tokens == len(tokenizer(c.text)) <= size


@pytest.mark.parametrize("tokenizer", [words, utf8_bytes])
def test_every_sentence_of_the_document_is_in_some_chunk(tokenizer: Tokenizer) -> None:
    paragraphs = corpus(7, 60)
    chunks = chunk_document(doc(((), "\n\n".join(paragraphs))), tokenizer, size=96)
    for sentence in {s for p in paragraphs for s in sentences(p)}:
        assert any(sentence in c.text for c in chunks), sentence


def test_overlap_repeats_about_the_asked_share_at_sentence_boundaries() -> None:
    text = " ".join(f"Sentence number {i} has exactly seven tokens." for i in range(200))
    chunks = chunk_document(doc(((), text)), words, size=100, overlap=0.2)
    assert len(chunks) > 10
    for prev, nxt in itertools.pairwise(chunks):
        shared = overlap_of(prev.text, nxt.text)
        assert 13 <= len(words(shared)) <= 20  # 20 tokens asked; whole 8-token sentences
        assert shared.startswith("Sentence number")
    no_overlap = chunk_document(doc(((), text)), words, size=100, overlap=0.0)
    assert sum(c.tokens for c in no_overlap) == len(words(text))


def test_chinese_sentences_are_not_cut_when_they_fit() -> None:
    text = "".join(ZH * 12)
    # at size 20 the longest sentence (17 tokens) is longer than a hard-cut part (16): it fits
    for tokenizer, size in ((words, 40), (words, 20), (utf8_bytes, 120)):
        chunks = chunk_document(doc(((), text)), tokenizer, size=size)
        assert len(chunks) > 5
        for c in chunks:
            assert c.text[-1] in "。！？；", c.text
            assert c.text[0] in {s[0] for s in ZH}, c.text


def test_a_sentence_longer_than_a_chunk_is_cut_hard_and_kept_whole() -> None:
    words_only = " ".join(f"w{i}" for i in range(3000))
    chunks = chunk_document(doc(((), words_only)), words, size=512)
    assert 6 <= len(chunks) <= 10
    assert all(c.tokens <= 512 for c in chunks)
    seen = {w for c in chunks for w in c.text.split()}
    assert seen == set(words_only.split())  # cut between words, never inside one
    assert len(words(overlap_of(chunks[0].text, chunks[1].text))) > 50

    han = "".join(ZH).replace("。", "").replace("！", "").replace("？", "").replace("；", "") * 30
    cut = chunk_document(doc(((), han)), utf8_bytes, size=256, overlap=0.0)
    assert all(c.tokens <= 256 for c in cut)
    assert "".join(c.text for c in cut) == han


def test_hard_cuts_keep_emoji_sequences_and_combining_marks_whole() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji of five code points
    text = (family + "e\u0301" + "\u2764\ufe0f") * 400

    def utf16_units(s: str) -> list[int]:
        return list(range(len(s.encode("utf-16-le")) // 2))

    chunks = chunk_document(doc(((), text)), utf16_units, size=50, overlap=0.0)
    assert "".join(c.text for c in chunks) == text
    for c in chunks:
        assert c.tokens <= 50
        assert c.text[0] not in "\u200d\ufe0f\u0301" and c.text[-1] != "\u200d"


def test_headings_are_metadata_and_never_merged_across() -> None:
    parsed = doc(
        (("Guide",), "Intro."),
        (("Guide", "Install"), "Run it."),
        (("Guide", "Install"), "Page two of the same part."),
        (("Other",), "Last."),
    )
    chunks = chunk_document(parsed, words, size=512)
    assert chunks == [
        Chunk("Intro.", ("Guide",), 0, 2),
        Chunk("Run it.\n\nPage two of the same part.", ("Guide", "Install"), 1, 10),
        Chunk("Last.", ("Other",), 2, 2),
    ]


def test_small_paragraphs_merge_and_a_paragraph_that_fits_stays_whole() -> None:
    paragraphs = [f"Short paragraph {i}. It has two sentences." for i in range(6)]
    chunks = chunk_document(doc(((), "\n\n".join(paragraphs))), words, size=20, overlap=0.0)
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[i : i + 2]) for i in (0, 2, 4)]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="chunk size"):
        chunk_document(doc(((), "x")), words, size=0)
    with pytest.raises(InvalidRequestError, match="chunk overlap"):
        chunk_document(doc(((), "x")), words, overlap=0.9)


def test_a_megabyte_tokenises_each_sentence_about_once() -> None:
    text = "\n\n".join(corpus(3, 6000))
    assert len(text.encode()) > 1_000_000
    fed = 0

    def counting(s: str) -> list[int]:
        nonlocal fed
        fed += len(s)
        return words(s)

    chunks = chunk_document(doc(((), text)), counting, size=512)
    assert chunks
    assert fed < 2.5 * len(text)  # each sentence once, each chunk once more


def test_a_tokenizer_whose_counts_grow_faster_than_the_text_still_fits() -> None:
    def superadditive(s: str) -> list[int]:  # a join counts more than its parts did
        return list(range(len(s) + len(s) ** 2 // 500))

    text = " ".join(EN * 30)
    chunks = chunk_document(doc(((), text)), superadditive, size=200)
    assert all(c.tokens == len(superadditive(c.text)) <= 200 for c in chunks)
    assert all(any(s in c.text for c in chunks) for s in EN)
