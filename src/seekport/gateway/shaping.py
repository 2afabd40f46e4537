"""How a request is shaped on its way to the model: the key's output cap, an alias's fixed
fields, a fallback's model name; the scopes its limits count against and its token estimate."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from seekport.config import AliasConfig
from seekport.errors import InvalidRequestError
from seekport.gateway.auth import Principal
from seekport.gateway.budgets import Budgets, budget_scopes
from seekport.gateway.guard.policy import Compiled, Guard, Redaction
from seekport.gateway.limits import Terms, estimate_tokens
from seekport.protocol.chat import ChatCompletionRequest
from seekport.protocol.completions import CompletionRequest
from seekport.protocol.keys import Limits


def scopes_of(
    who: Principal, model: str | None = None, model_limits: Limits | None = None
) -> list[Terms]:
    """The scopes a caller's call counts against, narrowest first (and its served model's
    own limits, when it has some)."""
    p, t = who.policy, who.tenant_limits
    scopes = [Terms(f"key:{who.key_id}", "this API key", p.rpm, p.tpm, p.max_concurrent)]
    if who.user_id is not None and who.user_limits is not None:
        u = who.user_limits
        scopes.append(Terms(f"user:{who.user_id}", "your user", u.rpm, u.tpm, u.max_concurrent))
    scopes.append(Terms(f"tenant:{who.tenant_id}", "your tenant", t.rpm, t.tpm, t.max_concurrent))
    if model is not None and model_limits is not None:
        m = model_limits
        scopes.append(
            Terms(f"model:{model}", f"the model '{model}'", m.rpm, m.tpm, m.max_concurrent)
        )
    return scopes


def output_limit(req: ChatCompletionRequest | CompletionRequest) -> int | None:
    return req.output_limit if isinstance(req, ChatCompletionRequest) else req.max_tokens


def estimate(req: ChatCompletionRequest | CompletionRequest, body: dict[str, Any]) -> int:
    """Tokens to reserve for the call (tokens per minute settle with the real count after)."""
    return estimate_tokens(len(orjson.dumps(body)), output_limit(req))


def capped(
    req: ChatCompletionRequest | CompletionRequest, body: dict[str, Any], cap: int | None
) -> tuple[ChatCompletionRequest | CompletionRequest, dict[str, Any]]:
    """The key's output cap over the client's ask (a remote upstream gets it in the body)."""
    if cap is None:
        return req, body
    if isinstance(req, ChatCompletionRequest):
        asked = req.output_limit
        fields = ["max_tokens"] + (["max_completion_tokens"] if req.max_completion_tokens else [])
    else:
        asked, fields = req.max_tokens, ["max_tokens"]
    if asked is not None and asked <= cap:
        return req, body
    update = dict.fromkeys(fields, cap)
    capped = req.model_copy(update=update)
    return capped, {**body, **update}


def retargeted(
    req: ChatCompletionRequest | CompletionRequest, body: dict[str, Any], model: str
) -> tuple[ChatCompletionRequest | CompletionRequest, dict[str, Any]]:
    """The request for a fallback model: the same, under that model's name."""
    served = req.model_copy(update={"model": model})
    if (
        isinstance(req, ChatCompletionRequest)
        and isinstance(served, ChatCompletionRequest)
        and req.output_ceiling
    ):
        served.as_ceiling()
    return served, {**body, "model": model}


def through_alias(
    alias: AliasConfig, req: ChatCompletionRequest | CompletionRequest, body: dict[str, Any]
) -> tuple[ChatCompletionRequest | CompletionRequest, dict[str, Any]]:
    """The request as its served model gets it: the alias's fixed fields over the client's
    (a remote upstream gets this body), and the model's own name."""
    merged = {**body, **alias.fixed(), "model": alias.model}
    try:
        served = type(req).model_validate(merged)
        ceiling = isinstance(req, ChatCompletionRequest) and req.output_ceiling
        if ceiling and isinstance(served, ChatCompletionRequest):
            served.as_ceiling()  # a translation's mark, kept
        return served, merged
    except ValidationError as exc:  # a client field that the alias's fixed ones contradict
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidRequestError(
            f"Invalid parameter '{loc}' through alias '{alias.name}': {first['msg']}",
            param=loc or None,
        ) from exc


def revalidated(req: ChatCompletionRequest, body: dict[str, Any]) -> ChatCompletionRequest:
    """The request as its changed body says (an Anthropic-style output ceiling kept)."""
    out = ChatCompletionRequest.model_validate(body)
    if req.output_ceiling:
        out.as_ceiling()
    return out


def guarded(
    guard: Guard,
    who: Principal,
    model: str,
    req: ChatCompletionRequest | CompletionRequest,
    body: dict[str, Any],
    kinds: list[str] | None = None,
) -> tuple[
    ChatCompletionRequest | CompletionRequest, dict[str, Any], Compiled | None, Redaction | None
]:
    """The guard's policy for this caller and model over the request: a blocked request is a
    400; personal data is redacted in the body the model gets (and the request revalidated
    from it). Returns the request, its body, the policy (None: no guard) and the redaction
    (None: nothing redacted); ``kinds`` gets each redaction's kind."""
    policy = guard.policy_for(who.tenant_id, model, who.policy.guard)
    if policy is None:
        return req, body, None, None
    body, redaction = guard.check_request(policy, body, kinds)
    if redaction is None:
        return req, body, policy, None
    out = type(req).model_validate(body)
    if isinstance(out, ChatCompletionRequest) and getattr(req, "output_ceiling", False):
        out.as_ceiling()
    return out, body, policy, redaction


def budgeted(
    budgets: Budgets,
    who: Principal,
    models: list[str],
    req: ChatCompletionRequest | CompletionRequest,
    body: dict[str, Any],
) -> tuple[
    ChatCompletionRequest | CompletionRequest, dict[str, Any], tuple[list[str], int, int] | None
]:
    """What a call reserves on the budgets over it: ``Budgets.reserve``'s models (the one
    asked and its fallbacks), the request's JSON size and its output limit; None when no
    budget applies or no model is priced. Under a budget a call with no output limit gets one,
    so the reservation is an upper bound."""
    if not budgets.priced(models) or not budget_scopes(who):
        return req, body, None
    limit = output_limit(req)
    if limit is None:
        limit = budgets.pricing.output_reserve_tokens
        req, body = capped(req, body, limit)
    return req, body, (models, len(orjson.dumps(body)), limit)
