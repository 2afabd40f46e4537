"""Personal data in text: detectors built for Chinese and English data.

Each detector is a candidate pattern and, where the data has one, its own check: a resident
ID number (身份证号) must have a real birth date and the right ISO 7064 check character, a
bank card the Luhn check digit, an IP address must parse. So an 18-digit order number or a
random 16-digit id is not flagged. Digits run on both sides are not candidates (a mobile
number inside a longer number is not one). Overlaps go to the earlier, then the longer match,
then the detector listed first.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

KINDS = ("email", "phone_cn", "id_cn", "bank_card", "ipv4", "ipv6")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(frozen=True, slots=True)
class Match:
    kind: str
    start: int
    end: int
    value: str


def id_cn_valid(text: str) -> bool:
    """An 18-character resident ID: a region code, a real birth date, the check character."""
    digits = text.upper()
    if len(digits) != 18 or not digits[:17].isdigit() or digits[0] == "0":
        return False
    try:
        born = dt.date(int(digits[6:10]), int(digits[10:12]), int(digits[12:14]))
    except ValueError:
        return False
    if not dt.date(1900, 1, 1) <= born <= dt.date.today():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == digits[17]


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        doubled = d * 2 if i % 2 else d
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _ipv6_like(text: str) -> bool:
    """An IPv6 address, not C++'s ``Bad::Add``: two groups, five hex digits, one a digit."""
    groups = [g for g in text.split(":") if g]
    hexdigits = sum(len(g) for g in groups if "." not in g)
    digit = any(c.isdigit() for c in text)
    return len(groups) >= 2 and hexdigits >= 5 and digit and _ip(text)


_D = r"(?<![0-9A-Za-z])"  # no digit or letter just before
_E = r"(?![0-9A-Za-z])"  # nor just after
PATTERNS: dict[str, tuple[re.Pattern[str], Callable[[str], bool] | None]] = {
    "email": (
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![\w-])"
        ),
        None,
    ),
    "id_cn": (re.compile(_D + r"[1-9]\d{16}[\dXx]" + _E), id_cn_valid),
    "phone_cn": (
        re.compile(r"(?<![\d+])(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"),
        None,
    ),
    "bank_card": (re.compile(_D + r"\d{4}(?:[ -]?\d{4}){2,3}(?:[ -]?\d{1,3})?" + _E), luhn_valid),
    "ipv4": (
        re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"),
        _ip,
    ),
    "ipv6": (
        re.compile(
            r"(?<![0-9A-Za-z:])[0-9A-Fa-f:]{2,39}(?:\d{1,3}(?:\.\d{1,3}){3})?(?![0-9A-Za-z:]|\.\d)"
        ),
        lambda v: v.count(":") >= 2 and _ipv6_like(v),
    ),
}
PRIORITY = ("email", "id_cn", "phone_cn", "bank_card", "ipv6", "ipv4")
_DIGIT = re.compile(r"\d")
# What a text must hold for a detector to have anything to find (one cheap pass each; most
# text of a chat has no "@", no two colons, often no digit, and its scan is skipped)
_NEEDS: dict[str, Callable[[str, bool], bool]] = {
    "email": lambda t, _digit: "@" in t,
    "id_cn": lambda _t, digit: digit,
    "phone_cn": lambda _t, digit: digit,
    "bank_card": lambda _t, digit: digit,
    "ipv4": lambda t, digit: digit and "." in t,
    "ipv6": lambda t, _digit: t.count(":") >= 2,
}


class Detector:
    """The detectors asked for (built-in kinds and custom patterns), ready to scan text."""

    def __init__(self, kinds: Iterable[str], custom: dict[str, str] | None = None) -> None:
        wanted = set(kinds)
        self._checks: list[tuple[str, re.Pattern[str], Callable[[str], bool] | None]] = [
            (k, *PATTERNS[k]) for k in PRIORITY if k in wanted
        ]
        self._needs: list[Callable[[str, bool], bool] | None] = [
            _NEEDS[k] for k, _, _ in self._checks
        ]
        for name, pattern in (custom or {}).items():
            self._checks.append((name, re.compile(pattern), None))
            self._needs.append(None)
        self._rank = {name: i for i, (name, _, _) in enumerate(self._checks)}

    @property
    def kinds(self) -> list[str]:
        return [name for name, _, _ in self._checks]

    def find(self, text: str) -> list[Match]:
        """Non-overlapping matches, in order of position."""
        found: list[Match] = []
        digit = _DIGIT.search(text) is not None
        for (kind, pattern, check), needs in zip(self._checks, self._needs, strict=True):
            if needs is not None and not needs(text, digit):
                continue
            for hit in pattern.finditer(text):
                value = hit.group(0)
                if check is None or check(value):
                    found.append(Match(kind, hit.start(), hit.end(), value))
        found.sort(key=lambda f: (f.start, -(f.end - f.start), self._rank[f.kind]))
        out: list[Match] = []
        end = -1
        for f in found:
            if f.start >= end:
                out.append(f)
                end = f.end
        return out
