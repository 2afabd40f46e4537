"""Reading the records: ``GET /admin/usage`` (totals of requests, tokens and cost, grouped by
day, model or key), ``GET /admin/audit`` (a page of the audit log), ``GET /admin/audit/export``
(all of it in a time range, JSONL or CSV), ``POST /admin/audit/purge`` (the retention job,
now) and ``POST /admin/backup`` (a backup of the embedded store, now). Admins and auditors
see their own tenant's records; a superadmin sees every tenant's."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from seekport.api.deps import Services, authorize, services_or_none
from seekport.api.scope import RequestScope
from seekport.config.pricing import decimal_string
from seekport.errors import InvalidRequestError
from seekport.gateway.audit import AuditEvent
from seekport.gateway.auth import Principal
from seekport.protocol.admin import AuditPage, UsageGroup, UsageReport
from seekport.store.protocols import AuditStore, UsageQuery

router = APIRouter()
EXPORT_PAGE = 1000
SUMS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_nanos",
    "errors",
    "latency_ms",
    "gen_ms",
)
USAGE_FIELDS = (
    "group",
    "currency",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "errors",
    "latency_ms_avg",
    "tokens_per_s",
    "last_at",
)
AUDIT_FIELDS = (
    "seq",
    "id",
    "at",
    "action",
    "outcome",
    "actor_key_id",
    "actor_role",
    "tenant_id",
    "target_type",
    "target_id",
    "client_ip",
    "count",
    "detail",
)


def _when(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 time or a Unix time; naive times are UTC."""
    if value is None:
        return None
    try:
        if value.replace(".", "", 1).isdigit():
            return dt.datetime.fromtimestamp(float(value), dt.UTC)
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError) as exc:
        raise InvalidRequestError(
            f"{name} must be an ISO 8601 time or Unix seconds, got {value[:64]!r}", param=name
        ) from exc
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _tenant(actor: Principal, asked: str | None) -> str | None:
    """The tenant whose records the actor reads: its own, or (a superadmin) any or all."""
    return asked if actor.tenant_scope is None else actor.tenant_scope


async def _guarded(
    request: Request,
    route: str,
    permission: Literal["usage", "audit", "system", "users"],
    work: Callable[[Services, Principal, RequestScope], Awaitable[Response]],
) -> Response:
    scope = RequestScope(services_or_none(request), request, route, record=False)

    async def handle() -> Response:
        svc = scope.services
        actor = await authorize(svc, request, permission)
        scope.ctx.principal = actor
        return await work(svc, actor, scope)

    return await scope.run(handle)


@router.get("/admin/usage", response_model=UsageReport)
async def usage(
    request: Request,
    tenant_id: str | None = None,
    user_id: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    since: str | None = None,
    until: str | None = None,
    group_by: Literal["day", "model", "key"] | None = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    """Requests, tokens, cost, errors and latency, filtered and grouped; ``totals`` sums them
    per currency. ``format=csv``: the groups as a CSV attachment."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        q = UsageQuery(
            tenant_id=_tenant(actor, tenant_id),
            user_id=user_id,
            key_id=key_id,
            model=model,
            since=_when(since, "since"),
            until=_when(until, "until"),
            group_by=group_by,
        )
        if svc.usage is None:
            raise InvalidRequestError("this server keeps no usage records")
        rows = await svc.usage.totals(q)
        groups = [_group(r, group_by) for r in rows]
        if format == "csv":
            name = f"usage-{group_by or 'all'}.csv"
            return Response(
                _usage_csv(groups),
                media_type="text/csv; charset=utf-8",
                headers={
                    **scope.headers(),
                    "Content-Disposition": f'attachment; filename="{name}"',
                },
            )
        merged: dict[str | None, dict[str, Any]] = {}
        for r in rows:  # one total per currency
            m = merged.setdefault(r["currency"], {"currency": r["currency"], "last_at": None})
            for name in SUMS:
                m[name] = m.get(name, 0) + (r[name] or 0)
            if r["last_at"] is not None and (m["last_at"] is None or r["last_at"] > m["last_at"]):
                m["last_at"] = r["last_at"]
        totals = [_group(m, None) for m in merged.values()]
        report = UsageReport(data=groups, totals=totals, group_by=group_by)
        return Response(
            report.model_dump_json(), media_type="application/json", headers=scope.headers()
        )

    return await _guarded(request, "admin.usage", "usage", work)


def _group(r: dict[str, Any], group_by: str | None) -> UsageGroup:
    key = None if group_by is None else r[{"key": "key_id"}.get(group_by, group_by)]
    nanos = int(r["cost_nanos"] or 0)
    requests = int(r["requests"] or 0)
    gen_s = float(r["gen_ms"] or 0) / 1000
    last = r["last_at"]
    return UsageGroup(
        group=None if key is None else str(key),
        currency=r["currency"],
        requests=requests,
        prompt_tokens=int(r["prompt_tokens"] or 0),
        completion_tokens=int(r["completion_tokens"] or 0),
        cached_tokens=int(r["cached_tokens"] or 0),
        cost_nanos=nanos,
        cost=decimal_string(nanos, 6),
        errors=int(r["errors"] or 0),
        latency_ms_avg=round(float(r["latency_ms"] or 0) / requests, 2) if requests else 0.0,
        tokens_per_s=round(int(r["completion_tokens"] or 0) / gen_s, 2) if gen_s else 0.0,
        generating_ms=round(gen_s * 1000, 2),
        last_at=int(last.timestamp()) if isinstance(last, dt.datetime) else None,
    )


def _usage_csv(groups: list[UsageGroup]) -> bytes:
    rows = (g.model_dump() for g in groups)
    return b"".join(
        [_csv_line(USAGE_FIELDS), *(_csv_line([r[f] for f in USAGE_FIELDS]) for r in rows)]
    )


def _audit_row(r: dict[str, Any]) -> dict[str, Any]:
    at = r["at"]
    return {**r, "at": at.isoformat() if isinstance(at, dt.datetime) else at}


@router.get("/admin/audit", response_model=AuditPage)
async def audit(
    request: Request,
    tenant_id: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
    after: int = 0,
    limit: int = 100,
    order: Literal["asc", "desc"] = "asc",
    before: int | None = None,
) -> Response:
    """A page of the audit log, oldest first; ``next`` is the ``after`` of the next page.
    ``order=desc``: newest first, and ``next`` is the ``before`` of the next (older) page."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        if not 1 <= limit <= EXPORT_PAGE:
            raise InvalidRequestError(f"limit must be 1-{EXPORT_PAGE}", param="limit")
        store = _store(svc)
        rows = await store.query(
            tenant_id=_tenant(actor, tenant_id),
            since=_when(since, "since"),
            until=_when(until, "until"),
            action=action,
            after_seq=after,
            limit=limit,
            before_seq=before,
            newest_first=order == "desc",
        )
        data = [_audit_row(r) for r in rows]
        nxt = rows[-1]["seq"] if len(rows) == limit else None
        return Response(
            orjson.dumps({"object": "list", "data": data, "next": nxt}),
            media_type="application/json",
            headers=scope.headers(),
        )

    return await _guarded(request, "admin.audit", "audit", work)


@router.get("/admin/audit/export")
async def export(
    request: Request,
    format: Literal["jsonl", "csv"] = "jsonl",
    tenant_id: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    """The audit log in a time range as JSON Lines or CSV, streamed page by page."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        tenant = _tenant(actor, tenant_id)
        start, end = _when(since, "since"), _when(until, "until")
        store = _store(svc)

        async def query(after: int) -> list[dict[str, Any]]:
            return await store.query(
                tenant_id=tenant,
                since=start,
                until=end,
                action=action,
                after_seq=after,
                limit=EXPORT_PAGE,
            )

        async def pages() -> AsyncIterator[bytes]:
            if format == "csv":
                yield _csv_line(AUDIT_FIELDS)
            async for r in _every(query):
                row = _audit_row(r)
                if format == "csv":
                    detail = orjson.dumps(row["detail"]).decode() if row["detail"] else ""
                    yield _csv_line([*(row[f] for f in AUDIT_FIELDS[:-1]), detail])
                else:
                    yield orjson.dumps(row) + b"\n"

        media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
        name = f"audit.{format}"
        return StreamingResponse(
            pages(),
            media_type=media,
            headers={
                **scope.headers(),
                "content-disposition": f'attachment; filename="{name}"',
            },
        )

    return await _guarded(request, "admin.audit", "audit", work)


async def _every(
    query: Callable[[int], Awaitable[list[dict[str, Any]]]],
) -> AsyncIterator[dict[str, Any]]:
    """Every row a paged query returns, page after page (``seq`` keyed)."""
    after = 0
    while True:
        rows = await query(after)
        for r in rows:
            yield r
        if len(rows) < EXPORT_PAGE:
            return
        after = rows[-1]["seq"]


def _store(svc: Services) -> AuditStore:
    if svc.audit_store is None:
        raise InvalidRequestError("this server keeps no audit log")
    return svc.audit_store


def _csv_line(values: Any) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(["" if v is None else v for v in values])
    return buf.getvalue().encode("utf-8")


@router.get("/admin/content")
async def content(
    request: Request,
    tenant_id: str | None = None,
    user_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    """The content log as JSON Lines (what was asked and answered; erased entries never),
    streamed page by page; admins and auditors read their own tenant's."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        if svc.content is None:
            raise InvalidRequestError("this server keeps no content log")
        store = svc.content
        tenant = _tenant(actor, tenant_id)
        start, end = _when(since, "since"), _when(until, "until")

        async def query(after: int) -> list[dict[str, Any]]:
            return await store.query(
                tenant_id=tenant,
                user_id=user_id,
                since=start,
                until=end,
                after_seq=after,
                limit=EXPORT_PAGE,
            )

        async def pages() -> AsyncIterator[bytes]:
            async for r in _every(query):
                entry = {**r, "created_at": r["created_at"].isoformat()}
                yield orjson.dumps(entry) + b"\n"

        return StreamingResponse(
            pages(), media_type="application/x-ndjson", headers=scope.headers()
        )

    return await _guarded(request, "admin.content", "audit", work)


@router.post("/admin/users/{user_id}/erase")
async def erase(request: Request, user_id: str) -> Response:
    """The right to erasure: the user's content log entries are hidden from every read now
    and deleted by the retention job after ``content_log.erasure_grace_days``; audited."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        user = await svc.directory.user(actor, user_id)  # 404 for another tenant's
        if svc.content is None:
            raise InvalidRequestError("this server keeps no content log")
        erased = await svc.content.erase_user(user.id, actor.tenant_scope)
        if svc.audit is not None:
            await svc.audit.record(
                AuditEvent(
                    "user.erase",
                    actor_key_id=actor.key_id,
                    actor_role=actor.role,
                    tenant_id=user.tenant_id,
                    target_type="user",
                    target_id=user.id,
                    client_ip=actor.client_ip,
                    detail={"entries": erased},
                )
            )
        grace = svc.settings.content_log.erasure_grace_days
        body = {"user_id": user.id, "erased": erased, "deleted_within_days": grace}
        return Response(orjson.dumps(body), media_type="application/json", headers=scope.headers())

    return await _guarded(request, "admin.users.erase", "users", work)


@router.post("/admin/audit/purge")
async def purge(request: Request) -> Response:
    """Run the retention job now (on the job queue, as its daily schedule does) and wait for
    it: rows older than ``audit_retention_days`` are deleted."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        if svc.jobs is None:
            raise InvalidRequestError("this server runs no job queue")
        deleted = await svc.jobs.purge_now()
        return Response(
            orjson.dumps({"deleted": deleted["audit"], "content_deleted": deleted["content"]}),
            media_type="application/json",
            headers=scope.headers(),
        )

    return await _guarded(request, "admin.audit.purge", "system", work)


@router.post("/admin/backup")
async def backup_now(request: Request) -> Response:
    """Back the embedded store up now (on the job queue, as the ``backup.every_minutes``
    schedule does) and wait for it: the new backup's directory."""

    async def work(svc: Services, actor: Principal, scope: RequestScope) -> Response:
        made = await svc.jobs.backup_now() if svc.jobs is not None else None
        if made is None:
            raise InvalidRequestError(
                "no backup directory is configured (backup.dir)", code="backup_not_configured"
            )
        return Response(
            orjson.dumps({"backup": made}),
            media_type="application/json",
            headers=scope.headers(),
        )

    return await _guarded(request, "admin.backup", "system", work)
