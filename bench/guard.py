"""Guard benchmark: precision and recall of the personal-data detectors on a generated,
labelled set of Chinese and English text, and the guard's throughput (issue 16).

Method
------
* A seeded generator writes 4,000 short texts from Chinese and English templates. Each holds
  one item, labelled with its kind when it is personal data: e-mail addresses, mainland mobile
  numbers (with and without +86, with spaces or dashes), resident ID numbers with a valid
  check character (and a real birth date), bank card numbers passing Luhn (grouped or not),
  IPv4 and IPv6 addresses. Half the texts hold a look-alike that is *not* personal data and
  must not be flagged: an 18-digit number with a wrong check character, a 16-digit number
  failing Luhn, a number starting 12 (no mobile prefix), an address with an octet > 255,
  ``std::vector``-style names, an order number, a time of day.
* A detection counts when kind and exact text match the label; precision and recall per
  kind (and over all).
* Throughput: ``Detector.find`` over 4 MB of that text (MB/s of UTF-8); the streaming path
  (the answer's text in 3-character chunks through redaction and a 10,000-word list) in MB/s.

Run: ``.venv/bin/python bench/guard.py [--no-docs]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from gateway_overhead import command_line, machine, revision, write_section  # noqa: E402

from seekport.config.guard import GuardPolicy  # noqa: E402
from seekport.gateway.guard.pii import KINDS, Detector  # noqa: E402
from seekport.gateway.guard.policy import Compiled, _Text  # noqa: E402

DOCS = REPO / "docs" / "benchmarks.md"
START, END = "<!-- guard:start -->", "<!-- guard:end -->"
W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
TEMPLATES = [
    "请把材料寄给我，联系方式：{}，谢谢。",
    "客户信息：{}（已核实）",
    "Please contact me at {} before Friday.",
    "The record shows {} in the log.",
    "备注 {} 见附件",
]


def id_check(first17: str) -> str:
    return "10X98765432"[sum(int(a) * b for a, b in zip(first17, W, strict=True)) % 11]


def luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * 2 if i % 2 == 0 else int(c)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def positive(rng: random.Random, kind: str) -> str:
    if kind == "email":
        user = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789._", k=rng.randint(3, 12)))
        user = user.strip("._") or "x"
        return f"{user}@{rng.choice(['example.com', 'corp.cn', 'mail.qq.com', 'x.org'])}"
    if kind == "phone_cn":
        n = f"1{rng.choice('3456789')}{rng.randint(0, 999_999_999):09d}"
        style = rng.randrange(4)
        if style == 1:
            return f"+86 {n}"
        if style == 2:
            return f"{n[:3]}-{n[3:7]}-{n[7:]}"
        return f"{n[:3]} {n[3:7]} {n[7:]}" if style == 3 else n
    if kind == "id_cn":
        born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(365 * 70))
        first = f"{rng.randint(110000, 659999)}{born:%Y%m%d}{rng.randint(0, 999):03d}"
        return first + id_check(first)
    if kind == "bank_card":
        body = "62" + "".join(str(rng.randrange(10)) for _ in range(rng.choice([13, 14, 16])))
        card = body + luhn_digit(body)
        return (
            " ".join(card[i : i + 4] for i in range(0, len(card), 4))
            if rng.random() < 0.5
            else card
        )
    if kind == "ipv4":
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return f"2001:db8:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"


def negative(rng: random.Random) -> str:
    kind = rng.randrange(7)
    if kind == 0:  # a resident ID with a wrong check character
        born = f"19{rng.randint(50, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}"
        first = f"{rng.randint(110000, 659999)}{born}{rng.randint(0, 999):03d}"
        good = id_check(first)
        return first + rng.choice([c for c in "0123456789" if c != good])
    if kind == 1:  # 16 digits failing Luhn
        body = "".join(str(rng.randrange(10)) for _ in range(15))
        good = luhn_digit(body)
        return body + rng.choice([c for c in "0123456789" if c != good])
    if kind == 2:
        return f"12{rng.randint(0, 999_999_999):09d}"  # no mobile number starts 12
    if kind == 3:
        rest = ".".join(str(rng.randint(0, 255)) for _ in range(3))
        return f"{rng.randint(256, 999)}.{rest}"
    if kind == 4:
        return rng.choice(["std::vector", "Foo::Bar::baz", "a::b"])
    if kind == 5:
        return f"订单号 SO{rng.randint(10**9, 10**10)}"
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


def labelled(n: int, seed: int = 16) -> list[tuple[str, tuple[str, str] | None]]:
    rng = random.Random(seed)
    out: list[tuple[str, tuple[str, str] | None]] = []
    for i in range(n):
        template = rng.choice(TEMPLATES)
        if i % 2 == 0:
            kind = KINDS[(i // 2) % len(KINDS)]
            value = positive(rng, kind)
            out.append((template.format(value), (kind, value)))
        else:
            out.append((template.format(negative(rng)), None))
    return out


def score(data: list[tuple[str, tuple[str, str] | None]]) -> dict[str, tuple[int, int, int]]:
    d = Detector(KINDS)
    counts = {k: [0, 0, 0] for k in KINDS}  # tp, fp, fn
    for text, label in data:
        found = {(m.kind, m.value) for m in d.find(text)}
        if label is not None:
            if label in found:
                counts[label[0]][0] += 1
                found.discard(label)
            else:
                counts[label[0]][2] += 1
        for kind, _ in found:
            counts[kind][1] += 1
    return {k: (v[0], v[1], v[2]) for k, v in counts.items()}


def throughput(data: list[tuple[str, tuple[str, str] | None]]) -> tuple[float, float]:
    text = "\n".join(t for t, _ in data)
    while len(text.encode()) < 4 * 2**20:
        text += "\n" + text
    size = len(text.encode()) / 2**20
    d = Detector(KINDS)
    t0 = time.perf_counter()
    for start in range(0, len(text), 4096):
        d.find(text[start : start + 4096])
    find_mb_s = size / (time.perf_counter() - t0)
    words = [f"词{i}x" for i in range(10_000)]
    policy = Compiled.of(
        GuardPolicy.model_validate(
            {"pii": {"output": "redact"}, "words": {"lists": {"big": words}, "output": "block"}}
        )
    )
    stream = _Text(policy, None)
    part = text[: 2**20]
    t0 = time.perf_counter()
    for i in range(0, len(part), 3):
        stream.push(part[i : i + 3])
    stream.push("", final=True)
    stream_mb_s = len(part.encode()) / 2**20 / (time.perf_counter() - t0)
    return find_mb_s, stream_mb_s


def render(scores: dict[str, tuple[int, int, int]], n: int, speeds: tuple[float, float]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    total = [0, 0, 0]
    for kind, (tp, fp, fn) in scores.items():
        total = [total[0] + tp, total[1] + fp, total[2] + fn]
        rows.append(_row(kind, tp, fp, fn))
    rows.append(_row("**all**", *total))
    return "\n".join(
        [
            START,
            "## Guard: personal-data detection and throughput (issue 16)",
            "",
            f"Machine: {machine()}. Date: {now}. Revision: {revision()}.",
            f"Command: `{command_line()}`. Method: the docstring of `bench/guard.py`.",
            "",
            f"{n} generated texts, Chinese and English, half with a look-alike that is not "
            "personal data.",
            "",
            "| kind | true positives | false positives | missed | precision | recall |",
            "|---|--:|--:|--:|--:|--:|",
            *rows,
            "",
            f"Throughput: detectors {speeds[0]:.1f} MB/s; streamed answer text (3-character "
            f"chunks, redaction + a 10,000-word list) {speeds[1]:.1f} MB/s.",
            "",
            END,
        ]
    )


def _row(kind: str, tp: int, fp: int, fn: int) -> str:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return f"| {kind} | {tp} | {fp} | {fn} | {precision:.3f} | {recall:.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-docs", action="store_true", help="print only")
    parser.add_argument("--docs", type=Path, default=DOCS, help="results page to update")
    parser.add_argument("-n", type=int, default=4000, help="texts to generate")
    args = parser.parse_args()
    data = labelled(args.n)
    section = render(score(data), args.n, throughput(data))
    print(section)
    if not args.no_docs:
        write_section(args.docs, section, START, END)


if __name__ == "__main__":
    main()
