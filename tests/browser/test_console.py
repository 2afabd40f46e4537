"""The web console end to end in headless Chromium against a real server: login (a bad key
refused, the bootstrap superadmin key accepted), a key created in the page (secret shown once,
copied), called with the official ``openai`` client, its call seen on the Usage page and in the
Keys page's last use, the usage CSV downloaded, the key rotated and revoked in the page (the API
then refuses it); each role's own nav; the playground streaming from the bundled model and
showing a reasoner's thinking in a collapsible pane; a knowledge base created, two files (one
Chinese) uploaded with per-file progress, ready, searched with highlighted hits and scores and
cited in a grounded chat; the Chinese switch; and on every page, in both languages, no console
errors and no serious or critical axe-core violations, with a screenshot of each."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest

from tests.browser.conftest import REASONER, screenshot
from tests.harness import BUNDLED, Server, openai_client

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api")  # a dev dependency

PAGES = ("keys", "usage", "models", "knowledge", "playground", "audit")
# what shows once each page has loaded its data
READY = {
    "keys": "#keys-list table, #keys-list p",
    "usage": "#usage-table table",
    "models": "#models-list table",
    "knowledge": "#kb-list ul, #kb-list p",
    "playground": "#pg-model option",
    "audit": "#audit-list table, #audit-list p",
}
NAV_ZH = {"keys": "密钥", "usage": "用量", "models": "模型", "knowledge": "知识库", "audit": "审计"}

HANDBOOK_ZH = """# 员工手册

## 假期

每位员工每年有 15 天带薪年假，需提前两周向经理申请。

## 办公地点

公司总部位于上海市徐汇区华山路 1954 号。
"""
RUNBOOK_EN = """GPU runbook

Error code ERR-4021 means the GPU ran out of memory. Lower the batch size or move the model to a
card with more memory. Restart the inference service after changing it.
"""


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(server: Server, name: str, role: str) -> str:
    r = httpx.post(
        server.url + "/admin/keys",
        json={"name": name, "role": role},
        headers=bearer(server.key),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["secret"])


def login(page: Any, server: Server, key: str) -> None:
    page.goto(server.url + "/console")
    page.fill("#login-form input[name=key]", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("header nav a[data-route]")


def go(page: Any, route: str) -> None:
    page.evaluate("r => { location.hash = '#/' + r }", route)
    page.wait_for_selector(f"main[data-page='{route}']")
    page.wait_for_selector(READY[route], state="attached")


def playground(page: Any, model: str) -> None:
    """The playground, once its model list has come, with ``model`` chosen."""
    go(page, "playground")
    page.wait_for_selector(f"#pg-model option[value='{model}']", state="attached")
    page.select_option("#pg-model", model)


def nav_routes(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("header nav a", "els => els.map(e => e.dataset.route)"))


def axe_check(page: Any, axe_source: str, where: str) -> None:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)  # evaluated through the DevTools protocol: outside the CSP
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"axe-core on {where}:\n" + "\n".join(bad)


def poll(check: Any, timeout_s: float = 20, step_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step_s)


def test_login_refuses_a_bad_key_and_logs_out(
    open_page: Any, server: Server, axe_source: str
) -> None:
    page = open_page()
    response = page.goto(server.url + "/console")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#login-form")
    axe_check(page, axe_source, "login")
    screenshot(page, "en-login")
    page.fill("#login-form input[name=key]", "sk-sp-not-a-real-key")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:not(:empty)")
    assert "Login failed" in page.inner_text("#login-error")
    login(page, server, server.key)
    assert "superadmin" in page.inner_text("header .who")
    cookie = next(c for c in page.context.cookies() if c["name"] == "seekport_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""  # HttpOnly: not readable by scripts
    page.click("#logout")
    page.wait_for_selector("#login-form")
    who = page.evaluate("() => fetch('/console/session').then(r => r.json())")
    assert who == {"object": "console.session", "authenticated": False}


def test_a_key_made_in_the_page_is_used_seen_rotated_and_revoked(
    open_page: Any, server: Server
) -> None:
    page = open_page()
    login(page, server, server.key)
    go(page, "keys")
    page.fill("#key-create input[name=name]", "browser-made")
    page.select_option("#key-create select[name=role]", "user")
    page.fill("#key-create input[name=rpm]", "600")
    page.fill("#key-create input[name=budget]", "5")
    page.click("#key-create button[type=submit]")
    page.wait_for_selector("#secret-panel")
    secret = page.input_value("#new-secret")
    assert secret.startswith("sk-")
    page.click("#copy-secret")
    page.wait_for_selector("#copy-status:not(:empty)")
    assert page.evaluate("() => navigator.clipboard.readText()") == secret
    row = page.locator("#keys-list tr[data-key-name='browser-made']")
    assert "600" in row.inner_text() and "5 / monthly" in row.inner_text()
    assert row.locator(".last-used").inner_text() == "never"
    key_id = row.get_attribute("data-key-id")
    page.click("#secret-panel button.ghost")
    assert page.locator("#secret-panel").count() == 0  # shown once: gone when dismissed

    answer = openai_client(server.url + "/v1", secret).chat.completions.create(
        model=REASONER, messages=[{"role": "user", "content": "hello from the browser test"}]
    )
    assert answer.choices[0].message.content
    with pytest.raises(openai.NotFoundError):  # an error, counted in the key's usage
        openai_client(server.url + "/v1", secret).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hello"}]
        )

    def used() -> bool:
        page.click("main .page-head button")  # Refresh
        page.wait_for_selector("#keys-list table")
        text = page.locator(f"#keys-list tr[data-key-id='{key_id}'] .last-used").inner_text()
        return text != "never"

    poll(used)

    go(page, "usage")
    page.select_option("#usage-group", "key")

    def seen() -> bool:
        page.click("#usage-refresh")
        page.wait_for_selector("#usage-table table")
        row = page.locator(f"#usage-table tr[data-group='{key_id}']")
        return row.count() == 1 and row.locator(".requests").inner_text() == "2"

    poll(seen)
    row = page.locator(f"#usage-table tr[data-group='{key_id}']")
    assert "browser-made" in row.inner_text()  # the key's name, not its id
    assert row.locator(".errors").inner_text() == "1"
    page.wait_for_selector("#chart-tokens")
    with page.expect_download() as info:
        page.click("#usage-export")
    download = info.value
    assert download.suggested_filename == "usage-key.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert rows[0][:3] == ["group", "currency", "requests"]
    header = rows[0]
    mine = [dict(zip(header, r, strict=True)) for r in rows[1:] if r[0] == key_id]
    assert sum(int(r["requests"]) for r in mine) == 2  # a row per currency (none: unpriced)
    assert sum(int(r["errors"]) for r in mine) == 1 and all(r["last_at"] for r in mine)

    go(page, "keys")
    row = page.locator(f"#keys-list tr[data-key-id='{key_id}']")
    row.locator("button[data-action=rotate]").click()
    row.locator("button[data-action=rotate]").click()  # confirm
    page.wait_for_selector("#secret-panel")
    rotated = page.input_value("#new-secret")
    assert rotated != secret and rotated.startswith("sk-")
    for works in (rotated, secret):  # the previous secret too, within its grace
        assert httpx.get(server.url + "/v1/models", headers=bearer(works), timeout=10).is_success
    page.wait_for_selector(f"#keys-list tr[data-key-id='{key_id}'] .state .muted")  # the grace

    row = page.locator(f"#keys-list tr[data-key-id='{key_id}']")
    row.locator("button[data-action=revoke]").click()
    row.locator("button[data-action=revoke]").click()  # confirm
    page.wait_for_selector(f"#keys-list tr[data-key-id='{key_id}'][data-state=revoked]")

    def refused() -> bool:
        codes = {
            httpx.get(server.url + "/v1/models", headers=bearer(s), timeout=10).status_code
            for s in (rotated, secret)
        }
        return codes == {401}

    poll(refused, timeout_s=5, step_s=0.25)


def test_each_role_sees_its_own_pages(open_page: Any, server: Server) -> None:
    expected = {
        "admin": ["keys", "usage", "models", "knowledge", "playground", "audit"],
        "user": ["models", "knowledge", "playground"],
        "auditor": ["usage", "models", "audit"],
        "viewer": ["models"],
    }
    for role, routes in expected.items():
        page = open_page()
        login(page, server, make_key(server, f"nav-{role}", role))
        assert nav_routes(page) == routes, role
        assert page.evaluate("() => location.hash") == f"#/{routes[0]}"
        page.wait_for_selector(READY[routes[0]])
        if role in ("user", "auditor"):
            screenshot(page, f"en-nav-{role}")
        page.evaluate("() => { location.hash = '#/keys' }")
        if "keys" not in routes:
            page.wait_for_selector("main p[role=alert]")  # not a page this role may see
        if role == "viewer":
            session_ends_with_its_key(page, server)
        page.close()


def session_ends_with_its_key(page: Any, server: Server) -> None:
    """The logged-in key revoked: the next call answers 401 and the page asks for a login."""
    key_id = page.evaluate("() => fetch('/console/session').then(r => r.json())")["key_id"]
    revoked = httpx.post(
        f"{server.url}/admin/keys/{key_id}/revoke", headers=bearer(server.key), timeout=10
    )
    assert revoked.status_code == 200, revoked.text
    page.watched.may_401.add("/v1/models")
    page.evaluate("() => { location.hash = '#/models' }")

    def logged_out() -> bool:
        if page.locator("#login-form").count():
            return True
        refresh = page.locator("main .page-head button")
        if refresh.count():
            with contextlib.suppress(sync_api.Error):  # the login form may just replace it
                refresh.click(timeout=1000)
        return False

    poll(logged_out, timeout_s=5, step_s=0.3)
    assert "session ended" in page.inner_text("#login-error")


def test_the_playground_streams_and_shows_reasoning(open_page: Any, server: Server) -> None:
    page = open_page()
    login(page, server, server.key)
    playground(page, BUNDLED)
    offered = page.eval_on_selector_all("#pg-model option", "os => os.map(o => o.value)")
    assert BUNDLED in offered and REASONER in offered and "e5" not in offered  # no embedder
    page.fill("#pg-max-tokens", "16")
    page.fill("#pg-temperature", "0")
    page.fill("#pg-input", "Say hello.")
    page.click("#pg-send")
    page.wait_for_selector("#pg-stop:not([disabled])")  # streaming
    page.wait_for_selector(".msg.assistant[data-done]", timeout=120_000)
    bubble = page.locator(".msg.assistant").last
    assert bubble.get_attribute("data-done") == "true"
    assert bubble.locator(".answer").inner_text().strip()
    assert bubble.locator("details.reasoning").is_hidden()  # no reasoning: no pane
    assert "tokens/s" in bubble.locator(".stats").inner_text()

    page.click("#pg-clear")
    page.select_option("#pg-model", REASONER)
    page.fill("#pg-input", "Think first.")
    page.click("#pg-send")
    page.wait_for_selector(".msg.assistant[data-done]")
    bubble = page.locator(".msg.assistant").last
    pane = bubble.locator("details.reasoning")
    assert pane.is_visible()
    assert "think0" in pane.locator(".reasoning-text").text_content()
    assert "tok0" in bubble.locator(".answer").inner_text()
    assert pane.get_attribute("open") is None  # folded once the answer is in
    pane.locator("summary").click()
    assert pane.get_attribute("open") is not None
    assert pane.locator(".reasoning-text").is_visible()
    screenshot(page, "en-playground-reasoning")


def test_knowledge_upload_search_and_citations(
    open_page: Any, server: Server, tmp_path: Path
) -> None:
    page = open_page()
    login(page, server, server.key)
    go(page, "knowledge")
    page.fill("#kb-create input[name=name]", "handbook-ui")
    page.fill("#kb-create input[name=description]", "员工手册 and runbooks")
    page.click("#kb-create button[type=submit]")
    page.wait_for_selector("#kb-detail #kb-upload")
    files = [tmp_path / "员工手册.md", tmp_path / "runbook.txt"]
    files[0].write_text(HANDBOOK_ZH, encoding="utf-8")
    files[1].write_text(RUNBOOK_EN, encoding="utf-8")
    page.set_input_files("#kb-files", [str(f) for f in files])
    page.click("#kb-upload button[type=submit]")
    for f in files:
        item = page.locator(f"#kb-uploads li[data-upload='{f.name}']")
        item.and_(page.locator("[data-state=uploaded]")).wait_for()
        assert item.locator("progress").get_attribute("aria-label")
        assert int(item.locator("progress").evaluate("p => p.value")) == 100
        assert "100%" in item.inner_text()
    for f in files:
        page.wait_for_selector(
            f"#kb-documents tr[data-filename='{f.name}'][data-status=done]", timeout=60_000
        )
    assert page.locator("#kb-documents tr[data-status=done] .badge").first.inner_text() == "ready"

    page.fill("#kb-query", "年假有几天")
    page.click("#kb-search button[type=submit]")
    page.wait_for_selector("#kb-results .hit")
    top = page.locator("#kb-results .hit").first
    assert top.get_attribute("data-filename") == "员工手册.md"
    assert "年假" in top.locator("mark").all_inner_texts()
    assert re.search(r"score \d\.\d{4}", top.locator(".scores").inner_text())
    page.fill("#kb-query", "ERR-4021")
    page.select_option("#kb-mode", "bm25")
    page.click("#kb-search button[type=submit]")
    page.wait_for_selector("#kb-results .hit[data-filename='runbook.txt'] mark")
    hit = page.locator("#kb-results .hit").first
    assert hit.locator("mark").all_inner_texts()[0] == "ERR-4021"
    assert "BM25 rank 1" in hit.inner_text()
    screenshot(page, "en-knowledge-search")

    playground(page, REASONER)
    page.check("#pg-kbs input[data-kb-name='handbook-ui']")
    page.fill("#pg-input", "年假有几天？")
    page.click("#pg-send")
    page.wait_for_selector(".msg.assistant[data-done=true] .citations")
    cite = page.locator(".msg.assistant .citations button.cite").first
    assert "员工手册.md" in cite.inner_text()
    text = page.locator(".msg.assistant .citations .cite-text").first
    assert text.is_hidden()
    cite.click()
    assert cite.get_attribute("aria-expanded") == "true"
    assert "15 天带薪年假" in text.inner_text()
    screenshot(page, "en-playground-citations")


def test_models_page_shows_health_breakers_and_versions(open_page: Any, server: Server) -> None:
    page = open_page()
    login(page, server, server.key)
    go(page, "models")
    local = page.locator(f"#models-list tr[data-model='{BUNDLED}']")
    assert "ready" in local.inner_text()
    assert local.locator(".in-flight").inner_text() == "0"
    remote = page.locator(f"#models-list tr[data-model='{REASONER}']")
    assert remote.locator("[data-breaker]").get_attribute("data-breaker") == "closed"
    assert "openai" in remote.inner_text()
    # a second version of the bundled model in the registry, then switched to in the page
    from seekport.engine.runners.llamacpp import bundled_model_path

    added = httpx.post(
        server.url + "/admin/models/registry",
        json={"name": BUNDLED, "version": "console", "path": str(bundled_model_path())},
        headers=bearer(server.key),
        timeout=120,
    )
    assert added.status_code == 201, added.text
    local.locator("button[data-versions]").click()
    page.wait_for_selector("#versions-form")
    assert "Serving: bundled" in page.inner_text("#versions-form")
    page.select_option("#version-select", f"{BUNDLED}@console")
    page.click("#versions-form button[type=submit]")
    page.wait_for_selector("#models-status:has-text('now serves')", timeout=60_000)
    assert f"registry:{BUNDLED}@console" in page.inner_text("#versions-form")
    page.click("main .page-head button")  # Refresh
    version = page.locator(f"#models-list tr[data-model='{BUNDLED}'] td").nth(1)
    poll(lambda: version.inner_text() == f"{BUNDLED}@console", timeout_s=10)
    # back to the bundled file, and the copy out of the models directory the session shares
    auth = bearer(server.key)
    back = httpx.post(f"{server.url}/admin/models/{BUNDLED}/rollback", headers=auth, timeout=60)
    assert back.status_code == 200, back.text
    gone = httpx.delete(
        f"{server.url}/admin/models/registry/{BUNDLED}@console", headers=auth, timeout=30
    )
    assert gone.status_code == 200, gone.text


ASSETS = Path(__file__).resolve().parents[2] / "src" / "seekport" / "api" / "console" / "assets"
# t("key"), t('key') or t(`key`) without ${…}: the keys written out in the scripts
T_CALL = re.compile(r"""\bt\(\s*(?:"([^"\\]*)"|'([^'\\]*)'|`([^`\\$]*)`)""")


COMMENTS = re.compile(r"/\*.*?\*/|^[ \t]*//[^\n]*", re.DOTALL | re.MULTILINE)


def keys_used_in_scripts() -> set[str]:
    scripts = [p for p in ASSETS.rglob("*.js") if "vendor" not in p.relative_to(ASSETS).parts]
    used = {
        next(g for g in m.groups() if g is not None)
        for p in scripts
        for m in T_CALL.finditer(COMMENTS.sub("", p.read_text(encoding="utf-8")))
    }
    assert len(scripts) >= 5 and {"usage.tokensPerS", "models.col.tokS"} <= used  # the scan works
    return used


def knowledge_base_with_a_document(server: Server, name: str) -> str:
    """A knowledge base made through the API, with one document uploaded: its id."""
    auth = bearer(server.key)
    made = httpx.post(
        server.url + "/v1/knowledge",
        json={"name": name, "description": "made by a test"},
        headers=auth,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    kb_id = str(made.json()["id"])
    upload = httpx.post(
        f"{server.url}/v1/knowledge/{kb_id}/documents",
        files={"file": ("runbook.txt", RUNBOOK_EN.encode(), "text/plain")},
        headers=auth,
        timeout=60,
    )
    assert upload.status_code == 202, upload.text
    return kb_id


def test_every_page_in_both_languages_without_errors_or_axe_violations(
    open_page: Any, server: Server, axe_source: str
) -> None:
    kb_id = knowledge_base_with_a_document(server, "pages-kb")
    page = open_page()
    login(page, server, server.key)
    for route in PAGES:
        go(page, route)
        if route == "knowledge":  # a knowledge base open, its documents listed
            page.click(f"#kb-list a[href='#/knowledge/{kb_id}']")
            page.wait_for_selector("#kb-documents table")
        axe_check(page, axe_source, f"{route} (en)")
        screenshot(page, f"en-{route}")

    missing = "async () => (await import('/console/assets/i18n.js')).missingKeys()"
    assert page.evaluate(missing) == []  # every string in both languages
    used = keys_used_in_scripts()
    for language in ("en", "zh"):
        known = set(
            page.evaluate(
                "async l => (await import('/console/assets/i18n.js')).keysOf(l)", language
            )
        )
        assert not used - known, f"t() keys missing from {language}: {sorted(used - known)}"
    page.click("button[data-lang=zh]")
    assert page.evaluate("() => document.documentElement.lang") == "zh-CN"
    labels = dict(
        zip(
            nav_routes(page),
            page.eval_on_selector_all("header nav a", "els => els.map(e => e.textContent)"),
            strict=True,
        )
    )
    for route, text in NAV_ZH.items():
        assert labels[route] == text
    assert page.inner_text("#logout") == "退出"
    # the CJK glyphs come from an installed font (not tofu): the font check, and a rendered
    # Chinese string as wide as Chinese glyphs are (a missing glyph draws as a narrow box)
    assert page.evaluate("() => document.fonts.check('16px sans-serif', '密钥')")
    widths = page.evaluate(
        """() => {
            const c = document.createElement('canvas').getContext('2d');
            c.font = '32px ' + getComputedStyle(document.body).fontFamily;
            return [c.measureText('密钥用量').width, c.measureText('\\u{10FFFD}'.repeat(4)).width];
        }"""
    )
    assert widths[0] > 100 and widths[0] != widths[1], widths
    for route in PAGES:
        go(page, route)
        assert page.locator("header nav a[aria-current=page]").inner_text() in {
            *NAV_ZH.values(),
            "对话试验场",
        }
        axe_check(page, axe_source, f"{route} (zh)")
        screenshot(page, f"zh-{route}")
    page.reload()  # the choice is remembered
    page.wait_for_selector("header nav a[data-route]")
    assert page.inner_text("header nav a[data-route=keys]") == "密钥"
    page.click("button[data-lang=en]")
    assert page.inner_text("header nav a[data-route=keys]") == "Keys"


def usage_report(group_by: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    base = {
        "currency": None,
        "requests": 1,
        "prompt_tokens": 1,
        "completion_tokens": 0,
        "cached_tokens": 0,
        "cost_nanos": 0,
        "cost": "0.000000",
        "errors": 0,
        "latency_ms_avg": 0.0,
        "tokens_per_s": 0.0,
        "last_at": None,
    }
    return {
        "object": "usage_report",
        "group_by": group_by,
        "data": [{**base, **r} for r in rows],
        "totals": [],
    }


def test_usage_merges_currencies_keeps_the_latest_reply_and_counts_whole_days(
    open_page: Any, server: Server
) -> None:
    page = open_page()
    login(page, server, server.key)
    go(page, "usage")
    held: list[Any] = []

    def answer(route: Any) -> None:
        if "group_by=model" in route.request.url:
            held.append(route)  # the slow reply: answered after the newer one
            return
        route.fulfill(
            json=usage_report(
                "day",
                [
                    # one day in two parts: priced (generated 150 tokens in 2.5 s) and unpriced (an
                    # error, 300 ms: not generating time)
                    {
                        "group": "2026-01-01",
                        "currency": "USD",
                        "requests": 2,
                        "completion_tokens": 100,
                        "cost": "0.500000",
                        "latency_ms_avg": 600.0,
                        "generating_ms": 1000.0,
                        "tokens_per_s": 100.0,
                    },
                    {
                        "group": "2026-01-01",
                        "requests": 2,
                        "completion_tokens": 50,
                        "errors": 1,
                        "latency_ms_avg": 900.0,
                        "generating_ms": 1500.0,
                        "tokens_per_s": 33.33,
                    },
                    # a group with one row: the server's own figure, as it rounded it
                    {
                        "group": "2026-01-02",
                        "completion_tokens": 85,
                        "latency_ms_avg": 4000.0,
                        "tokens_per_s": 42.5,
                    },
                ],
            )
        )

    page.route("**/admin/usage?**", answer)
    with page.expect_request(lambda r: "group_by=model" in r.url):
        page.select_option("#usage-group", "model")
    page.select_option("#usage-group", "day")
    row = page.locator("#usage-table tr[data-group='2026-01-01']")
    row.wait_for()
    assert len(held) == 1
    assert row.locator("td").nth(6).inner_text() == "60"  # 150 tokens / 2.5 s
    other = page.locator("#usage-table tr[data-group='2026-01-02']")
    assert other.locator("td").nth(6).inner_text() == "42.5"
    held[0].fulfill(json=usage_report("model", [{"group": "stale-model"}]))
    page.wait_for_timeout(300)
    assert page.locator("#usage-table tr[data-group='stale-model']").count() == 0
    assert row.count() == 1

    with page.expect_request(lambda r: "until=" in r.url) as info:
        page.fill("#usage-until", "2026-01-31")  # the whole day: calls before the next midnight
    assert parse_qs(urlsplit(info.value.url).query)["until"] == ["2026-02-01T00:00:00Z"]
    page.unroute("**/admin/usage?**")


def test_models_page_rates_the_last_hour(open_page: Any, server: Server) -> None:
    page = open_page()
    login(page, server, server.key)
    with page.expect_request(lambda r: "/admin/usage?" in r.url) as info:
        go(page, "models")
    since = int(parse_qs(urlsplit(info.value.url).query)["since"][0])
    assert abs(since - (time.time() - 3600)) < 120
    assert "Tokens/s (last hour)" in page.text_content("#models-list thead")


def test_the_playground_history_keeps_whole_exchanges(open_page: Any, server: Server) -> None:
    page = open_page()
    login(page, server, server.key)
    playground(page, REASONER)
    chat = "**/v1/chat/completions"
    held: list[Any] = []

    def hold(route: Any) -> None:  # no answer: the request hangs until stopped
        held.append(route)

    page.route(chat, hold)
    page.fill("#pg-input", "stopped")
    page.click("#pg-send")
    page.wait_for_selector("#pg-stop:not([disabled])")
    page.click("#pg-stop")
    page.wait_for_selector(".msg.assistant[data-done=stopped]")
    page.fill("#pg-input", "cleared")
    page.click("#pg-send")
    page.wait_for_selector("#pg-stop:not([disabled])")
    page.click("#pg-clear")  # cuts the request short: nothing of it in the new conversation
    page.wait_for_selector("#pg-send:not([disabled])")
    assert len(held) == 2
    page.unroute(chat)

    def turns(text: str) -> list[tuple[str, str]]:
        done = page.locator(".msg.assistant[data-done]")
        answered = done.count()
        page.fill("#pg-input", text)
        with page.expect_request(chat) as info:
            page.click("#pg-send")
        done.nth(answered).wait_for()
        assert done.nth(answered).get_attribute("data-done") == "true"
        body = info.value.post_data_json
        return [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]

    assert turns("first") == [("user", "first")]
    answer = page.locator(".msg.assistant").last.locator(".answer").inner_text().strip()
    assert answer
    sent = turns("second")
    assert [r for r, _ in sent] == ["user", "assistant", "user"]
    assert sent[0] == ("user", "first") and sent[2] == ("user", "second") and sent[1][1]


def test_the_element_builder_sets_only_local_links(open_page: Any, server: Server) -> None:
    page = open_page()
    page.goto(server.url + "/console")
    page.wait_for_selector("#login-form")
    kept = page.evaluate(
        """async () => {
            const { h } = await import('/console/assets/dom.js');
            const values = ['#/keys', '/v1/models', 'blob:https://x/1', 'javascript:alert(1)',
                'JavaScript:alert(1)', ' javascript:alert(1)', 'data:text/html,x', '//evil.example',
                '/\\\\evil.example', 'https://evil.example', '/a\\nb'];
            return values.map((v) => [v, h('a', { href: v }).getAttribute('href'),
                h('div', { src: v }).getAttribute('src')]);
        }"""
    )
    allowed = {"#/keys", "/v1/models", "blob:https://x/1"}
    for value, href, src in kept:
        expected = value if value in allowed else None
        assert (href, src) == (expected, expected), value
