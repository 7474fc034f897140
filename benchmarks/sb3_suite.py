"""Run Stable-Baselines3's own test suite on JEPADreamer (issue 13, item 5).

SB3's tests are not copied into this repository: they are taken, unmodified, from the sdist of the installed SB3
version (downloaded once with ``pip download`` into a cache folder, so the first run needs PyPI), and run under pytest
with `benchmarks.sb3_suite_plugin`, which adds JEPADreamer to their algorithm parametrizations and keeps only those
cases. One pytest process per module; prints (and with ``--markdown`` writes) a table of the outcomes.

    python -m benchmarks.sb3_suite                                   # every module of SB3's tests/
    python -m benchmarks.sb3_suite --tests test_save_load,test_predict -k "not cuda"
    python -m benchmarks.sb3_suite --sb3-tests path/to/stable_baselines3-X.Y.Z  # an extracted sdist: no network

SB3's test_logger and test_monitor import pandas (``pip install pandas``). Results: docs/SB3_SUITE.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from importlib.metadata import version

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "wm-agent" / "sb3"


def sb3_tests(cache: pathlib.Path, sb3_version: str) -> pathlib.Path:
    """The folder holding SB3's ``tests/`` and its ``pyproject.toml`` (pytest settings) for `sb3_version`,
    downloaded (sdist, ``pip download --no-binary``) and extracted into `cache` unless already there."""
    root = cache / f"stable_baselines3-{sb3_version}"
    if (root / "tests").is_dir() and (root / "pyproject.toml").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"stable-baselines3=={sb3_version}", "--no-deps",
             "--no-binary", ":all:", "-q", "-d", download],
            check=True,
        )  # fmt: skip
        sdists = list(pathlib.Path(download).glob("stable_baselines3-*.tar.gz"))
        if len(sdists) != 1:
            raise RuntimeError(f"pip download left {sdists} in {download}: expected one stable_baselines3 sdist")
        prefix = f"stable_baselines3-{sb3_version}/"
        wanted = (prefix + "tests/", prefix + "pyproject.toml", prefix + "LICENSE", prefix + "NOTICE")
        with tarfile.open(sdists[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(wanted)]
            archive.extractall(cache, members=members, filter="data")
    if not (root / "tests").is_dir():
        raise RuntimeError(f"The stable-baselines3 {sb3_version} sdist has no tests/ folder")
    return root


def run_module(root: pathlib.Path, module: str, keyword: str | None, verbose: bool) -> dict:
    """Run one SB3 test module with the plugin; the plugin's report, with the wall time and pytest's exit code."""
    with tempfile.TemporaryDirectory() as scratch:
        report_path = pathlib.Path(scratch) / "report.json"
        env = {
            **os.environ,
            "WM_AGENT_SB3_SUITE_REPORT": str(report_path),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        command = [
            sys.executable, "-m", "pytest", str(root / "tests" / f"{module}.py"),
            "-c", str(root / "pyproject.toml"), "--rootdir", str(root),
            "-p", "benchmarks.sb3_suite_plugin", "-p", "no:cacheprovider", "-rfE", "-q" if not verbose else "-v",
        ]  # fmt: skip
        if keyword:
            command += ["-k", keyword]
        start = time.perf_counter()
        result = subprocess.run(command, env=env, cwd=scratch)
        seconds = time.perf_counter() - start
        report = json.loads(report_path.read_text()) if report_path.exists() else {"outcomes": {}, "deselected": {}}
    report.update(module=module, seconds=seconds, exit_code=result.returncode)
    return report


def table(reports: list[dict]) -> str:
    """A markdown table: per module, the JEPADreamer cases passed, failed, skipped by SB3's test, xfailed (known
    differences; an xpassed one is counted there too and listed below), deselected."""
    lines = [
        "| SB3 module | passed | failed | skipped (by the test) | known differences (xfail) "
        "| deselected (not applicable) | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    total: Counter = Counter()
    for report in reports:
        counts = Counter(report["outcomes"].values())
        counts["failed"] += counts.pop("error", 0)
        counts["xfailed"] += counts.pop("xpassed", 0)
        counts["deselected"] = len(report["deselected"])
        if not report["outcomes"] and not report["deselected"]:
            lines.append(f"| {report['module']} | no algorithm parametrization | | | | | {report['seconds']:.0f} |")
            continue
        total.update(counts)
        total["seconds"] += report["seconds"]
        lines.append(
            f"| {report['module']} | {counts['passed']} | {counts['failed']} | {counts['skipped']} | "
            f"{counts['xfailed']} | {counts['deselected']} | {report['seconds']:.0f} |"
        )
    lines.append(
        f"| **total** | **{total['passed']}** | **{total['failed']}** | **{total['skipped']}** | "
        f"**{total['xfailed']}** | **{total['deselected']}** | **{total['seconds']:.0f}** |"
    )
    return "\n".join(lines)


def details(reports: list[dict]) -> str:
    """Every JEPADreamer case that did not pass (a known difference with its reason), and every deselected one with
    its reason."""
    lines = []
    for report in reports:
        known = report.get("known_differences", {})
        for nodeid, outcome in sorted(report["outcomes"].items()):
            if outcome != "passed":
                why = f": {known[nodeid]}" if nodeid in known else ""
                lines.append(f"- {outcome}: `{nodeid.split('tests/')[-1]}`{why}")
        for nodeid, reason in sorted(report["deselected"].items()):
            lines.append(f"- deselected: `{nodeid.split('tests/')[-1]}`: {reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", help="comma-separated SB3 test modules (default: all of SB3's tests/)")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression, passed to every module")
    parser.add_argument("--cache", type=pathlib.Path, default=DEFAULT_CACHE, help="where the sdist is extracted")
    parser.add_argument("--sb3-tests", type=pathlib.Path, help="an extracted SB3 source folder (with tests/)")
    parser.add_argument("--markdown", type=pathlib.Path, help="also write the result table to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="pytest -v")
    args = parser.parse_args(argv)
    sb3_version = version("stable-baselines3")
    if importlib.util.find_spec("pandas") is None:
        print("SB3's test_logger and test_monitor import pandas: `pip install pandas` to run them", file=sys.stderr)
    root = args.sb3_tests.resolve() if args.sb3_tests else sb3_tests(args.cache, sb3_version)
    if args.tests:
        modules = [m.strip().removesuffix(".py") for m in args.tests.split(",")]
    else:
        modules = sorted(p.stem for p in (root / "tests").glob("test_*.py"))
    reports = [run_module(root, module, args.keyword, args.verbose) for module in modules]
    header = (
        f"SB3 {sb3_version}'s tests on JEPADreamer, {time.strftime('%Y-%m-%d')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {version('torch')}, "
        f"gymnasium {version('gymnasium')}"
    )
    text = f"{header}\n\n{table(reports)}\n\n{details(reports)}\n"
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text)
    failed = any(outcome in ("failed", "error") for report in reports for outcome in report["outcomes"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
