"""Tenants → users → keys, managed on behalf of a caller (the actor).

Every operation checks the actor's role (403) and its tenant: an admin sees and changes only
its own tenant's objects, and an id from another tenant is answered as not found (404), never
as forbidden, so ids cannot be probed. A superadmin sees every tenant. The CLI acts as a
superadmin (it has the database itself).
"""

from __future__ import annotations

import datetime as dt
import secrets

from seekport.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from seekport.gateway.audit import AuditLog, note_change
from seekport.gateway.auth import KeyService, Principal
from seekport.protocol.keys import ROLES, KeyPolicy, Limits
from seekport.store.protocols import (
    ApiKeyRecord,
    DuplicateRecordError,
    TenantRecord,
    TenantStore,
    UserRecord,
    UserStore,
)

CLI_ACTOR = Principal("cli", "cli", "superadmin")  # the operator at the database's console


def _name(name: str, what: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 128:
        raise InvalidRequestError(f"a {what} name must be 1-128 characters", param="name")
    return name


class Directory:
    def __init__(
        self,
        tenants: TenantStore,
        users: UserStore,
        keys: KeyService,
        audit: AuditLog | None = None,
    ) -> None:
        self._tenants = tenants
        self._users = users
        self.keys = keys
        self._audit = audit

    async def _note(
        self,
        actor: Principal,
        action: str,
        target_type: str,
        target_id: str,
        tenant_id: str,
        detail: dict[str, object] | None = None,
    ) -> None:
        """The audit row of a change, committed before the caller is answered."""
        await note_change(self._audit, actor, action, target_type, target_id, tenant_id, detail)

    # ---- tenants

    async def create_tenant(
        self, actor: Principal, name: str, limits: Limits | None = None
    ) -> TenantRecord:
        actor.require("tenants")
        try:
            made = await self._tenants.insert(
                tenant_id="ten_" + secrets.token_hex(8),
                name=_name(name, "tenant"),
                limits=limits or Limits(),
            )
        except DuplicateRecordError as exc:
            raise InvalidRequestError(str(exc), param="name", code="already_exists") from exc
        await self._note(
            actor,
            "tenant.create",
            "tenant",
            made.id,
            made.id,
            {"name": made.name, "limits": made.limits.stored()},
        )
        return made

    async def list_tenants(self, actor: Principal) -> list[TenantRecord]:
        if actor.tenant_scope is None:
            return await self._tenants.list()
        return [await self.tenant(actor, actor.tenant_id)]

    async def tenant(self, actor: Principal, tenant_id: str) -> TenantRecord:
        """A tenant the actor may see (by id or name), or 404."""
        found = await self._tenants.get(tenant_id)
        if found is None or actor.tenant_scope not in (None, found.id):
            raise NotFoundError(f"no tenant {tenant_id}", param="tenant_id")
        return found

    async def update_tenant(
        self,
        actor: Principal,
        tenant_id: str,
        *,
        limits: Limits | None = None,
        disabled: bool | None = None,
    ) -> TenantRecord:
        actor.require("tenants")
        found = await self.tenant(actor, tenant_id)
        if disabled and found.id == actor.tenant_id:
            raise InvalidRequestError(
                "a key cannot disable its own tenant (it would lock itself out)",
                param="disabled",
            )
        updated = await self._tenants.update(found.id, limits=limits, disabled=disabled)
        self.keys.forget()
        assert updated is not None
        await self._note(
            actor, "tenant.update", "tenant", found.id, found.id, _changes(limits, disabled)
        )
        return updated

    # ---- users

    async def create_user(
        self,
        actor: Principal,
        name: str,
        *,
        tenant_id: str | None = None,
        limits: Limits | None = None,
    ) -> UserRecord:
        actor.require("users")
        tenant = await self.tenant(actor, tenant_id or actor.tenant_id)
        try:
            made = await self._users.insert(
                user_id="usr_" + secrets.token_hex(8),
                tenant_id=tenant.id,
                name=_name(name, "user"),
                limits=limits or Limits(),
            )
        except DuplicateRecordError as exc:
            raise InvalidRequestError(str(exc), param="name", code="already_exists") from exc
        await self._note(
            actor,
            "user.create",
            "user",
            made.id,
            tenant.id,
            {"name": made.name, "limits": made.limits.stored()},
        )
        return made

    async def list_users(self, actor: Principal, tenant_id: str | None = None) -> list[UserRecord]:
        actor.require("users")
        if tenant_id is not None:
            tenant_id = (await self.tenant(actor, tenant_id)).id
        return await self._users.list(tenant_id or actor.tenant_scope)

    async def user(self, actor: Principal, user_id: str) -> UserRecord:
        actor.require("users")
        found = await self._users.get(user_id, actor.tenant_scope)
        if found is None:
            raise NotFoundError(f"no user {user_id}", param="user_id")
        return found

    async def update_user(
        self,
        actor: Principal,
        user_id: str,
        *,
        limits: Limits | None = None,
        disabled: bool | None = None,
    ) -> UserRecord:
        found = await self.user(actor, user_id)
        if disabled and found.id == actor.user_id:
            raise InvalidRequestError(
                "a key cannot disable its own user (it would lock itself out)", param="disabled"
            )
        updated = await self._users.update(
            found.id, actor.tenant_scope, limits=limits, disabled=disabled
        )
        self.keys.forget()
        assert updated is not None
        await self._note(
            actor, "user.update", "user", found.id, found.tenant_id, _changes(limits, disabled)
        )
        return updated

    # ---- keys

    async def create_key(
        self,
        actor: Principal,
        name: str,
        role: str,
        *,
        tenant_id: str | None = None,
        user_id: str | None = None,
        policy: KeyPolicy | None = None,
        expires_at: dt.datetime | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        actor.require("keys")
        if role not in ROLES:
            raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}", param="role")
        if role == "superadmin" and actor.role != "superadmin":
            raise PermissionDeniedError("only a superadmin may create superadmin keys")
        if user_id is not None:
            user = await self.user(actor, user_id)
            if tenant_id is not None and (await self.tenant(actor, tenant_id)).id != user.tenant_id:
                raise InvalidRequestError(
                    f"the user {user_id} belongs to another tenant", param="user_id"
                )
            tenant = await self.tenant(actor, user.tenant_id)
        else:
            tenant = await self.tenant(actor, tenant_id or actor.tenant_id)
        record, secret = await self.keys.create(
            name,
            role,
            expires_at=expires_at,
            policy=policy,
            tenant_id=tenant.id,
            user_id=user_id,
        )
        detail: dict[str, object] = {"name": name, "role": role, "terms": record.policy.stored()}
        if user_id is not None:
            detail["user_id"] = user_id
        if expires_at is not None:
            detail["expires_at"] = expires_at.isoformat()
        await self._note(actor, "key.create", "key", record.id, tenant.id, detail)
        return record, secret

    async def list_keys(
        self, actor: Principal, *, tenant_id: str | None = None, user_id: str | None = None
    ) -> list[ApiKeyRecord]:
        actor.require("keys")
        if tenant_id is not None:
            tenant_id = (await self.tenant(actor, tenant_id)).id
        return await self.keys.list(tenant_id or actor.tenant_scope, user_id)

    async def key(self, actor: Principal, key_id: str) -> ApiKeyRecord:
        actor.require("keys")
        return await self.keys.get(key_id, actor.tenant_scope)

    async def _changeable(self, actor: Principal, key_id: str) -> ApiKeyRecord:
        found = await self.key(actor, key_id)
        if found.role == "superadmin" and actor.role != "superadmin":
            raise PermissionDeniedError("only a superadmin may change a superadmin key")
        return found

    async def revoke_key(self, actor: Principal, key_id: str) -> ApiKeyRecord:
        found = await self._changeable(actor, key_id)
        await self.keys.revoke(found.id, actor.tenant_scope)
        await self._note(actor, "key.revoke", "key", found.id, found.tenant_id)
        return await self.keys.get(found.id, actor.tenant_scope)

    async def rotate_key(
        self, actor: Principal, key_id: str, *, grace_s: float = 3600
    ) -> tuple[ApiKeyRecord, str]:
        found = await self._changeable(actor, key_id)
        rotated = await self.keys.rotate(found.id, actor.tenant_scope, grace_s=grace_s)
        await self._note(
            actor, "key.rotate", "key", found.id, found.tenant_id, {"grace_s": grace_s}
        )
        return rotated


def _changes(limits: Limits | None, disabled: bool | None) -> dict[str, object]:
    out: dict[str, object] = {}
    if limits is not None:
        out["limits"] = limits.stored()
    if disabled is not None:
        out["disabled"] = disabled
    return out
