"""Benchmark collection and reporting for ``pytest benchmarks/ --benchmark-only``.

The project's pytest config collects ``tests/`` only and ``test_*.py`` files; this conftest
collects the kernel benchmark files ``bench_kernels_*.py`` when ``benchmarks/`` is named on
the command line, without touching pyproject.toml.

``--kernels-table=PATH`` (with ``--benchmark-json``) writes a markdown table comparing each
twin with the NumPy reference: best (min) time, speed-up, bytes moved per call and GB/s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_kernels_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kernels-table",
        default=None,
        metavar="PATH",
        help="write a markdown table of kernel twins against their references (needs --benchmark-json)",
    )


def _table(benchmarks: list[dict]) -> str:
    rows: dict[tuple[str, int], dict[str, dict]] = {}
    for b in benchmarks:
        info = b.get("extra_info", {})
        if "op" not in info:
            continue
        rows.setdefault((info["op"], info["n"]), {})[info["backend"]] = b
    lines = [
        "| op | N | numpy min (ms) | numba min (ms) | speed-up | bytes/call | numpy GB/s | numba GB/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (op, n), by in sorted(rows.items()):
        if "numpy" not in by or "numba" not in by:
            continue
        t_ref = by["numpy"]["stats"]["min"]
        t_nb = by["numba"]["stats"]["min"]
        nbytes = by["numba"]["extra_info"]["bytes"]
        lines.append(
            f"| {op} | {n:.0e} | {t_ref * 1e3:.2f} | {t_nb * 1e3:.2f} | {t_ref / t_nb:.1f}x "
            f"| {nbytes / 1e6:.0f} MB | {nbytes / t_ref / 1e9:.1f} | {nbytes / t_nb / 1e9:.1f} |"
        )
    return "\n".join(lines) + "\n"


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    path = config.getoption("--kernels-table")
    if not path:
        return
    Path(path).write_text(_table(output_json["benchmarks"]))
    print(f"\nkernel table written to {path}", file=sys.stderr)
