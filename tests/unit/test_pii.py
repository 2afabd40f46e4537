"""The personal-data detectors on Chinese and English text: checksums decide (a resident ID
with a wrong check character, a card failing Luhn, an impossible address are not flagged)."""

from __future__ import annotations

import pytest

from seekport.gateway.guard.pii import KINDS, Detector, id_cn_valid, luhn_valid

DETECT = Detector(KINDS)
W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(a) * b for a, b in zip(first17, W, strict=True)) % 11]


GOOD_ID = resident_id("11010519491231002")  # ends in X
OTHER_ID = resident_id("44030619900307123")


def found(text: str) -> list[tuple[str, str]]:
    return [(m.kind, m.value) for m in DETECT.find(text)]


def test_resident_ids_need_a_real_birth_date_and_the_check_character() -> None:
    assert GOOD_ID.endswith("X") and id_cn_valid(GOOD_ID) and id_cn_valid(GOOD_ID.lower())
    assert found(f"我的身份证号是{GOOD_ID}，请核对") == [("id_cn", GOOD_ID)]
    wrong = OTHER_ID[:-1] + str((int(OTHER_ID[-1]) + 1) % 10 if OTHER_ID[-1] != "X" else 0)
    assert not id_cn_valid(wrong)
    assert found(f"订单号{wrong}已发货") == [] or found(f"订单号{wrong}已发货")[0][0] == "bank_card"
    assert not id_cn_valid("110105194913310029")  # the 31st of the 13th month
    assert found("number 123456789012345678 is not an id") == []


def test_mobile_numbers_with_and_without_the_country_code() -> None:
    assert found("联系我：13812345678 或 +86 138-1234-5678。") == [
        ("phone_cn", "13812345678"),
        ("phone_cn", "+86 138-1234-5678"),
    ]
    assert found("电话：12812345678") == []  # no mobile number starts 12
    assert found("id 913812345678") == []  # inside a longer number


def test_bank_cards_pass_luhn() -> None:
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")
    assert found("卡号 4111 1111 1111 1111，") == [("bank_card", "4111 1111 1111 1111")]
    assert found("卡号 4111111111111112") == []
    assert found("0000000000000000") == []  # one digit repeated is no card


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("mail zhang.san+x@example.com.cn!", [("email", "zhang.san+x@example.com.cn")]),
        ("邮箱：li@公司.cn 或 li@corp.cn。", [("email", "li@corp.cn")]),
        ("host 192.168.1.20, not 999.1.1.1", [("ipv4", "192.168.1.20")]),
        ("v6 2001:db8::8a2e:370:7334.", [("ipv6", "2001:db8::8a2e:370:7334")]),
        ("link fe80::1", [("ipv6", "fe80::1")]),
        ("std::vector and Bad::Add at 10:30:00", []),
    ],
)
def test_emails_and_addresses(text: str, want: list[tuple[str, str]]) -> None:
    assert found(text) == want


def test_custom_patterns_and_overlaps() -> None:
    d = Detector(["email"], {"employee": r"EMP-\d{6}"})
    assert [(m.kind, m.value) for m in d.find("EMP-123456 at a@b.co")] == [
        ("employee", "EMP-123456"),
        ("email", "a@b.co"),
    ]
    # an ID number that also passes Luhn is reported once, as the ID
    assert [m.kind for m in DETECT.find(GOOD_ID)] == ["id_cn"]
