"""MkDocs hooks (``hooks:`` in mkdocs.yml): the files the site takes from the
code and the repository rather than from docs/, made at every build so that
none of them can go stale:

- ``openapi/openapi.json``: the app's OpenAPI document, built as
  ``GET /openapi.json`` builds it (service.faces.docs.openapi_document);
- ``openapi/swagger-ui-bundle.js``, ``swagger-ui.css``, ``favicon-32x32.png``:
  Swagger UI's files from the swagger-ui-py package, as ``/docs`` serves
  them, for docs/openapi/index.html, which renders the document offline;
- ``assets/bench-latest.png``: the benchmark's chart, bench/results/latest.png
  as bench/run.py last wrote it."""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
BENCH_CHART = ROOT / "bench" / "results" / "latest.png"
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def openapi_json() -> bytes:
    """The document of the whole app (every face), on an embedded store that
    is never used: building the routes sends no command."""
    import fakeredis

    from service.app import build_app
    from service.config import Settings
    from service.faces.docs import openapi_document

    app = build_app(Settings(), redis=fakeredis.FakeAsyncRedis())
    return openapi_document(app.routes)


def generated_files(config: MkDocsConfig) -> list[File]:
    from service.faces.docs import swagger_ui_dir

    swagger = swagger_ui_dir()
    return [
        File.generated(config, "openapi/openapi.json", content=openapi_json()),
        *(File.generated(config, f"openapi/{name}", abs_src_path=str(swagger / name)) for name in SWAGGER_FILES),
        File.generated(config, "assets/bench-latest.png", abs_src_path=str(BENCH_CHART)),
    ]


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for file in generated_files(config):
        files.append(file)
    return files
