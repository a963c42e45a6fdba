"""The documentation: the site (mkdocs.yml, docs/) holds every section the
README had before issue 17 moved them there, builds with --strict into pages
that load nothing from the internet, and renders the app's own OpenAPI
document and the benchmark's latest chart; the README stays short, and its
one request per API works against a fresh `sessionstore serve`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import yaml

from service.faces.docs import swagger_ui_dir

from .conftest import serve_app, serve_process, stop_process

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"

# Every `##` and `###` heading of the README before it shrank, and the page it moved to.
MOVED = [
    ("Two commands", "index.md"),
    ("Configuration", "index.md"),
    ("API keys", "index.md"),
    ("LivePerson-compatible Context Session Store API", "apis/liveperson-v1.md"),
    ("Behaviour, where the vendor's documents leave room", "apis/liveperson-v1.md"),
    ("LivePerson Conversation Context Service v2", "apis/liveperson-v2.md"),
    ("Behaviour, where the vendor's documents leave room", "apis/liveperson-v2.md"),
    ("Emporix-compatible Session Context API", "apis/emporix.md"),
    ("Customer tokens", "apis/emporix.md"),
    ("Behaviour, where the vendor's documents leave room", "apis/emporix.md"),
    ("Genesys-compatible Session Management API", "apis/genesys.md"),
    ("Behaviour, where the vendor's documents leave room", "apis/genesys.md"),
    ("Native API", "apis/native.md"),
    ("OpenAPI and /docs", "apis/native.md"),
    ("Architecture", "architecture.md"),
    ("Redis key layout", "architecture.md"),
    ("Operating sessionstore", "operating.md"),
    ("Metrics", "operating.md"),
    ("Logs and request ids", "operating.md"),
    ("Worker processes", "operating.md"),
    ("Graceful shutdown", "operating.md"),
    ("Export and import", "operating.md"),
    ("Checking a Redis", "operating.md"),
    ("Deployment", "deployment.md"),
    ("One Redis: `docker compose`", "deployment.md"),
    ("Scaled out: several instances, one Redis Cluster", "deployment.md"),
    ("Redis Cluster", "deployment.md"),
    ("Redis over TLS and with an ACL user", "deployment.md"),
    ("Durable writes and failover", "deployment.md"),
    ("Benchmark", "benchmark.md"),
    ("Latest results", "benchmark.md"),
]
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$")
LINK = re.compile(r"\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^(https?:)?//", re.IGNORECASE)
# what a browser loads by itself: <script src>, <link href>, <img src>, <iframe src>
LOADED = re.compile(r"<(script|link|img|iframe|source)\b[^>]*?\b(src|href)=[\"']([^\"']*)[\"']", re.IGNORECASE)
CSS_URL = re.compile(r"url\(\s*[\"']?([^\"')]*)")


def headings(text: str) -> list[str]:
    """The Markdown headings of a page, outside code blocks."""
    found, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (m := HEADING.match(line)):
            found.append(m.group(2))
    return found


def slug(heading: str) -> str:
    """The anchor of a heading, as GitHub and Python-Markdown's toc make it."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "").lower()).strip()
    return re.sub(r"[-\s]+", "-", text)


def nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    raise AssertionError(nav)


def mkdocs_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return config


@pytest.mark.parametrize(("heading", "page"), MOVED, ids=[f"{page}:{heading}" for heading, page in MOVED])
def test_every_section_of_the_old_readme_is_a_heading_of_a_page_in_the_site(heading: str, page: str) -> None:
    assert page in nav_pages(mkdocs_config()["nav"]), f"{page} is not in mkdocs.yml's nav"
    assert heading in headings((DOCS / page).read_text()), f"{heading!r} is not a heading of docs/{page}"


def test_every_page_of_docs_is_in_the_nav() -> None:
    pages = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert pages == set(nav_pages(mkdocs_config()["nav"]))


def test_the_readme_is_short_and_shows_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 200
    assert "```sh\npip install . && sessionstore serve\n```" in text
    assert "```sh\n./scripts/test\n```" in text  # what .ci/run runs
    assert "mkdocs serve" in text


def test_the_readme_links_to_files_and_headings_that_exist() -> None:
    links = LINK.findall(README.read_text())
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        assert not EXTERNAL.match(link), link
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), link
        if anchor:
            assert anchor in [slug(h) for h in headings(target.read_text())], link


README_STATUSES = [204, 200, 201, 200, 204, 200, 200, 201, 304]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_readmes_request_per_api_works_against_a_fresh_service() -> None:
    text = README.read_text()
    block = text.split("## One request per API", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert block.startswith("B=http://127.0.0.1:8080\n")
    process, url = serve_process()  # no auth file, loopback: open access, as the README says
    try:
        script = (
            "set -euo pipefail\n"
            'curl() { command curl -sS -o /dev/null -w "%{http_code}\\n" "$@"; }\n'
            + block.replace("B=http://127.0.0.1:8080", f"B={url}", 1)
        )
        done = subprocess.run(["bash", "-c", script], check=False, capture_output=True, text=True, timeout=60)
    finally:
        stop_process(process)
    assert done.returncode == 0, done.stderr
    assert [int(status) for status in done.stdout.split()] == README_STATUSES


# -- the built site ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built as ./scripts/test builds it (--strict: a warning fails)."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    directory = tmp_path_factory.mktemp("site")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NO_MKDOCS_2_WARNING", "1")
        build(load_config(str(ROOT / "mkdocs.yml"), site_dir=str(directory), strict=True))
    return directory


def test_the_site_has_a_page_for_every_nav_entry(site: Path) -> None:
    for page in nav_pages(mkdocs_config()["nav"]):
        built = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert built.is_file(), page
    assert "Behaviour, where the vendor" in (site / "apis" / "emporix" / "index.html").read_text()


def test_the_site_loads_nothing_from_the_internet(site: Path) -> None:
    loaded = [(html, m.group(3)) for html in site.rglob("*.html") for m in LOADED.finditer(html.read_text())]
    assert len(loaded) > 20
    assert [(str(html), url) for html, url in loaded if EXTERNAL.match(url)] == []
    for css in site.rglob("*.css"):
        urls = CSS_URL.findall(css.read_text())
        assert [url for url in urls if EXTERNAL.match(url)] == [], css
    assert "fonts.googleapis" not in (site / "index.html").read_text()


@pytest.mark.anyio
async def test_the_site_renders_the_apps_own_openapi_document(site: Path) -> None:
    async with serve_app(fakeredis.FakeAsyncRedis(), open_access=True) as api:
        served = (await api.get("/openapi.json")).content
    assert (site / "openapi" / "openapi.json").read_bytes() == served
    page = (site / "openapi" / "index.html").read_text()
    scripts = [m.group(3) for m in LOADED.finditer(page)]
    assert set(scripts) >= {"swagger-ui-bundle.js", "swagger-ui.css", "start.js"}
    for name in scripts:
        assert (site / "openapi" / name).is_file(), name
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert (site / "openapi" / name).read_bytes() == (swagger_ui_dir() / name).read_bytes()
    assert 'url: "openapi.json"' in (site / "openapi" / "start.js").read_text()
    assert 'src="../../openapi/index.html"' in (site / "apis" / "reference" / "index.html").read_text()


def test_the_benchmark_page_shows_the_latest_chart(site: Path) -> None:
    page = (site / "benchmark" / "index.html").read_text()
    assert 'src="../assets/bench-latest.png"' in page
    chart = ROOT / "bench" / "results" / "latest.png"  # as bench/run.py last wrote it
    assert (site / "assets" / "bench-latest.png").read_bytes() == chart.read_bytes()
