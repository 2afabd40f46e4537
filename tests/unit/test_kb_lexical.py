"""The lexical leg's analyzer: Chinese words whole and in parts, codes whole, English stems."""

from __future__ import annotations

from seekport.knowledge.lexical import Analyzer


def test_chinese_names_stay_whole_and_give_their_parts() -> None:
    terms = Analyzer().terms("上海交通大学在哪里？")
    assert "上海交通大学" in terms
    assert {"上海", "交通", "大学"} <= set(terms)
    assert "？" not in terms and "在哪里？" not in terms


def test_a_knowledge_bases_own_words_are_never_split() -> None:
    name = "星澜智算平台"
    plain = Analyzer().terms(f"我们使用{name}部署模型")
    assert name not in plain  # jieba alone cuts an unknown name
    own = Analyzer(words=[name]).terms(f"我们使用{name}部署模型")
    assert name in own
    later = Analyzer()
    later.terms("预热")  # loads the dictionary first
    later.add_words([name])
    assert name in later.terms(f"{name}上线")


def test_codes_are_kept_whole_and_in_parts() -> None:
    terms = Analyzer().terms("Set GB-2312 and v1.2.3 (ERR_42)")
    assert {"gb-2312", "gb", "2312", "v1.2.3"} <= set(terms)


def test_english_words_are_stemmed_and_stopwords_dropped() -> None:
    a = Analyzer()
    assert a.terms("Running runs") == a.terms("run run")
    assert "the" not in a.terms("the model of the year")
    assert a.document("Proteins  bind") == "protein bind"


def test_full_width_text_is_normalised() -> None:
    assert Analyzer().terms("ＧＰＵ１２３") == Analyzer().terms("gpu123")


def test_digits_next_to_chinese_do_not_glue_a_run_together() -> None:
    terms = Analyzer().terms("1千8百10贯文的知行")
    assert "知行" in terms and "10" in terms
    assert not any(t.startswith("1千") for t in terms)
