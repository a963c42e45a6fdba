"""The README's example of the Python client, run as it stands against a
served app (``sessionstore serve``), so that it cannot fall behind the client."""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
import sys
from pathlib import Path

from .conftest import serve_process, stop_process

README = Path(__file__).resolve().parent.parent / "README.md"
SECRET = "readme-example-secret"


def example() -> str:
    text = README.read_text()
    section = text.split("\n## Python client\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the Python client section has one example"
    return str(blocks[0])


def test_the_readme_example_runs(tmp_path: Path) -> None:
    code = example()
    assert code.count('"http://127.0.0.1:8080"') == 1 and code.count('"<key>"') == 1
    auth = tmp_path / "auth.toml"
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    auth.write_text(f'[[keys]]\nid = "readme"\ntenant = "acme"\nsha256 = "{digest}"\nscopes = ["read", "write"]\n')
    process, url = serve_process("--auth-file", str(auth))
    try:
        run = subprocess.run(
            [sys.executable, "-c", code.replace("http://127.0.0.1:8080", url).replace("<key>", SECRET)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=README.parent,
        )
    finally:
        stop_process(process)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == '412 the session is at version 2 (ETag "2"), not one If-Match names'
    assert ast.literal_eval(lines[1]) == {"cart": {"items": 2, "coupon": "SPRING"}, "visits": 1, "turns": ["hello"]}
    assert lines[2:] == ["['conv-42']", "ChangeEvent(version=5, changed=['agent'], deleted=[])"]
    # and what the example says it prints is what it prints
    for printed in lines[:1] + lines[2:]:
        assert f"# {printed}" in code or f": {printed}" in code, printed
