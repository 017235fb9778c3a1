#!/usr/bin/env python3
"""Acceptance run: compile 26 real C files through gomaproxy and compare with local gcc.

Steps:
  1. Fetch the zstandard and lz4 sdists (see fetch_samples.py and samples.py).
  2. Compile every file locally with gcc.
  3. Start ``gomaproxy serve`` on 127.0.0.1 with a free port and a fresh state dir.
  4. Compile every file through ``gomaproxy cc`` and compare the sha256 of each
     object with the local one.
  5. Delete the proxy's objects and compile again. Every report must show a cache
     hit, and the server's ``gomaproxy_local_actions_executed_total`` must not grow.
  6. Compile a source with errors through the proxy. The exit status and the stderr
     bytes must match local gcc.

Each ``gomaproxy cc`` runs with GOMAPROXY_CLIENT_STATE_DIR in the work directory, so
the client starts without a known-files cache. The server is always stopped at the
end, by PID. The exit status is 0 only when every check passed.

``--local-only`` runs steps 1 and 2 twice instead, prints each object's sha256 and
checks that both local builds are identical.

Usage: python scripts/accept_main.py [--local-only] [--jobs N] [--keep-work-dir]
"""

# ruff: noqa: T201 (a command-line script reports to the user with print)

from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from fetch_samples import DEFAULT_CACHE_DIR, FetchError, fetch_samples
from samples import BASE_FLAGS, SampleCompile, SampleListError, build_sample_compiles

LOCAL_ACTIONS_METRIC = "gomaproxy_local_actions_executed_total"
CLIENT_STATE_DIR_ENV = "GOMAPROXY_CLIENT_STATE_DIR"
SERVER_HOST = "127.0.0.1"
LOG_TAIL_LINES = 40
OUTPUT_TAIL_LINES = 20

# An undeclared identifier and a missing semicolon, in separate functions so that gcc
# reports both. gcc exits with status 1.
BROKEN_SOURCE_NAME = "broken.c"
BROKEN_SOURCE = """\
int scale(int value)
{
    return value * undeclared_factor;
}

int answer(void)
{
    int value = 6 * 7
    return scale(value);
}
"""

T = TypeVar("T")
R = TypeVar("R")


class AcceptanceError(Exception):
    """A step could not run at all, for example because the server did not start."""


# ---------------------------------------------------------------------------
# Running commands


@dataclass
class CommandResult:
    args: list[str]
    cwd: Path
    returncode: int | None  # None when the command timed out
    stdout: bytes
    stderr: bytes

    def describe_failure(self) -> str:
        if self.returncode is None:
            status = "timed out"
        else:
            status = f"exit status {self.returncode}"
        return (
            f"{shlex.join(self.args)} (cwd {self.cwd}): {status}\n"
            f"stdout:\n{tail_text(self.stdout)}\nstderr:\n{tail_text(self.stderr)}"
        )


def tail_text(data: bytes, line_count: int = OUTPUT_TAIL_LINES) -> str:
    lines = data.decode(errors="replace").rstrip().splitlines()
    return "\n".join(f"    {line}" for line in lines[-line_count:])


def run_command(
    args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None
) -> CommandResult:
    """Run ``args`` in ``cwd`` and capture its output. A timeout kills the command.

    ``env`` replaces the environment. None keeps this process's environment.
    """
    try:
        completed = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        return CommandResult(args, cwd, None, error.stdout or b"", error.stderr or b"")
    return CommandResult(args, cwd, completed.returncode, completed.stdout, completed.stderr)


def run_parallel(function: Callable[[T], R], items: Sequence[T], jobs: int) -> list[R]:
    """Apply ``function`` to ``items`` on ``jobs`` threads and return results in order."""
    with ThreadPoolExecutor(max_workers=jobs) as executor:
        return list(executor.map(function, items))


@contextmanager
def timed_step(title: str, timings: list[tuple[str, float]]) -> Iterator[None]:
    """Print the step's title, then its wall time when it ends, and append that to ``timings``."""
    print(f"== {title}", flush=True)
    start = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - start
        timings.append((title, elapsed))
        print(f"   ({title}: {elapsed:.1f} s)", flush=True)


def sha256_file(path: Path) -> str | None:
    """Return the hex sha256 of ``path``, or None when the file does not exist."""
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------
# Compiles


@dataclass
class CompileOutcome:
    """Result of one compile: the command, its output and the object's sha256."""

    compile: SampleCompile
    result: CommandResult
    object_path: Path
    sha256: str | None
    report_path: Path | None = None

    @property
    def name(self) -> str:
        return self.compile.name

    @property
    def succeeded(self) -> bool:
        return self.result.returncode == 0 and self.sha256 is not None


@dataclass
class CompileSettings:
    """How to run the compiles: the gcc and gomaproxy commands, timeouts, concurrency."""

    compiler: str
    jobs: int
    timeout: float
    gomaproxy_command: list[str] = field(default_factory=list)
    server_url: str = ""
    client_state_dir: Path | None = None

    def proxy_cc_args(self, report_path: Path, compiler_args: list[str]) -> list[str]:
        """Return the ``gomaproxy cc`` command line that runs ``compiler_args``."""
        return [
            *self.gomaproxy_command, "cc",
            "--server", self.server_url,
            "--report", str(report_path),
            "--", *compiler_args,
        ]  # fmt: skip

    def local_env(self) -> dict[str, str]:
        """Return the environment of local gcc runs: this process's, in the C locale.

        goma clients forward no locale variables, so the remote gcc always writes its
        messages in the C locale; the local compile must too for stderr to compare.
        """
        return {**os.environ, "LC_ALL": "C"}

    def proxy_env(self) -> dict[str, str]:
        """Return the environment for ``gomaproxy cc``: the local one with the client
        state directory moved into the work directory, so that each run starts with an
        empty known-files cache and leaves ~/.cache alone."""
        env = self.local_env()
        if self.client_state_dir is not None:
            env[CLIENT_STATE_DIR_ENV] = str(self.client_state_dir)
        return env


def compile_locally(
    compile_: SampleCompile, object_dir: Path, settings: CompileSettings
) -> CompileOutcome:
    object_path = object_dir / f"{compile_.name}.o"
    args = compile_.gcc_args(object_path, settings.compiler)
    result = run_command(args, compile_.sdist_root, settings.timeout, settings.local_env())
    return CompileOutcome(compile_, result, object_path, sha256_file(object_path))


def compile_through_proxy(
    compile_: SampleCompile, object_dir: Path, report_dir: Path, settings: CompileSettings
) -> CompileOutcome:
    object_path = object_dir / f"{compile_.name}.o"
    report_path = report_dir / f"{compile_.name}.json"
    args = settings.proxy_cc_args(report_path, compile_.gcc_args(object_path, settings.compiler))
    result = run_command(args, compile_.sdist_root, settings.timeout, settings.proxy_env())
    return CompileOutcome(compile_, result, object_path, sha256_file(object_path), report_path)


def compile_all_locally(
    compiles: list[SampleCompile], object_dir: Path, settings: CompileSettings
) -> list[CompileOutcome]:
    object_dir.mkdir(parents=True, exist_ok=True)
    return run_parallel(
        lambda compile_: compile_locally(compile_, object_dir, settings), compiles, settings.jobs
    )


def compile_all_through_proxy(
    compiles: list[SampleCompile], object_dir: Path, report_dir: Path, settings: CompileSettings
) -> list[CompileOutcome]:
    object_dir.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    return run_parallel(
        lambda compile_: compile_through_proxy(compile_, object_dir, report_dir, settings),
        compiles,
        settings.jobs,
    )


def report_failed_compiles(outcomes: list[CompileOutcome], label: str) -> int:
    """Print every compile that failed or wrote no object, and return how many did."""
    failed = [outcome for outcome in outcomes if not outcome.succeeded]
    for outcome in failed:
        reason = "wrote no object" if outcome.result.returncode == 0 else "failed"
        print(f"{label} compile of {outcome.compile.source} {reason}:")
        print(outcome.result.describe_failure())
        if outcome.report_path is not None:
            report = load_report(outcome.report_path)
            print(f"report: {report if isinstance(report, str) else json.dumps(report)}")
    return len(failed)


def count_identical(local: list[CompileOutcome], other: list[CompileOutcome], label: str) -> int:
    """Print a line for each object whose sha256 differs from the local one.

    Returns the number of identical objects.
    """
    identical = 0
    for local_outcome, other_outcome in zip(local, other, strict=True):
        if local_outcome.sha256 is not None and local_outcome.sha256 == other_outcome.sha256:
            identical += 1
            continue
        print(
            f"MISMATCH {local_outcome.name} ({local_outcome.compile.source}): "
            f"local {local_outcome.sha256 or 'no object'}, "
            f"{label} {other_outcome.sha256 or 'no object'}"
        )
    return identical


# ---------------------------------------------------------------------------
# The gomaproxy server


def default_gomaproxy_command() -> list[str]:
    """Find the gomaproxy CLI: next to this Python, on PATH, or as an installed module."""
    beside_python = Path(sys.executable).parent / "gomaproxy"
    if beside_python.is_file():
        return [str(beside_python)]
    on_path = shutil.which("gomaproxy")
    if on_path is not None:
        return [on_path]
    if importlib.util.find_spec("gomaproxy") is not None:
        return [sys.executable, "-m", "gomaproxy.cli"]
    raise AcceptanceError(
        "the gomaproxy command was not found next to "
        f"{sys.executable}, on PATH or as an installed package. Install the repository "
        "as the README describes (pip install -e .) or pass --gomaproxy."
    )


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url`` and return the status and body. Proxy settings from the environment
    are ignored, because the server always listens on the loopback address."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class ServerProcess:
    """A ``gomaproxy serve`` subprocess on 127.0.0.1 with a free port."""

    def __init__(self, gomaproxy_command: list[str], work_dir: Path) -> None:
        self.port_file = work_dir / "port"
        self.state_dir = work_dir / "state"
        self.log_path = work_dir / "server.log"
        self.args = [
            *gomaproxy_command, "serve",
            "--host", SERVER_HOST,
            "--port", "0",
            "--port-file", str(self.port_file),
            "--state-dir", str(self.state_dir),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float) -> None:
        """Start the server and wait until ``GET /healthz`` returns 200.

        Raises AcceptanceError with the server log's last lines when the server exits
        or does not become healthy within ``timeout`` seconds.
        """
        print(f"   {shlex.join(self.args)}", flush=True)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        port = self.wait_for_port(deadline)
        self.url = f"http://{SERVER_HOST}:{port}"
        self.wait_for_health(deadline)
        print(f"   server PID {self.process.pid} is healthy at {self.url}", flush=True)

    def wait_for_port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            self.check_running()
            try:
                text = self.port_file.read_text().strip()
            except FileNotFoundError:
                text = ""
            if text.isdigit():
                return int(text)
            time.sleep(0.1)
        raise self.start_error(f"the server wrote no port number to {self.port_file}")

    def wait_for_health(self, deadline: float) -> None:
        last_error = "no response yet"
        while time.monotonic() < deadline:
            self.check_running()
            try:
                status, _ = http_get(f"{self.url}/healthz", timeout=2.0)
            except OSError as error:
                last_error = str(error)
            else:
                if status == 200:
                    return
                last_error = f"HTTP status {status}"
            time.sleep(0.2)
        raise self.start_error(f"GET {self.url}/healthz did not return 200 ({last_error})")

    def check_running(self) -> None:
        assert self.process is not None
        returncode = self.process.poll()
        if returncode is not None:
            raise self.start_error(f"the server exited with status {returncode} during start-up")

    def start_error(self, reason: str) -> AcceptanceError:
        return AcceptanceError(
            f"gomaproxy serve did not start: {reason}.\n"
            f"Command: {shlex.join(self.args)}\n"
            f"Last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, line_count: int = LOG_TAIL_LINES) -> str:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return "    (no log file)"
        return tail_text(data, line_count) or "    (empty)"

    def stop(self, grace_seconds: float) -> None:
        """Send SIGTERM to the server's PID, then SIGKILL after ``grace_seconds``."""
        if self.process is None or self.process.poll() is not None:
            return
        pid = self.process.pid
        os.kill(pid, signal.SIGTERM)
        try:
            returncode = self.process.wait(timeout=grace_seconds)
            print(f"   server PID {pid} stopped with status {returncode}", flush=True)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self.process.wait()
            print(f"   server PID {pid} ignored SIGTERM for {grace_seconds} s and was killed")

    def read_counter(self, name: str) -> float | None:
        """Return the sum of counter ``name`` over all labels, or None when /metrics
        does not list it. A labelled counter with no children yet is listed as 0."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = http_get(f"{self.url}/metrics")
        if status != 200:
            raise AcceptanceError(f"GET {self.url}/metrics returned HTTP status {status}")

        family_names = {name, name.removesuffix("_total")}
        found = False
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            if family.name not in family_names:
                continue
            found = True
            total += sum(sample.value for sample in family.samples if sample.name == name)
        return total if found else None


# ---------------------------------------------------------------------------
# Checks


def load_report(path: Path) -> dict[str, object] | str:
    """Return the parsed ``gomaproxy cc --report`` file, or an error message naming the problem."""
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        return f"report {path} was not written"
    except (OSError, json.JSONDecodeError) as error:
        return f"report {path} is not valid JSON: {error}"
    if not isinstance(report, dict):
        return f"report {path} is not a JSON object"
    return report


def summarize_cache_sources(outcomes: list[CompileOutcome]) -> Counter[str]:
    sources: Counter[str] = Counter()
    for outcome in outcomes:
        assert outcome.report_path is not None
        report = load_report(outcome.report_path)
        if isinstance(report, str):
            sources["(no report)"] += 1
        else:
            sources[str(report.get("cache_hit"))] += 1
    return sources


def count_cache_hits(outcomes: list[CompileOutcome]) -> int:
    """Print each compile whose report shows no cache hit and return the number of hits."""
    hits = 0
    for outcome in outcomes:
        assert outcome.report_path is not None
        report = load_report(outcome.report_path)
        if isinstance(report, str):
            print(f"NO CACHE HIT {outcome.name}: {report}")
            continue
        cache_hit = report.get("cache_hit")
        if cache_hit is None or cache_hit == "NO_CACHE":
            print(
                f"NO CACHE HIT {outcome.name}: cache_hit is {cache_hit!r} in {outcome.report_path}"
            )
            continue
        hits += 1
    return hits


def diff_bytes(local: bytes, proxy: bytes) -> str:
    """Return a unified diff of two outputs, with each line shown as a Python bytes literal
    so that differences in whitespace, line endings or encoding stay visible."""
    local_lines = [repr(line) for line in local.splitlines(keepends=True)]
    proxy_lines = [repr(line) for line in proxy.splitlines(keepends=True)]
    diff = difflib.unified_diff(local_lines, proxy_lines, "local gcc", "gomaproxy cc", lineterm="")
    return "\n".join(f"    {line}" for line in diff)


def compare_broken_source(local: CommandResult, proxy: CommandResult) -> bool:
    """Print whether the proxy's exit status and stderr match local gcc's."""
    problems: list[str] = []
    if local.returncode != 1:
        problems.append(f"local gcc exited with {local.returncode}, expected 1")
    if proxy.returncode != local.returncode:
        problems.append(f"exit status: local {local.returncode}, proxy {proxy.returncode}")
    if proxy.stderr != local.stderr:
        problems.append(
            f"stderr differs (local {len(local.stderr)} bytes, proxy {len(proxy.stderr)} "
            f"bytes):\n{diff_bytes(local.stderr, proxy.stderr)}"
        )
    if problems:
        print("broken source: " + "\n".join(problems))
        return False
    print(f"broken source: exit {local.returncode}, stderr identical")
    return True


def write_broken_source(work_dir: Path) -> Path:
    broken_dir = work_dir / "broken"
    broken_dir.mkdir(parents=True, exist_ok=True)
    (broken_dir / BROKEN_SOURCE_NAME).write_text(BROKEN_SOURCE)
    return broken_dir


def broken_gcc_args(compiler: str) -> list[str]:
    # Both runs use the same relative paths so that gcc's messages name the same file.
    return [compiler, *BASE_FLAGS, "-c", BROKEN_SOURCE_NAME, "-o", "broken.o"]


# ---------------------------------------------------------------------------
# The two modes


def run_local_only(
    compiles: list[SampleCompile],
    work_dir: Path,
    settings: CompileSettings,
    timings: list[tuple[str, float]],
) -> bool:
    """Compile everything locally twice, print each sha256 and check that both match."""
    with timed_step(f"local compiles ({len(compiles)} files, {settings.jobs} jobs)", timings):
        first = compile_all_locally(compiles, work_dir / "local", settings)
    with timed_step("local compiles again", timings):
        second = compile_all_locally(compiles, work_dir / "local-again", settings)

    failures = report_failed_compiles(first, "local") + report_failed_compiles(second, "local")
    for outcome in first:
        print(f"{outcome.sha256 or 'no object':64}  {outcome.name}.o  ({outcome.compile.source})")
    identical = count_identical(first, second, "second local build")
    print(f"{identical}/{len(compiles)} identical between two local builds")

    with timed_step("broken source, local gcc", timings):
        broken_dir = write_broken_source(work_dir)
        broken = run_command(
            broken_gcc_args(settings.compiler), broken_dir, settings.timeout, settings.local_env()
        )
    broken_ok = broken.returncode == 1 and b"error" in broken.stderr
    print(
        f"broken source: local gcc exit {broken.returncode}, {len(broken.stderr)} bytes of stderr"
    )
    return failures == 0 and identical == len(compiles) and broken_ok


def run_proxy_checks(
    compiles: list[SampleCompile],
    work_dir: Path,
    settings: CompileSettings,
    server: ServerProcess,
    timings: list[tuple[str, float]],
) -> bool:
    """Run the cold, cached and broken-source checks against a running server."""
    total = len(compiles)
    with timed_step(f"local compiles ({total} files, {settings.jobs} jobs)", timings):
        local = compile_all_locally(compiles, work_dir / "local", settings)
    if report_failed_compiles(local, "local"):
        raise AcceptanceError(
            "local gcc failed, so there is nothing to compare against. Check the gcc "
            "output above and the flags in scripts/samples.py."
        )

    remote_dir = work_dir / "remote"
    actions_at_start = server.read_counter(LOCAL_ACTIONS_METRIC) or 0.0
    with timed_step(f"proxy compiles, first run ({total} files, {settings.jobs} jobs)", timings):
        first = compile_all_through_proxy(compiles, remote_dir, work_dir / "reports", settings)
    first_failures = report_failed_compiles(first, "proxy")
    identical = count_identical(local, first, "proxy")
    print(f"{identical}/{total} identical")
    print(f"   first run cache_hit values: {dict(summarize_cache_sources(first))}")

    actions_before = server.read_counter(LOCAL_ACTIONS_METRIC)
    if actions_before is None:
        print(f"METRIC MISSING: /metrics does not list {LOCAL_ACTIONS_METRIC}")
    else:
        print(f"   {LOCAL_ACTIONS_METRIC}: +{actions_before - actions_at_start:g} in the first run")

    shutil.rmtree(remote_dir)
    with timed_step(f"proxy compiles, second run ({total} files, {settings.jobs} jobs)", timings):
        second = compile_all_through_proxy(
            compiles, remote_dir, work_dir / "reports-cached", settings
        )
    second_failures = report_failed_compiles(second, "proxy (cached)")
    cached_identical = count_identical(local, second, "proxy (cached)")
    cache_hits = count_cache_hits(second)
    actions_after = server.read_counter(LOCAL_ACTIONS_METRIC)
    metric_ok = check_metric_unchanged(actions_before, actions_after)
    print(f"{cache_hits}/{total} cache hits ({cached_identical}/{total} objects identical)")

    with timed_step("broken source", timings):
        broken_ok = run_broken_source(work_dir, settings)

    return (
        first_failures == 0
        and second_failures == 0
        and identical == total
        and cached_identical == total
        and cache_hits == total
        and metric_ok
        and broken_ok
    )


def check_metric_unchanged(before: float | None, after: float | None) -> bool:
    if before is None or after is None:
        print(f"METRIC MISSING: /metrics does not list {LOCAL_ACTIONS_METRIC}")
        return False
    if after != before:
        print(
            f"METRIC GREW: {LOCAL_ACTIONS_METRIC} went from {before:g} to {after:g} "
            "during the second run"
        )
        return False
    print(f"   {LOCAL_ACTIONS_METRIC}: unchanged at {after:g} in the second run")
    return True


def run_broken_source(work_dir: Path, settings: CompileSettings) -> bool:
    broken_dir = write_broken_source(work_dir)
    gcc_args = broken_gcc_args(settings.compiler)
    local = run_command(gcc_args, broken_dir, settings.timeout, settings.local_env())
    report_path = work_dir / "reports" / "broken.json"
    proxy_args = settings.proxy_cc_args(report_path, gcc_args)
    proxy = run_command(proxy_args, broken_dir, settings.timeout, settings.proxy_env())
    return compare_broken_source(local, proxy)


def run_with_server(
    compiles: list[SampleCompile],
    work_dir: Path,
    settings: CompileSettings,
    args: argparse.Namespace,
    timings: list[tuple[str, float]],
) -> bool:
    server = ServerProcess(settings.gomaproxy_command, work_dir)
    started = False
    passed = False
    try:
        with timed_step("start gomaproxy serve", timings):
            server.start(args.start_timeout)
        started = True
        settings.server_url = server.url
        passed = run_proxy_checks(compiles, work_dir, settings, server, timings)
    finally:
        with timed_step("stop gomaproxy serve", timings):
            server.stop(args.stop_timeout)
        # A start-up failure carries the log's last lines in its error already.
        if started and not passed:
            print(f"Last lines of the server log {server.log_path}:\n{server.log_tail()}")
    return passed


# ---------------------------------------------------------------------------
# Entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--local-only",
        action="store_true",
        help="only fetch and compile locally, twice, and compare the objects",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"sample cache directory (default: {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="directory for objects, reports and the server state "
        "(default: a new temporary directory)",
    )
    parser.add_argument(
        "--keep-work-dir",
        action="store_true",
        help="keep the work directory after a successful run (it is always kept after a failure)",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="number of concurrent compiles (default: 2)"
    )
    parser.add_argument(
        "--compiler",
        default="gcc",
        help="C compiler, for both local and proxy compiles (default: gcc)",
    )
    parser.add_argument(
        "--gomaproxy",
        type=shlex.split,
        help="command that runs the gomaproxy CLI, for example "
        "'python -m gomaproxy.cli' (default: the installed gomaproxy)",
    )
    parser.add_argument(
        "--compile-timeout",
        type=float,
        default=600.0,
        help="seconds one compile may take (default: 600)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the server's /healthz (default: 60)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        help="seconds between SIGTERM and SIGKILL for the server (default: 10)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    return args


def prepare_work_dir(requested: Path | None) -> Path:
    if requested is None:
        return Path(tempfile.mkdtemp(prefix="gomaproxy-accept-"))
    work_dir = requested.resolve()
    if work_dir.exists() and any(work_dir.iterdir()):
        raise AcceptanceError(
            f"work directory {work_dir} is not empty. Pass an empty or new directory."
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir


def run(args: argparse.Namespace, work_dir: Path, timings: list[tuple[str, float]]) -> bool:
    with timed_step("fetch samples", timings):
        roots = fetch_samples(args.cache_dir.resolve())
        compiles = build_sample_compiles(roots)
    print(f"   {len(compiles)} compiles from {', '.join(str(root) for root in roots.values())}")

    settings = CompileSettings(compiler=args.compiler, jobs=args.jobs, timeout=args.compile_timeout)
    if args.local_only:
        return run_local_only(compiles, work_dir, settings, timings)

    settings.gomaproxy_command = args.gomaproxy or default_gomaproxy_command()
    settings.client_state_dir = work_dir / "client-state"
    return run_with_server(compiles, work_dir, settings, args, timings)


def print_timings(timings: list[tuple[str, float]], total_seconds: float) -> None:
    print("wall time per step:")
    for title, seconds in timings:
        print(f"  {seconds:7.1f} s  {title}")
    print(f"  {total_seconds:7.1f} s  total")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    timings: list[tuple[str, float]] = []
    start = time.monotonic()
    try:
        work_dir = prepare_work_dir(args.work_dir)
    except AcceptanceError as error:
        print(f"accept_main: error: {error}", file=sys.stderr)
        return 1

    print(f"work directory: {work_dir}", flush=True)
    try:
        passed = run(args, work_dir, timings)
    except (AcceptanceError, FetchError, SampleListError) as error:
        print(f"accept_main: error: {error}", file=sys.stderr)
        passed = False
    print_timings(timings, time.monotonic() - start)

    if passed and not args.keep_work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        print(f"kept work directory {work_dir}")
    print("PASSED" if passed else "FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
