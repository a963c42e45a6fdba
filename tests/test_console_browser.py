"""The console, and CORS, in a real browser: headless Chromium from Debian's
``chromium`` package, driven by Playwright for Python (launched with
``executable_path``: Playwright's own browser download cannot be reached
here). ``scripts/test`` installs Chromium when it is missing; where it cannot,
these tests are skipped, saying so.

Each backend (the embedded store, a private redis-server) gets one
``sessionstore serve`` process with an auth file, customer tokens and
``--cors-origin`` for a storefront page served from another port, and one
browser for the module. The screenshots in the README (docs/images/) are made
here: with SESSIONSTORE_SCREENSHOTS=1 they are written there, else to a
temporary directory."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .conftest import RedisServer, free_port, serve_process, stop_process

CHROMIUM = os.environ.get("SESSIONSTORE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"Chromium is not installed ({CHROMIUM}) and could not be: scripts/test installs Debian's chromium package "
        "with apt-get when it can",
        allow_module_level=True,
    )

ROOT = Path(__file__).resolve().parents[1]
TENANT = "acme"  # a name both the LivePerson and the Emporix face take
TOKEN_SECRET = "k" * 64
SECRETS = {"admin": "admin-secret", "reader": "reader-secret", "everything": "everything-secret"}
SCOPES = {"admin": (TENANT, ["admin"]), "reader": (TENANT, ["read"]), "everything": ("*", ["admin"])}
NATIVE = f"/api/v1/tenants/{TENANT}/namespaces"
SHOP_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>shop</title></head><body>
<pre id="out">waiting</pre><p id="status">-</p><pre id="events"></pre>
<script>
const q = new URLSearchParams(location.search), api = q.get("api");
const out = document.getElementById("out"), status = document.getElementById("status");
if (q.get("token")) {
  fetch(api + "/session-context/acme/me/context", {headers: {Authorization: "Bearer " + q.get("token")}})
    .then((r) => r.json().then((body) => ({status: r.status, requestId: r.headers.get("X-Request-Id"), body})))
    .then((x) => { out.textContent = JSON.stringify(x); }, (e) => { out.textContent = "refused: " + e; });
}
if (q.get("events")) {
  const source = new EventSource(api + q.get("events"));
  source.onopen = () => { status.textContent = "open"; };
  source.onmessage = (e) => { document.getElementById("events").textContent += e.data + "\\n"; };
  source.onerror = () => { status.textContent = source.readyState === 2 ? "closed" : "error"; };
}
</script></body></html>"""


def auth_file(directory: Path) -> Path:
    lines = []
    for name, (tenant, scopes) in SCOPES.items():
        digest = hashlib.sha256(SECRETS[name].encode()).hexdigest()
        lines += ["[[keys]]", f'id = "{name}"', f'tenant = "{tenant}"', f'sha256 = "{digest}"',
                  f"scopes = {scopes!r}".replace("'", '"'), ""]  # fmt: skip
    lines += ["[customer_tokens]", 'algorithm = "HS256"', f'secret = "{TOKEN_SECRET}"', ""]
    path = directory / "auth.toml"
    path.write_text("\n".join(lines))
    return path


class Shop:
    """A storefront page on an origin of its own (127.0.0.1 and a port), in a thread."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(SHOP_PAGE)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def shops() -> Iterator[tuple[Shop, Shop]]:
    """The storefront the service allows, and one it does not."""
    allowed, other = Shop(), Shop()
    yield allowed, other
    allowed.close()
    other.close()


@pytest.fixture(scope="module", params=["embedded", "redis"])
def storage(request: pytest.FixtureRequest) -> Iterator[RedisServer | None]:
    """None: the embedded store; else a private redis-server (the 503 test stops and starts it)."""
    if request.param == "embedded":
        yield None
        return
    if os.environ.get("SESSIONSTORE_TESTS_FAKE_ONLY"):
        pytest.skip("SESSIONSTORE_TESTS_FAKE_ONLY is set")
    server = RedisServer().start()
    yield server
    server.cleanup()


def serve(storage: RedisServer | None, *args: str) -> Iterator[str]:
    redis = ["--redis-url", storage.url] if storage is not None else []
    process, url = serve_process("--log-level", "warning", *redis, *args)
    yield url
    code, output = stop_process(process)
    assert code == 0, output


@pytest.fixture(scope="module")
def service(storage: RedisServer | None, shops: tuple[Shop, Shop], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    auth = auth_file(tmp_path_factory.mktemp("console"))
    yield from serve(storage, "--auth-file", str(auth), "--cors-origin", shops[0].origin)


@pytest.fixture(scope="module")
def open_service(storage: RedisServer | None, shops: tuple[Shop, Shop]) -> Iterator[str]:
    """No auth file (loopback): what an EventSource, which cannot send a key, can follow."""
    yield from serve(storage, "--cors-origin", shops[0].origin)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1180, "height": 760})
    context.set_default_timeout(5000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], "the page's script failed"


@pytest.fixture
def api(service: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service, headers={"X-API-Key": SECRETS["admin"]}, timeout=5) as client:
        yield client


@pytest.fixture
def screenshots(storage: RedisServer | None, tmp_path: Path) -> Callable[[Page, str], None]:
    """Saves a screenshot of the page: into docs/images/ with SESSIONSTORE_SCREENSHOTS=1 (once, on the
    embedded store), else into the test's temporary directory."""
    into = ROOT / "docs" / "images" if os.environ.get("SESSIONSTORE_SCREENSHOTS") and storage is None else tmp_path

    def save(tab: Page, name: str) -> None:
        into.mkdir(parents=True, exist_ok=True)
        path = into / f"{name}.png"
        tab.screenshot(path=str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size < 200_000

    return save


def sign_in(page: Page, service: str, who: str = "admin", where: str = "") -> None:
    page.goto(f"{service}/console{where}")
    page.fill("#api-key", SECRETS[who])
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#who-text")).to_contain_text(f"key {who}")


def customer_token(session: str, customer: str | None = None) -> str:
    claims: dict[str, Any] = {"tenant": TENANT, "sessionId": session, "exp": int(time.time()) + 600}
    if customer:
        claims["customerId"] = customer
    return jwt.encode(claims, TOKEN_SECRET, algorithm="HS256")


def session_link(namespace: str, session: str) -> str:
    return f"#/t/{TENANT}/n/{namespace}/s/{session}"


# -- signing in --------------------------------------------------------------------------------


def test_sign_in_keeps_the_key_in_the_tab_only(page: Page, service: str) -> None:
    started = time.monotonic()
    page.goto(f"{service}/console")
    expect(page.locator("#api-key")).to_be_visible()
    loaded_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    assert loaded_ms < 1000 and time.monotonic() - started < 2, loaded_ms  # light: well under a second
    page.fill("#api-key", "not-a-key")
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#sign-in-error")).to_have_text("This API key is not known to this server.")
    page.fill("#api-key", SECRETS["admin"])
    page.click("#sign-in-form button[type=submit]")
    expect(page.locator("#who-text")).to_have_text(f"key admin · tenant {TENANT} · read, write, admin")
    expect(page.locator("#view h1")).to_have_text(f"Tenant {TENANT}")  # a key of one tenant goes straight to it
    assert page.evaluate("sessionStorage.getItem('sessionstore.apiKey')") == SECRETS["admin"]
    assert page.evaluate("document.cookie") == "" and SECRETS["admin"] not in page.url
    assert page.evaluate("localStorage.length") == 0
    page.reload()  # the same tab: still signed in
    expect(page.locator("#who-text")).to_contain_text("key admin")
    page.click("#sign-out")
    expect(page.locator("#api-key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.locator("#api-key")).to_be_visible()


def test_a_key_of_every_tenant_chooses_one(page: Page, service: str, api: httpx.Client) -> None:
    assert api.patch(f"/v1/account/{TENANT}/chosen/s1/properties", json={"a": 1}).status_code == 204
    sign_in(page, service, "everything")
    expect(page.locator("#view h1")).to_have_text("Tenants")
    page.fill("#tenant-input", TENANT)
    page.click("form.inline button")
    expect(page.locator("a.ns-link", has_text="chosen")).to_be_visible()
    page.click("#crumbs >> text=Tenants")
    expect(page.locator("ul.plain a", has_text=TENANT)).to_be_visible()  # opened in this tab


# -- browsing ----------------------------------------------------------------------------------


def test_browse_to_a_session_written_through_liveperson(
    page: Page, service: str, api: httpx.Client, screenshots: Callable[[Page, str], None]
) -> None:
    lp = f"/v1/account/{TENANT}"
    assert api.post(lp, json={"name": "bot"}, params={"ttlSecond": 1800}).status_code == 204
    body = {"intent": "refund", "turns": 3, "handover": False,
            "cart": {"items": 2, "lines": [{"sku": "A-1", "qty": 1}, {"sku": "B-7", "qty": 1}], "coupon": None}}  # fmt: skip
    assert api.patch(f"{lp}/bot/conv-42/properties", json=body).status_code == 204
    assert api.patch(f"{lp}/bot/conv-7/properties", json={"turns": 1}).status_code == 204
    # tied to a customer through the native API (LivePerson sessions have no customer field)
    merge = {"Content-Type": "application/merge-patch+json"}
    r = api.patch(f"{NATIVE}/bot/sessions/conv-42", content=b'{"customerId": "cust-42"}', headers=merge)
    assert r.status_code == 200 and r.json()["customerId"] == "cust-42"
    sign_in(page, service)
    row = page.locator("tr", has=page.locator("a.ns-link", has_text="bot"))
    expect(row).to_contain_text("30 min")  # the namespace's TTL
    page.click("a.ns-link >> text=bot")
    expect(page.locator("a.session-link")).to_have_count(2)
    page.fill("#prefix", "conv-4")
    page.click("text=Filter")
    expect(page.locator("a.session-link")).to_have_count(1)
    page.click("a.session-link >> text=conv-42")
    expect(page.locator("#meta-version")).to_have_text("2")
    expect(page.locator("#meta-customer")).to_have_text("cust-42")
    cart = page.locator("li.prop[data-name=cart] .tree")
    expect(cart).to_contain_text('"lines"')
    expect(cart).to_contain_text('"coupon": null')
    lines = page.locator("li.prop[data-name=cart] .j-key", has_text='"lines"')
    expect(lines).to_be_visible()
    page.click("li.prop[data-name=cart] .tree summary >> nth=0")  # folds
    expect(lines).to_be_hidden()
    page.click("li.prop[data-name=cart] .tree summary >> nth=0")
    expect(lines).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("live")
    assert api.patch(f"{lp}/bot/conv-42/properties", json={"turns": 4, "intent": "exchange"}).status_code == 204
    expect(page.locator("#meta-version")).to_have_text("3")
    expect(page.locator("li.prop.flash-changed")).to_have_count(2)
    screenshots(page, "console-session")


def test_sessions_page_with_the_native_cursor(page: Page, service: str, api: httpx.Client) -> None:
    ids = {f"bulk-{n:03d}" for n in range(57)}
    for session_id in ids:
        assert api.put(f"{NATIVE}/bulk/sessions/{session_id}", json={"properties": {}}).status_code == 201
    sign_in(page, service, where=f"#/t/{TENANT}/n/bulk")
    links = page.locator("a.session-link")
    expect(links).to_have_count(50)
    first = set(links.all_inner_texts())
    page.click("#next-page")
    expect(links).to_have_count(7)
    assert first | set(links.all_inner_texts()) == ids
    expect(page.locator("#next-page")).to_be_disabled()
    page.click("#prev-page")
    expect(links).to_have_count(50)
    page.fill("#prefix", "bulk-05")
    page.click("text=Filter")
    expect(links).to_have_count(7)
    page.fill("#prefix", "nothing")
    page.click("text=Filter")
    expect(page.locator("#view")).to_contain_text("No session id starts with “nothing”.")


# -- changing ----------------------------------------------------------------------------------


def test_edit_a_property_and_see_the_new_version(page: Page, service: str, api: httpx.Client) -> None:
    url = f"{NATIVE}/desk/sessions/edit-1"
    assert api.put(url, json={"properties": {"turns": 3, "big": 12345678901234567890, "note": "hi"}}).status_code == 201
    sign_in(page, service, where=session_link("desk", "edit-1"))
    expect(page.locator("#meta-version")).to_have_text("1")
    page.click("li.prop[data-name=turns] button.edit")
    editor = page.locator("li.prop[data-name=turns] textarea")
    editor.fill("{oops")
    expect(page.locator("li.prop[data-name=turns] .check")).to_contain_text("not valid JSON")
    expect(page.locator("li.prop[data-name=turns] button.save")).to_be_disabled()
    editor.fill('{"count": 5}')
    page.click("li.prop[data-name=turns] button.save")
    expect(page.locator("#meta-version")).to_have_text("2")
    expect(page.locator("li.prop[data-name=turns] .tree")).to_contain_text('"count": 5')
    assert api.get(url).json()["properties"]["turns"] == {"count": 5}
    # the editor starts from the stored text: an integer JavaScript cannot hold stays as it is
    page.click("li.prop[data-name=big] button.edit")
    expect(page.locator("li.prop[data-name=big] textarea")).to_have_value("12345678901234567890")
    page.click("li.prop[data-name=big] button.cancel")
    # add one, delete one, delete the session
    page.click("#add-property")
    page.fill("#add-name", "note")
    expect(page.locator("form.add .check")).to_contain_text("note exists")
    page.fill("#add-name", "intent")
    page.fill("#add-value", '"refund"')
    page.click("#add-save")
    expect(page.locator("#meta-version")).to_have_text("3")
    page.click("li.prop[data-name=note] button.delete")
    page.click("li.prop[data-name=note] .confirm-yes")
    expect(page.locator("#meta-version")).to_have_text("4")
    assert set(api.get(url).json()["properties"]) == {"turns", "big", "intent"}
    page.click("#delete-session")
    page.click(".actions .confirm-yes")
    expect(page.locator("#notice")).to_contain_text("Session edit-1 deleted.")
    expect(page.locator("#view h1")).to_contain_text("Sessions in desk")
    assert api.get(url).status_code == 404


def test_a_concurrent_change_makes_the_next_edit_show_412(page: Page, service: str, api: httpx.Client) -> None:
    url = f"{NATIVE}/desk/sessions/race-1"
    assert api.put(url, json={"properties": {"status": "open", "agent": "a1"}}).status_code == 201
    sign_in(page, service, where=session_link("desk", "race-1"))
    page.click("li.prop[data-name=status] button.edit")
    page.locator("li.prop[data-name=status] textarea").fill('"closed"')
    # meanwhile, through the API
    r = api.patch(url, json={"properties": {"agent": "a2"}}, headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200
    expect(page.locator("#meta-version")).to_have_text("2")  # the live panel brought it; the editor stays open
    expect(page.locator("li.prop[data-name=status] textarea")).to_have_value('"closed"')
    page.click("li.prop[data-name=status] button.save")
    conflict = page.locator("#conflict")
    expect(conflict).to_contain_text("Changed meanwhile: reload.")
    expect(conflict).to_contain_text("now at version 2; this change was made to version 1 and was not saved")
    assert api.get(url).json()["properties"] == {"status": "open", "agent": "a2"}  # never overwritten
    page.click("#conflict button.reload")
    expect(conflict).to_be_hidden()
    expect(page.locator("li.prop[data-name=status] .base")).to_have_text("editing version 2")
    page.click("li.prop[data-name=status] button.save")
    expect(page.locator("#meta-version")).to_have_text("3")
    assert api.get(url).json()["properties"] == {"status": "closed", "agent": "a2"}


# -- live ----------------------------------------------------------------------------------------


def test_the_live_panel_shows_an_emporix_change_within_a_second(
    page: Page, service: str, api: httpx.Client, screenshots: Callable[[Page, str], None], storage: RedisServer | None
) -> None:
    emporix = f"/session-context/{TENANT}/context/cart-7"
    r = api.put(emporix, params={"upsert": "true"}, json={"siteCode": "main", "currency": "EUR", "metadata": {"version": 1}})
    assert r.status_code == 204, r.text
    sign_in(page, service, where=f"#/t/{TENANT}")
    page.click("a.ns-link >> text=Emporix contexts")
    page.click("a.session-link >> text=cart-7")
    expect(page.locator("#live-status")).to_have_text("live")
    written_ms = time.time() * 1000  # the machine's clock, as the page's Date.now()
    r = api.post(f"{emporix}/attributes", json={"key": "wishlist", "value": ["w1", "w2"]})
    assert r.status_code == 204
    event = page.locator("#live-log li.event").first
    expect(event).to_contain_text("changed context")
    received_ms = float(event.get_attribute("data-received") or "inf")
    assert received_ms - written_ms < 1000, f"the change reached the page after {received_ms - written_ms:.0f} ms"
    expect(page.locator("li.prop.flash-changed[data-name=context] .tree")).to_contain_text('"wishlist"')
    r = api.put(emporix, json={"siteCode": "main", "metadata": {"version": 2}})
    assert r.status_code == 204, r.text
    expect(page.locator("#live-log li.event").first).to_contain_text("deleted currency context")
    expect(page.locator("li.prop.gone[data-name=currency] .badge")).to_have_text("deleted")
    screenshots(page, "console-live")
    if storage is None:  # once is enough: it takes a few seconds
        expect(page.locator("li.prop[data-name=currency]")).to_have_count(0, timeout=6000)  # gone for good


# -- what a key may do -------------------------------------------------------------------------


def test_a_read_only_key_sees_no_edit_controls(page: Page, service: str, api: httpx.Client) -> None:
    assert api.put(f"{NATIVE}/desk/sessions/ro-1", json={"properties": {"a": 1}}).status_code == 201
    sign_in(page, service, "reader", where=session_link("desk", "ro-1"))
    expect(page.locator("li.prop[data-name=a] .tree")).to_have_text("1")
    expect(page.locator("#read-only")).to_be_visible()
    for control in ("button.edit", "button.delete", "#add-property", "#delete-session", "textarea"):
        expect(page.locator(control)).to_have_count(0)
    expect(page.locator("#crumbs")).not_to_contain_text("Tenants")  # a key of one tenant sees that tenant only
    page.goto(f"{service}/console#/t/other")
    expect(page.locator("#view .error")).to_contain_text("This API key may not do that")


# -- CORS: a storefront on another origin -------------------------------------------------------


def test_a_storefront_on_an_allowed_origin_reads_me_context(
    page: Page, service: str, shops: tuple[Shop, Shop]
) -> None:
    token = customer_token("cart-shop", "cust-9")
    r = httpx.patch(f"{service}/session-context/{TENANT}/me/context", params={"upsert": "true"},
                    json={"currency": "CHF", "metadata": {"version": 1}}, headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert r.status_code == 204, r.text
    allowed, other = shops
    page.goto(f"{allowed.origin}/shop?api={service}&token={token}")
    expect(page.locator("#out")).to_contain_text('"status":200')
    answer = page.evaluate("JSON.parse(document.getElementById('out').textContent)")
    assert answer["body"]["currency"] == "CHF" and answer["requestId"]  # an exposed header, readable
    page.goto(f"{other.origin}/shop?api={service}&token={token}")
    expect(page.locator("#out")).to_have_text("refused: TypeError: Failed to fetch")


def test_an_event_source_on_an_allowed_origin_follows_a_session(
    page: Page, open_service: str, shops: tuple[Shop, Shop]
) -> None:
    allowed, other = shops
    events = f"{NATIVE}/desk/sessions/es-1/events"
    page.goto(f"{allowed.origin}/shop?api={open_service}&events={events}")
    expect(page.locator("#status")).to_have_text("open")
    r = httpx.put(f"{open_service}{NATIVE}/desk/sessions/es-1", json={"properties": {"x": 1}})
    assert r.status_code == 201
    expect(page.locator("#events")).to_contain_text('{"version":1,"changed":["x"],"deleted":[]}')
    page.goto(f"{other.origin}/shop?api={open_service}&events={events}")
    expect(page.locator("#status")).to_have_text("closed")  # refused by the browser: no CORS headers


def test_an_event_source_with_a_key_in_the_query_follows_a_session(
    page: Page, service: str, api: httpx.Client, shops: tuple[Shop, Shop]
) -> None:
    """With API keys: an EventSource cannot send one in a header, so it gives it as ?access_token=."""
    allowed, _other = shops
    events = f"{NATIVE}/desk/sessions/es-key/events"
    page.goto(f"{allowed.origin}/shop?api={service}&events={events}%3Faccess_token%3D{SECRETS['reader']}")
    expect(page.locator("#status")).to_have_text("open")
    assert api.put(f"{NATIVE}/desk/sessions/es-key", json={"properties": {"y": 2}}).status_code == 201
    expect(page.locator("#events")).to_contain_text('{"version":1,"changed":["y"],"deleted":[]}')
    page.goto(f"{allowed.origin}/shop?api={service}&events={events}%3Faccess_token%3Dwrong")
    expect(page.locator("#status")).to_have_text("closed")  # 401: an EventSource gives up


# -- Redis away for a moment ---------------------------------------------------------------------


def test_the_console_keeps_working_through_a_redis_outage(
    page: Page, service: str, api: httpx.Client, storage: RedisServer | None
) -> None:
    if storage is None:
        pytest.skip("stops and starts a real redis-server")
    url = f"{NATIVE}/desk/sessions/outage-1"
    assert api.put(url, json={"properties": {"a": 1}}).status_code == 201
    sign_in(page, service, where=session_link("desk", "outage-1"))
    expect(page.locator("#live-status")).to_have_text("live")
    storage.stop()
    try:
        expect(page.locator("#live-status")).to_contain_text("reconnecting")
        page.click("li.prop[data-name=a] button.edit")
        page.locator("li.prop[data-name=a] textarea").fill("2")
        page.click("li.prop[data-name=a] button.save")
        expect(page.locator("#notice")).to_contain_text("The storage is unavailable right now")
    finally:
        storage.start()  # the same port; it comes back empty
    deadline = time.monotonic() + 5
    while api.put(url, json={"properties": {"a": 3}}).status_code != 201:  # the service reconnects first
        assert time.monotonic() < deadline
        time.sleep(0.1)
    expect(page.locator("#live-status")).to_have_text("live", timeout=12000)
    expect(page.locator("li.prop[data-name=a] .tree")).to_have_text("3")
    expect(page.locator("#live-log")).to_contain_text("connected again")
