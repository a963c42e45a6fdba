"""Each Lua script's documented ARGV (its header comment) and the Python
codec that builds it (service/store/calls.py) name the same arguments in
the same order; and lua/lib.lua's metadata layout is the one record.py reads."""

from __future__ import annotations

import re

import pytest

from service.store import calls, record
from service.store.scripts import lua_dir


def documented_argv(script: str) -> list[int]:
    """The numbers of a script's single ARGV arguments, as its header gives them ('N..' tails left out)."""
    header = []
    for line in (lua_dir() / f"{script}.lua").read_text(encoding="utf-8").splitlines():
        if not line.startswith("--"):
            break
        header.append(line[2:])
    text = " ".join(header)
    argv = text[text.index("ARGV:") :]
    argv = argv[: argv.index("Returns")] if "Returns" in argv else argv
    # "12.. the changes" is a tail; "1 now (ms), 2 session id, ..." are the single ones
    singles = [int(n) for n in re.findall(r"[:,]\s+(\d+)\s+(?=[A-Za-z'(])", argv)]
    return sorted(set(singles))


@pytest.mark.parametrize("codec", calls.CODECS, ids=lambda c: c.SCRIPT)
def test_each_codec_has_the_scripts_arguments_in_order(codec: type[calls.Argv]) -> None:
    numbers = documented_argv(codec.SCRIPT)
    assert numbers == list(range(1, len(numbers) + 1)), f"lua/{codec.SCRIPT}.lua: ARGV numbered {numbers}"
    assert len(codec.arguments()) == len(numbers), (codec.SCRIPT, codec.arguments(), numbers)


def test_every_script_has_a_codec() -> None:
    scripts = {p.stem for p in lua_dir().glob("*.lua")} - {"lib"}
    assert scripts == {codec.SCRIPT for codec in calls.CODECS}


def test_metadata_layout_of_lib_lua_is_the_one_record_reads() -> None:
    source = (lua_dir() / "lib.lua").read_text(encoding="utf-8")
    found = re.search(r"local META_NAMES = \{([^}]*)\}", source)
    assert found is not None
    assert tuple(re.findall(r"'(\w+)'", found.group(1))) == record.META_NAMES


def test_args_are_in_field_order() -> None:
    args = calls.SessionDelete(1, "s", "", "p", "").args()
    assert args == [1, "s", "", "p", ""]
    assert calls.CustomerTouch(1, 2, 3).args("m") == [1, 2, 3, "m"]
