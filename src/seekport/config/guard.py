"""The ``guard:`` section: personal data and sensitive words, on what goes to the model and
what comes back (off by default). ``tenants`` and ``models`` replace the whole policy for a
tenant (by id) or a served model; a tenant's wins over a model's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PII_KINDS = ("email", "phone_cn", "id_cn", "bank_card", "ipv4", "ipv6")
Action = Literal["allow", "redact", "block"]


class PiiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kinds: list[str] = Field(
        default_factory=lambda: list(PII_KINDS),
        description="Detectors on: email, phone_cn (mainland mobile), id_cn (resident ID, "
        "checksum checked), bank_card (Luhn), ipv4, ipv6.",
    )
    custom: dict[str, str] = Field(
        default_factory=dict,
        description="More kinds: a name (lowercase) and its regular expression.",
    )
    input: Action = Field(
        default="redact",
        description="Personal data in a request: allow, redact (`[EMAIL_1]`…, numbered per "
        "request), or block (400 naming the kind, never the value).",
    )
    actions: dict[str, Action] = Field(
        default_factory=dict, description="Per kind, over `input` (e.g. {id_cn: block})."
    )
    output: Literal["allow", "redact"] = Field(
        default="allow", description="Personal data the model writes: allow, or redact."
    )
    restore: bool = Field(
        default=False,
        description="Put the caller's own redacted values back into the answer (the model "
        "never saw them).",
    )

    @field_validator("kinds")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(PII_KINDS))
        if unknown:
            raise ValueError(f"unknown kind {', '.join(unknown)} (known: {', '.join(PII_KINDS)})")
        return v

    @field_validator("custom")
    @classmethod
    def _patterns(cls, v: dict[str, str]) -> dict[str, str]:
        for name, pattern in v.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name) or name in PII_KINDS:
                raise ValueError(f"custom kind {name!r}: a new lowercase name, a-z0-9_")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"custom kind {name!r}: {exc}") from exc
        return v


class WordsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lists: dict[str, list[Annotated[str, Field(min_length=1, max_length=128)]]] = Field(
        default_factory=dict,
        description="Named lists of words or phrases (matched case-insensitively, Aho-Corasick).",
    )
    files: list[Path] = Field(
        default_factory=list,
        description="Word lists, one per line (`#` comments); a list is named after its file.",
    )
    input: Literal["allow", "block"] = Field(
        default="block", description="A listed word in a request: block (400) or allow."
    )
    output: Literal["allow", "block"] = Field(
        default="block",
        description="A listed word in an answer: block (the answer ends with "
        "finish_reason content_filter) or allow.",
    )

    def words(self) -> dict[str, list[str]]:
        """Every list, the files' read now (a reload reads them again)."""
        out = {name: list(words) for name, words in self.lists.items()}
        for path in self.files:
            lines = path.expanduser().read_text(encoding="utf-8").splitlines()
            out[path.stem] = [w.strip() for w in lines if w.strip() and not w.startswith("#")]
        return out


class GuardPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pii: PiiConfig = Field(default_factory=PiiConfig)
    words: WordsConfig = Field(default_factory=WordsConfig)


class GuardConfig(GuardPolicy):
    enabled: bool = Field(default=False, description="Guard requests and answers at all.")
    tenants: dict[str, GuardPolicy] = Field(
        default_factory=dict, description="A tenant's own policy (by tenant id)."
    )
    models: dict[str, GuardPolicy] = Field(
        default_factory=dict, description="A served model's own policy."
    )
    policies: dict[str, GuardPolicy] = Field(
        default_factory=dict,
        description="Named policies a key can be given (`keys create --guard NAME`; `off` "
        "turns the guard off for a key); a key's wins over its tenant's.",
    )
