"""The run's report: the tables printed (Markdown, so they paste into
docs/benchmark.md as they are), the targets of issues 6 and 13 with PASS/MISS,
the JSON under bench/results/ and the PNG chart.

Everything here works on plain dicts (the JSON document), so that it can be
tested without running anything.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .machine import one_line

# Targets of issue 6 (one worker each, ratios from one run).
READ_RATIO = 0.75
WRITE_RATIO = 0.55
MIX_RATIO = 0.65
P99_OVER_P50 = 3.0
CLUSTER_RATIO = 0.8  # LivePerson GET on a 3-primary Redis Cluster / on one Redis, same run, same server
MEMORY_RATIO = 1.3
SCALING_TOLERANCE = 0.10
NOISY_CORES = 0.3  # other load during a measured run above this: it is measured again
ERROR_SHARE = 0.01  # a scenario with more errors than this misses its targets, whatever its speed

GROUP_TARGETS = {"read": READ_RATIO, "write": WRITE_RATIO, "mix": MIX_RATIO}


def scenario(name: str, label: str, group: str, wrk: dict[str, Any] | None = None, *, yardstick_rps: float | None = None,
             skipped: str | None = None, server: str = "uvicorn", **extra: Any) -> dict[str, Any]:
    """One scenario's record: ``wrk`` is WrkResult.to_json(); ``skipped`` the reason it did not run;
    ``server`` the HTTP server it ran on (uvicorn or granian)."""
    record: dict[str, Any] = {"name": name, "label": label, "group": group, "server": server}
    if skipped is not None or wrk is None:
        record.update(status="skipped", reason=skipped or "not run")
        return record
    record.update(status="ok", **wrk)
    if yardstick_rps:
        record["ratio"] = round(wrk["rps"] / yardstick_rps, 3)
    requests = wrk.get("requests", 0)
    errors = sum(wrk.get("errors", {}).values())
    record["error_share"] = round(errors / requests, 4) if requests else (1.0 if errors else 0.0)
    record.update(extra)
    return record


def server_of(record: dict[str, Any]) -> str:
    return str(record.get("server", "uvicorn"))


def apply_reference(doc: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Every ratio against the reference yardstick of the server it ran on:
    of that server's yardstick runs, the one the rest of the machine
    disturbed least (then the faster); and, when uvicorn's yardstick ran,
    to that one too (``ratio_to_uvicorn_yardstick``). The first server's
    reference is the document's ``yardstick_rps``."""
    yardsticks = [r for r in records if r["group"] == "yardstick" and r["status"] == "ok"]
    if not yardsticks:
        return
    references: dict[str, dict[str, Any]] = {}
    for server in dict.fromkeys(server_of(r) for r in yardsticks):
        runs = [r for r in yardsticks if server_of(r) == server]
        references[server] = min(runs, key=lambda r: (r.get("other_load_cores", 0.0), -r["rps"]))
    primary = next(iter(references.values()))
    uvicorn = references.get("uvicorn")
    doc["yardstick_rps"] = primary["rps"]
    doc["yardstick"] = {"reference": primary["name"], **{r["name"]: {"rps": r["rps"], "other_load_cores": r.get("other_load_cores")}
                                                         for r in yardsticks}}
    doc["servers"] = {server: {"reference": r["name"], "yardstick_rps": r["rps"],
                               **({"yardstick_over_uvicorn": round(r["rps"] / uvicorn["rps"], 3)} if uvicorn else {})}
                      for server, r in references.items()}
    for r in records:
        if r["status"] != "ok":
            continue
        r["ratio"] = round(r["rps"] / references.get(server_of(r), primary)["rps"], 3)
        if uvicorn is not None:
            r["ratio_to_uvicorn_yardstick"] = round(r["rps"] / uvicorn["rps"], 3)
        if r["group"] == "yardstick":
            r["reference"] = any(r is reference for reference in references.values())
    doc["scenarios"] = records


def cluster_figure(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """LivePerson GET on the Redis Cluster against LivePerson GET on one
    Redis, both served by the same server in the same run."""
    found = next((r for r in records if r["group"] == "cluster"), None)
    if found is None or found["status"] != "ok":
        return {"status": "skipped", "reason": found.get("reason", "not run") if found else "not run"}
    single = next((r for r in records if r.get("scenario") == "lp-get" and server_of(r) == server_of(found)), None)
    if single is None or single["status"] != "ok":
        return {"status": "skipped", "reason": "no LivePerson GET on one Redis to compare with"}
    figure: dict[str, Any] = {
        "status": "ok", "server": server_of(found), "primaries": found.get("primaries"),
        "single": single["name"], "cluster": found["name"],
        "single_rps": single["rps"], "cluster_rps": found["rps"], "ratio": round(found["rps"] / single["rps"], 3),
        "target": CLUSTER_RATIO,
    }
    for side, r in (("single", single), ("cluster", found)):
        for field in ("server_cpu_us_per_request", "redis_cpu_us_per_request"):
            if field in r:
                figure[f"{side}_{field}"] = r[field]
    return figure


def _fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_ms(value: float) -> str:
    return f"{value:.2f}"


def _errors(record: dict[str, Any]) -> str:
    count = sum(record.get("errors", {}).values())
    if not count:
        return "0"
    return f"{count:,} ({record.get('error_share', 0) * 100:.1f} %)"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A Markdown table; ``align`` one letter per column, l or r."""
    align = align or "l" * len(header)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, width, a in zip(cells, widths, align, strict=True):
            out.append(str(cell).rjust(width) if a == "r" else str(cell).ljust(width))
        return "| " + " | ".join(out) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if a == "r" else "-" * w for w, a in zip(widths, align, strict=True)) + " |"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def is_reference(record: dict[str, Any]) -> bool:
    """A reference yardstick (of its server): marked so, or, in a document of
    one server, the one whose ratio is 1."""
    if "reference" in record:
        return bool(record["reference"])
    return record["group"] == "yardstick" and record.get("ratio") == 1.0


def doc_reference(records: Sequence[dict[str, Any]]) -> str | None:
    """The name of the first reference yardstick."""
    for r in records:
        if r["group"] == "yardstick" and is_reference(r):
            return str(r["name"])
    return None


def _fmt_cpu(record: dict[str, Any]) -> str:
    value = record.get("server_cpu_us_per_request")
    return "—" if value is None else f"{value:,.0f}"


def scenario_table(records: Sequence[dict[str, Any]]) -> str:
    """Every scenario; with more than one server, which server served it and
    its ratio to uvicorn's yardstick too."""
    servers = len({server_of(r) for r in records}) > 1
    rows = []
    for r in records:
        head = [r["label"], server_of(r)] if servers else [r["label"]]
        if r["status"] != "ok":
            rows.append([*head, "—", "—", "—", "—", *(["—"] if servers else []), "—", f"skipped: {r.get('reason', '')}", "—"])
            continue
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "—"
        if is_reference(r):
            ratio += " (reference)"
        to_uvicorn = [f"{r['ratio_to_uvicorn_yardstick']:.2f}" if "ratio_to_uvicorn_yardstick" in r else "—"] if servers else []
        other = f"{r['other_load_cores']:.2f}" if "other_load_cores" in r else "—"
        rows.append([*head, _fmt_rps(r["rps"]), _fmt_ms(r["p50_ms"]), _fmt_ms(r["p99_ms"]), ratio, *to_uvicorn, _fmt_cpu(r),
                     _errors(r), other])
    header = ["scenario", *(["server"] if servers else []), "requests/s", "p50 ms", "p99 ms",
              "ratio to yardstick" + (" (same server)" if servers else ""), *(["ratio to uvicorn yardstick"] if servers else []),
              "server CPU µs/request", "errors", "other load (cores)"]
    return markdown_table(header, rows, ("ll" if servers else "l") + "rrrr" + ("r" if servers else "") + "rlr")


def other_table(doc: dict[str, Any]) -> str:
    """Memory, reads against the number of stored sessions, namespace deletes."""
    rows: list[list[str]] = []
    cluster = doc.get("cluster")
    if cluster:
        figure = "LivePerson GET on a 3-primary Redis Cluster vs on one Redis (same run, same server)"
        if cluster.get("status") == "ok":
            text = (f"{_fmt_rps(cluster['cluster_rps'])} vs {_fmt_rps(cluster['single_rps'])} requests/s = "
                    f"{cluster['ratio']:.2f} ×")
            if "cluster_server_cpu_us_per_request" in cluster and "single_server_cpu_us_per_request" in cluster:
                text += (f"; server CPU {cluster['cluster_server_cpu_us_per_request']:,.0f} vs "
                         f"{cluster['single_server_cpu_us_per_request']:,.0f} µs/request")
            rows.append([figure.replace("server)", f"server: {cluster['server']})"), text])
        else:
            rows.append([figure, f"skipped: {cluster.get('reason', '')}"])
    for server, entry in (doc.get("servers") or {}).items():
        if server != "uvicorn" and "yardstick_over_uvicorn" in entry:
            uvicorn_rps = doc["servers"]["uvicorn"]["yardstick_rps"]
            text = (f"{_fmt_rps(entry['yardstick_rps'])} vs {_fmt_rps(uvicorn_rps)} requests/s = "
                    f"{entry['yardstick_over_uvicorn']:.2f} ×")
            rows.append([f"yardstick on {server} / on uvicorn", text])
    memory = doc.get("memory")
    if memory:
        rows.append(["Redis memory of one session, 10 short properties (MEMORY USAGE)",
                     f"{memory['session_bytes']} B vs bare HSET {memory['bare_bytes']} B = {memory['ratio']:.2f} ×"])
        amortised = memory.get("amortised")
        if amortised:
            rows.append([f"used_memory per session, {amortised['sessions']:,} sessions (with the indexes)",
                         f"{amortised['session_bytes']:.0f} B vs bare HSET {amortised['bare_bytes']:.0f} B = {amortised['ratio']:.2f} ×"])
    scaling = doc.get("scaling")
    if scaling:
        if scaling.get("status") == "ok":
            text = f"{_fmt_rps(scaling['small_rps'])} vs {_fmt_rps(scaling['large_rps'])} requests/s = {scaling['ratio']:.2f} ×"
            rows.append([f"LivePerson GET at {scaling['small']:,} vs at {scaling['large']:,} stored sessions", text])
        else:
            rows.append(["reads at many stored sessions", f"skipped: {scaling.get('reason', '')}"])
    for entry in doc.get("namespace_delete", []):
        rows.append([f"DELETE namespace of {entry['sessions']:,} sessions (median of {len(entry['times_ms'])})",
                     f"{entry['median_ms']:.2f} ms (min {min(entry['times_ms']):.2f}, max {max(entry['times_ms']):.2f})"])
    if not rows:
        return ""
    return markdown_table(["figure", "measured"], rows)


def _result(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def evaluate_targets(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Each target of issue 6 with the measured figure: PASS, MISS or skipped."""
    out: list[dict[str, str]] = []
    # the targets are the first server's (the default one, uvicorn, unless the run left it out)
    servers = doc.get("settings", {}).get("servers") or ["uvicorn"]
    records = [r for r in doc.get("scenarios", []) if server_of(r) == servers[0]]
    for r in records:
        target = GROUP_TARGETS.get(r["group"])
        if target is None:
            continue
        figure = f"{r['label']}: ratio to the yardstick"
        if r["status"] != "ok" or "ratio" not in r:
            out.append({"figure": figure, "target": f"≥ {target:.2f}", "measured": "—", "result": "skipped"})
            continue
        ok = r["ratio"] >= target and r.get("error_share", 0) <= ERROR_SHARE
        measured = f"{r['ratio']:.2f}"
        if r.get("error_share", 0) > ERROR_SHARE:
            measured += f" ({r['error_share'] * 100:.1f} % errors)"
        out.append({"figure": figure, "target": f"≥ {target:.2f}", "measured": measured, "result": _result(ok)})
    for r in records:
        if r["group"] != "read":
            continue
        figure = f"{r['label']}: p99 / p50"
        if r["status"] != "ok":
            out.append({"figure": figure, "target": f"≤ {P99_OVER_P50:.0f}", "measured": "—", "result": "skipped"})
            continue
        spread = r["p99_ms"] / r["p50_ms"] if r["p50_ms"] else float("inf")
        out.append({"figure": figure, "target": f"≤ {P99_OVER_P50:.0f}", "measured": f"{spread:.2f}",
                    "result": _result(spread <= P99_OVER_P50)})
    cluster = doc.get("cluster")
    if cluster:
        figure = "LivePerson GET on a 3-primary Redis Cluster / on one Redis"
        wanted = f"≥ {CLUSTER_RATIO:.2f}"
        if cluster.get("status") == "ok":
            out.append({"figure": figure, "target": wanted, "measured": f"{cluster['ratio']:.2f}",
                        "result": _result(cluster["ratio"] >= CLUSTER_RATIO)})
        else:
            out.append({"figure": figure, "target": wanted, "measured": "—", "result": "skipped"})
    memory = doc.get("memory")
    if memory:
        out.append({"figure": "Redis memory per session / bare HSET", "target": f"≤ {MEMORY_RATIO}",
                    "measured": f"{memory['ratio']:.2f}", "result": _result(memory["ratio"] <= MEMORY_RATIO)})
    scaling = doc.get("scaling")
    if scaling:
        figure = "reads at 1,000,000 sessions / reads at 1,000"
        if scaling.get("status") == "ok":
            ok = abs(scaling["ratio"] - 1.0) <= SCALING_TOLERANCE
            out.append({"figure": figure.replace("1,000,000", f"{scaling['large']:,}").replace("at 1,000", f"at {scaling['small']:,}"),
                        "target": f"{1 - SCALING_TOLERANCE:.2f} to {1 + SCALING_TOLERANCE:.2f}",
                        "measured": f"{scaling['ratio']:.2f}", "result": _result(ok)})
        else:
            out.append({"figure": figure, "target": "0.90 to 1.10", "measured": "—", "result": "skipped"})
    return out


def targets_table(targets: Sequence[dict[str, str]]) -> str:
    return markdown_table(["target", "wanted", "measured", "result"],
                          [[t["figure"], t["target"], t["measured"], t["result"]] for t in targets])


def render(doc: dict[str, Any]) -> str:
    """The whole printed report."""
    noisy = doc["settings"].get("retries_when_noisy") or {"max": 0, "above_other_load_cores": NOISY_CORES}
    servers = doc["settings"].get("servers") or ["uvicorn"]
    parts = [
        f"Machine: {one_line(doc['machine'])} (load average at start {', '.join(map(str, doc['machine'].get('load_average_at_start', [])))})",
        (
            f"wrk -t{doc['settings']['wrk_threads']} -c{doc['settings']['connections']}, "
            f"{doc['settings']['duration_s']:g} s per scenario after a {doc['settings']['warmup_s']:g} s warm-up; "
            + servers_line(servers)
        ),
        "",
        scenario_table(doc["scenarios"]),
        "",
        (
            "Ratios are to the reference yardstick" + (" of the same server" if len(servers) > 1 else "")
            + ", the one of the two that other work on the machine disturbed least. "
            "other load: cores kept busy by anything but this benchmark (other jobs, the hypervisor) during the measured "
            f"run; a run with more than {noisy['above_other_load_cores']} is measured again, up to {noisy['max']} times, "
            "and the quietest run is kept. server CPU: user + system CPU of the server's processes (its workers "
            "included) per request completed."
        ),
    ]
    other = other_table(doc)
    if other:
        parts += ["", other]
    targets = doc.get("targets") or evaluate_targets(doc)
    if targets:
        parts += ["", targets_table(targets)]
    return "\n".join(parts)


def servers_line(servers: Sequence[str]) -> str:
    parts = {"uvicorn": "uvicorn (uvloop + httptools)", "granian": "granian (ASGI, uvloop, HTTP/1)"}
    return ("one worker of " + " and of ".join(parts.get(s, s) for s in servers)
            + ", for the service and the yardstick alike")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# -- files ---------------------------------------------------------------------


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


GROUP_COLOURS = {"yardstick": "#888888", "read": "#2b7bba", "write": "#e08a1e", "mix": "#5a9e4b", "scaling": "#7a5195",
                 "cluster": "#1b9e9e"}


def draw_chart(doc: dict[str, Any], path: Path) -> None:
    """Two panels: requests/s as a ratio to the yardstick, with each target;
    p50 and p99 latency. Needs matplotlib (the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = list(doc["scenarios"])
    labels = [r["label"] for r in records]
    y = list(range(len(records)))[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.55 * len(records) + 2.2), sharey=True,
                                      gridspec_kw={"width_ratios": [3, 2]})
    for yi, r in zip(y, records, strict=True):
        colour = GROUP_COLOURS.get(r["group"], "#444444")
        if r["status"] != "ok":
            left.text(0.02, yi, "skipped: " + r.get("reason", ""), va="center", fontsize=8, color="#777777")
            continue
        ratio = r.get("ratio", 0.0)
        hatch = None if server_of(r) == "uvicorn" else "//"  # granian's bars are hatched
        left.barh(yi, ratio, color=colour, height=0.6, hatch=hatch)
        left.text(ratio + 0.01, yi, f"{ratio:.2f}  ({r['rps']:,.0f}/s)", va="center", fontsize=8)
        target = GROUP_TARGETS.get(r["group"])
        if target is not None:
            left.plot([target, target], [yi - 0.38, yi + 0.38], color="#c0392b", linewidth=2)
        right.barh(yi + 0.17, r["p50_ms"], color=colour, height=0.32, alpha=0.55)
        right.barh(yi - 0.17, r["p99_ms"], color=colour, height=0.32)
        right.text(r["p99_ms"], yi - 0.17, f" {r['p99_ms']:.1f}", va="center", fontsize=7)
        right.text(r["p50_ms"], yi + 0.17, f" {r['p50_ms']:.1f}", va="center", fontsize=7)
    left.set_yticks(y)
    left.set_yticklabels(labels, fontsize=9)
    left.set_xlim(0, max(1.25, *(r.get("ratio", 0) + 0.3 for r in records if r["status"] == "ok")))
    left.set_xlabel("requests/s as a ratio to the yardstick of the same server (red: the target; hatched: granian)")
    slowest = max((r["p99_ms"] for r in records if r["status"] == "ok"), default=1.0)
    right.set_xlim(0, slowest * 1.15)
    right.set_xlabel("latency, ms (light: p50, dark: p99)")
    settings = doc["settings"]
    fig.suptitle(f"sessionstore benchmark, {doc['started_utc']}: wrk -t{settings['wrk_threads']} -c{settings['connections']}, "
                 f"{settings['duration_s']:g} s each, one worker of {' and '.join(settings.get('servers') or ['uvicorn'])}",
                 fontsize=11)
    fig.text(0.01, 0.01, one_line(doc["machine"]) + f"; git {doc['machine'].get('git', '?')}", fontsize=8, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
