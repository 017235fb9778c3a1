#!/usr/bin/env python3
"""Benchmark gomaproxy's own overhead against one freshly started ``gomaproxy serve``.

The server runs as a subprocess on 127.0.0.1 with a free port, the embedded local
backend and a new state directory. Its JSON log goes to ``server.log`` in the work
directory, and the phase times come from its ``exec_finished`` lines. Steps:

  1. Compile a small C file with local gcc (one warm-up run, then timed runs).
  2. First run: ``gomaproxy cc`` of the same command against the empty server state
     and an empty client state, then a few more ``gomaproxy cc`` runs that hit the
     action cache.
  3. Cache hits: build the ExecReq of that compile once with the launcher's own code
     (compiler probe, ``-M`` scan, input planning) and strip every embedded content,
     so all inputs are hash-only. Then send it over HTTP with ``GomaHttpClient`` at
     concurrency 1 and 8. ``/ping`` on the same connection is the floor.
  4. Input-heavy request: the same ExecReq plus 2000 files of 1 to 8 KiB, stored
     beforehand with ``/s``. The first Exec runs the action, the rest hit the cache.
  5. Peak RSS of the server process (VmHWM in /proc), then stop it by PID.

Every loop stops after its request count or ``--time-limit`` seconds, whichever comes
first. Latencies are measured in this process, so they include the client's gzip
encoding and protobuf parsing. The client and server share the machine's cores.

Usage: python scripts/bench_exec.py [--requests N] [--heavy-inputs N] [--keep-work-dir]
"""

# ruff: noqa: T201 (a command-line script reports to the user with print)

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import trio
from accept_main import AcceptanceError, ServerProcess, default_gomaproxy_command

from gomaproxy.client.compiler_info import probe_compiler
from gomaproxy.client.deps import expected_output_files, scan_dependencies
from gomaproxy.client.http import GomaHttpClient, ServerAddress
from gomaproxy.client.inputs import KnownFileStore, exec_inputs, plan_inputs
from gomaproxy.client.request import RequesterIdentity, build_exec_request, compiler_proxy_id
from gomaproxy.goma.blob import file_blob, hash_key
from gomaproxy.protos import goma_data_pb2 as goma_pb2

SOURCE_NAME = "bench.c"
OBJECT_NAME = "bench.o"
COMPILE_ARGS = ["gcc", "-O2", "-Wall", "-c", SOURCE_NAME, "-o", OBJECT_NAME]

# A small but real translation unit: a few libc headers and some code to optimize.
SOURCE_TEXT = """\
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    char name[32];
    int count;
};

static int compare_entries(const void *left, const void *right)
{
    const struct entry *a = left;
    const struct entry *b = right;
    if (a->count != b->count)
        return b->count - a->count;
    return strcmp(a->name, b->name);
}

int count_words(const char *text, struct entry *table, int capacity)
{
    int used = 0;
    char word[32];
    while (*text) {
        int length = 0;
        while (*text && *text != ' ' && length < 31)
            word[length++] = *text++;
        word[length] = '\\0';
        while (*text == ' ')
            text++;
        int found = 0;
        for (int i = 0; i < used; i++) {
            if (strcmp(table[i].name, word) == 0) {
                table[i].count++;
                found = 1;
                break;
            }
        }
        if (!found && used < capacity) {
            snprintf(table[used].name, sizeof table[used].name, "%s", word);
            table[used].count = 1;
            used++;
        }
    }
    qsort(table, (size_t)used, sizeof table[0], compare_entries);
    return used;
}
"""

CONCURRENCY_LEVELS = (1, 8)
HEAVY_FILES_PER_DIR = 50
STORE_BLOBS_PER_REQUEST = 50
MIN_HEAVY_FILE_BYTES = 1024
MAX_HEAVY_FILE_BYTES = 8 * 1024
# Seconds any single subprocess (gcc, gomaproxy cc) may take.
COMMAND_TIMEOUT_SECONDS = 120.0
SERVER_START_TIMEOUT_SECONDS = 60.0
SERVER_STOP_GRACE_SECONDS = 10.0


# The ``*_ms`` fields of one exec_finished line without the suffix, plus its ``cache``.
PhaseTimes = dict[str, float | str]


class BenchmarkError(Exception):
    """A step could not produce its measurement, for example a compile that failed."""


# ---------------------------------------------------------------------------
# Measurements


@dataclass
class Series:
    """Latency samples of one scenario, in seconds, and the wall time they took."""

    name: str
    samples: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index] * 1000

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def per_second(self) -> float:
        return len(self.samples) / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass
class Results:
    series: dict[str, Series] = field(default_factory=dict)
    # The exec_finished lines of each scenario, in log order.
    phases: dict[str, list[PhaseTimes]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rss_start_kib: int = 0
    rss_peak_kib: int = 0
    rss_end_kib: int = 0

    def add(self, series: Series) -> Series:
        self.series[series.name] = series
        return series


def time_command(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run ``args`` and return its wall time in seconds.

    Raises BenchmarkError when it fails or times out, with its output.
    """
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchmarkError(
            f"{shlex.join(args)} timed out after {COMMAND_TIMEOUT_SECONDS:.0f} s"
        ) from None
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise BenchmarkError(
            f"{shlex.join(args)} exited with status {completed.returncode}:\n"
            f"{completed.stdout.decode(errors='replace')}{completed.stderr.decode(errors='replace')}"
        )
    return elapsed


def time_command_repeatedly(
    name: str, args: list[str], cwd: Path, env: dict[str, str], count: int, time_limit: float
) -> Series:
    series = Series(name)
    started = time.perf_counter()
    for _ in range(count):
        series.samples.append(time_command(args, cwd, env))
        if time.perf_counter() - started > time_limit:
            break
    series.wall_seconds = time.perf_counter() - started
    return series


# ---------------------------------------------------------------------------
# Server log


class ServerLog:
    """Reads the ``exec_finished`` lines the server appended since the last mark."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def exec_phases_since_mark(self) -> list[PhaseTimes]:
        """Return the ``*_ms`` fields (plus ``cache``) of each new exec_finished line."""
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        self.offset += len(data)

        found: list[PhaseTimes] = []
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or event.get("event") != "exec_finished":
                continue
            phases: PhaseTimes = {
                key.removesuffix("_ms"): float(value)
                for key, value in event.items()
                if key.endswith("_ms") and isinstance(value, int | float)
            }
            phases["cache"] = event.get("cache") or "-"
            found.append(phases)
        return found


def read_rss_kib(pid: int) -> tuple[int, int]:
    """Return VmRSS and VmHWM (peak resident set) of ``pid`` in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


# ---------------------------------------------------------------------------
# Requests


async def build_cached_request(work_dir: Path, client_state: Path) -> goma_pb2.ExecReq:
    """Build the ExecReq of COMPILE_ARGS as ``gomaproxy cc`` does, with hash-only inputs."""
    env = compile_env(work_dir)
    cwd = str(work_dir)
    info = await probe_compiler(COMPILE_ARGS[0], cwd=cwd, environ=env, cache_dir=client_state)
    filenames = await scan_dependencies(
        COMPILE_ARGS, cwd=cwd, environ=env, compiler_path=info.local_compiler_path
    )
    store = KnownFileStore.open_in(client_state)
    try:
        planned = plan_inputs(filenames, cwd=cwd, store=store, missing=(), now=time.time())
    finally:
        store.close()

    inputs = exec_inputs(planned, rng=random.Random(0))
    for entry in inputs:
        entry.ClearField("content")
    requester = RequesterIdentity(
        pid=os.getpid(),
        compiler_proxy_id=compiler_proxy_id("bench", "localhost", int(time.time()), 1),
    )
    return build_exec_request(
        info=info,
        args=COMPILE_ARGS,
        environ=env,
        cwd=cwd,
        inputs=inputs,
        expected_outputs=expected_output_files(COMPILE_ARGS),
        requester=requester,
        retry=0,
    )


def write_heavy_inputs(work_dir: Path, count: int) -> list[tuple[str, bytes]]:
    """Write ``count`` files of 1 to 8 KiB below ``work_dir/heavy`` and return them."""
    rng = random.Random(1)
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 \n"
    files = []
    for index in range(count):
        name = f"heavy/d{index // HEAVY_FILES_PER_DIR:03d}/f{index:05d}.h"
        size = rng.randint(MIN_HEAVY_FILE_BYTES, MAX_HEAVY_FILE_BYTES)
        content = f"/* {name} */\n".encode() + bytes(rng.choices(alphabet, k=size))
        path = work_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        files.append((name, content))
    return files


async def store_files(client: GomaHttpClient, files: Sequence[tuple[str, bytes]]) -> list[str]:
    """Store each file as a FILE blob with ``/s`` and return the hash keys, in order."""
    keys: list[str] = []
    for start in range(0, len(files), STORE_BLOBS_PER_REQUEST):
        blobs = [
            file_blob(content) for _, content in files[start : start + STORE_BLOBS_PER_REQUEST]
        ]
        response = await client.store_file(goma_pb2.StoreFileReq(blob=blobs))
        expected = [hash_key(blob) for blob in blobs]
        if list(response.hash_key) != expected:
            raise BenchmarkError(f"/s did not store the blobs {start} to {start + len(blobs) - 1}")
        keys.extend(expected)
    return keys


def with_extra_inputs(
    base: goma_pb2.ExecReq, files: Sequence[tuple[str, bytes]], keys: Sequence[str]
) -> goma_pb2.ExecReq:
    request = goma_pb2.ExecReq()
    request.CopyFrom(base)
    entries = list(request.input)
    entries += [
        goma_pb2.ExecReq.Input(filename=name, hash_key=key)
        for (name, _), key in zip(files, keys, strict=True)
    ]
    del request.input[:]
    request.input.extend(sorted(entries, key=lambda entry: entry.filename))
    return request


def check_response(response: goma_pb2.ExecResp, *, want_cache_hit: bool) -> None:
    if response.missing_input:
        raise BenchmarkError(
            f"Exec reported {len(response.missing_input)} missing inputs, "
            f"first {response.missing_input[0]!r}"
        )
    if response.error_message:
        raise BenchmarkError(f"Exec failed: {response.error_message[0]}")
    if response.result.exit_status != 0:
        raise BenchmarkError(f"the compile exited with status {response.result.exit_status}")
    if want_cache_hit and response.cache_hit == goma_pb2.ExecResp.NO_CACHE:
        raise BenchmarkError("Exec was expected to hit the action cache but ran the action")


# ---------------------------------------------------------------------------
# Load loops


async def run_loop(
    series: Series,
    clients: Sequence[GomaHttpClient],
    call: Callable[[GomaHttpClient], Awaitable[None]],
    count: int,
    time_limit: float,
) -> Series:
    """Make ``count`` calls spread over ``clients``, one at a time per client."""
    remaining = count
    deadline = time.perf_counter() + time_limit

    async def worker(client: GomaHttpClient) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            start = time.perf_counter()
            await call(client)
            series.samples.append(time.perf_counter() - start)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(worker, client)
    series.wall_seconds = time.perf_counter() - started
    return series


async def run_http_benchmarks(
    args: argparse.Namespace,
    server_url: str,
    work_dir: Path,
    client_state: Path,
    log: ServerLog,
    results: Results,
) -> None:
    address = ServerAddress.from_url(server_url)
    request = await build_cached_request(work_dir, client_state)
    clients = [GomaHttpClient(address) for _ in range(max(CONCURRENCY_LEVELS))]
    try:
        for client in clients:
            await client.ping()
        first = clients[0]

        # One Exec to confirm that the request hits the cache the cc runs filled.
        check_response(await first.exec(request), want_cache_hit=True)

        async def ping(client: GomaHttpClient) -> None:
            await client.ping()

        async def exec_cached(client: GomaHttpClient) -> None:
            check_response(await client.exec(request), want_cache_hit=True)

        await run_loop(
            results.add(Series("ping c=1")), [first], ping, args.requests, args.time_limit
        )
        for level in CONCURRENCY_LEVELS:
            name = f"exec hit c={level}"
            log.mark()
            series = results.add(Series(name))
            await run_loop(series, clients[:level], exec_cached, args.requests, args.time_limit)
            results.phases[name] = log.exec_phases_since_mark()

        files = write_heavy_inputs(work_dir, args.heavy_inputs)
        keys = await store_files(first, files)
        heavy = with_extra_inputs(request, files, keys)
        size_kib = len(heavy.SerializeToString()) / 1024
        results.notes.append(
            f"heavy ExecReq: {len(heavy.input)} inputs, {size_kib:.0f} KiB before gzip"
        )

        log.mark()
        start = time.perf_counter()
        check_response(await first.exec(heavy), want_cache_hit=False)
        heavy_first = results.add(Series("heavy first"))
        heavy_first.samples.append(time.perf_counter() - start)
        heavy_first.wall_seconds = heavy_first.samples[0]
        results.phases["heavy first"] = log.exec_phases_since_mark()

        async def exec_heavy(client: GomaHttpClient) -> None:
            check_response(await client.exec(heavy), want_cache_hit=True)

        log.mark()
        series = results.add(Series("heavy hit c=1"))
        await run_loop(series, [first], exec_heavy, args.heavy_requests, args.time_limit)
        results.phases["heavy hit c=1"] = log.exec_phases_since_mark()
    finally:
        for client in clients:
            await client.aclose()


# ---------------------------------------------------------------------------
# Steps


def compile_env(work_dir: Path) -> dict[str, str]:
    """Return the environment of every compile: C locale, PWD naming the work directory."""
    return {**os.environ, "LC_ALL": "C", "PWD": str(work_dir)}


def run_benchmarks(args: argparse.Namespace, work_dir: Path, results: Results) -> None:
    (work_dir / SOURCE_NAME).write_text(SOURCE_TEXT)
    env = compile_env(work_dir)

    print("== local gcc", flush=True)
    time_command(COMPILE_ARGS, work_dir, env)
    results.add(
        time_command_repeatedly(
            "local gcc", COMPILE_ARGS, work_dir, env, args.local_runs, args.time_limit
        )
    )

    gomaproxy = args.gomaproxy or default_gomaproxy_command()
    server = ServerProcess(gomaproxy, work_dir)
    print("== start gomaproxy serve", flush=True)
    server.start(SERVER_START_TIMEOUT_SECONDS)
    assert server.process is not None
    pid = server.process.pid
    log = ServerLog(server.log_path)
    try:
        results.rss_start_kib, _ = read_rss_kib(pid)

        client_state = work_dir / "client-state"
        cc_env = {**env, "GOMAPROXY_CLIENT_STATE_DIR": str(client_state)}
        cc_args = [*gomaproxy, "cc", "--server", server.url, "--", *COMPILE_ARGS]

        print("== gomaproxy cc, first run", flush=True)
        log.mark()
        first = results.add(Series("cc first run"))
        first.samples.append(time_command(cc_args, work_dir, cc_env))
        first.wall_seconds = first.samples[0]
        results.phases["cc first run"] = log.exec_phases_since_mark()

        print("== gomaproxy cc, cache hits", flush=True)
        log.mark()
        results.add(
            time_command_repeatedly(
                "cc cache hit", cc_args, work_dir, cc_env, args.local_runs, args.time_limit
            )
        )
        results.phases["cc cache hit"] = log.exec_phases_since_mark()

        print("== Exec over HTTP", flush=True)
        trio.run(run_http_benchmarks, args, server.url, work_dir, client_state, log, results)

        results.rss_end_kib, results.rss_peak_kib = read_rss_kib(pid)
    finally:
        server.stop(SERVER_STOP_GRACE_SECONDS)


# ---------------------------------------------------------------------------
# Report


def print_latency_table(results: Results) -> None:
    print()
    print(f"{'scenario':<16} {'n':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'req/s':>8}")
    for series in results.series.values():
        if not series.samples:
            print(f"{series.name:<16} {0:>5}  (no samples)")
            continue
        print(
            f"{series.name:<16} {len(series.samples):>5} {series.p50_ms:>9.2f} "
            f"{series.percentile_ms(0.9):>9.2f} {series.percentile_ms(0.99):>9.2f} "
            f"{series.per_second:>8.1f}"
        )


def print_phase_table(results: Results) -> None:
    """Print the median of each exec_finished phase per scenario.

    A scenario with several Exec rounds of different kinds (the first cc run) gets
    one row per round instead. The cache column shows the most common value.
    """
    rows: list[tuple[str, int, PhaseTimes]] = []
    for name, lines in results.phases.items():
        if name == "cc first run" or len(lines) == 1:
            for index, line in enumerate(lines, start=1):
                label = f"{name} #{index}" if len(lines) > 1 else name
                rows.append((label, 1, line))
        elif lines:
            rows.append((name, len(lines), median_phases(lines)))

    columns: list[str] = []
    for _, _, line in rows:
        columns += [key for key in line if key not in columns and key != "cache"]
    # total first, so the other columns read as its parts.
    if "total" in columns:
        columns.remove("total")
        columns.insert(0, "total")

    print()
    print("server phases from exec_finished, ms (median per scenario):")
    titles = "".join(f" {column[:12]:>12}" for column in columns)
    print(f"{'scenario':<18} {'n':>4} {'cache':<13}{titles}")
    for label, count, line in rows:
        cells = "".join(
            f" {line[column]:>12.2f}" if column in line else f" {'-':>12}" for column in columns
        )
        print(f"{label:<18} {count:>4} {line['cache']!s:<13}{cells}")


def median_phases(lines: Sequence[PhaseTimes]) -> PhaseTimes:
    """Return the median of each phase over the lines that have it, and the usual cache."""
    phase_names: list[str] = []
    for line in lines:
        phase_names += [key for key in line if key not in phase_names and key != "cache"]

    median: PhaseTimes = {
        key: statistics.median(float(line[key]) for line in lines if key in line)
        for key in phase_names
    }
    median["cache"] = Counter(str(line["cache"]) for line in lines).most_common(1)[0][0]
    return median


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.1f}x" if denominator > 0 else "n/a"


def phase_median(results: Results, scenario: str, phase: str) -> float:
    lines = results.phases.get(scenario) or []
    values = [float(line[phase]) for line in lines if phase in line]
    return statistics.median(values) if values else 0.0


def print_ratios(results: Results, heavy_inputs: int) -> None:
    series = results.series
    gcc = series["local gcc"].p50_ms
    ping = series["ping c=1"].p50_ms
    hit = series["exec hit c=1"].p50_ms
    print()
    print("ratios (medians):")
    print(f"  cache-hit Exec / ping, same connection   {ratio(hit, ping)}")
    print(f"  local gcc / cache-hit Exec               {ratio(gcc, hit)}")
    print(f"  cc first run / local gcc                 {ratio(series['cc first run'].p50_ms, gcc)}")
    print(f"  cc cache hit / local gcc                 {ratio(series['cc cache hit'].p50_ms, gcc)}")
    hit8 = series["exec hit c=8"]
    print(
        f"  throughput c=8 / c=1                     "
        f"{ratio(hit8.per_second, series['exec hit c=1'].per_second)}"
    )
    heavy = series["heavy hit c=1"]
    if heavy.samples:
        print(f"  heavy cache-hit Exec / small one         {ratio(heavy.p50_ms, hit)}")
        small_tree = phase_median(results, "exec hit c=1", "input_tree")
        heavy_tree = phase_median(results, "heavy hit c=1", "input_tree")
        per_input_us = (heavy_tree - small_tree) * 1000 / heavy_inputs if heavy_inputs else 0.0
        print(f"  input_tree cost per extra input          {per_input_us:.1f} us (cache hit)")

    print()
    print(
        f"server RSS: {results.rss_start_kib / 1024:.1f} MiB after start, "
        f"{results.rss_end_kib / 1024:.1f} MiB at the end, "
        f"peak (VmHWM) {results.rss_peak_kib / 1024:.1f} MiB"
    )
    for note in results.notes:
        print(note)


# ---------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests",
        type=int,
        default=200,
        help="requests per ping and cache-hit Exec loop (default: 200)",
    )
    parser.add_argument(
        "--heavy-inputs",
        type=int,
        default=2000,
        help="extra inputs of the input-heavy request (default: 2000)",
    )
    parser.add_argument(
        "--heavy-requests",
        type=int,
        default=50,
        help="cache-hit Execs of the input-heavy request (default: 50)",
    )
    parser.add_argument(
        "--local-runs",
        type=int,
        default=5,
        help="timed runs of local gcc and of cache-hit gomaproxy cc (default: 5)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=60.0,
        help="seconds after which any loop stops early (default: 60)",
    )
    parser.add_argument(
        "--gomaproxy",
        type=shlex.split,
        help="command that runs the gomaproxy CLI (default: the installed gomaproxy)",
    )
    parser.add_argument(
        "--keep-work-dir", action="store_true", help="keep the work directory and server log"
    )
    args = parser.parse_args(argv)
    for name in ("requests", "heavy_requests", "local_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.heavy_inputs < 0:
        parser.error("--heavy-inputs must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The client modules log every call at debug level, which would bury the tables.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    work_dir = Path(tempfile.mkdtemp(prefix="gomaproxy-bench-"))
    print(f"work directory: {work_dir}", flush=True)
    results = Results()
    started = time.monotonic()
    try:
        run_benchmarks(args, work_dir, results)
    except (AcceptanceError, BenchmarkError, OSError) as error:
        print(f"bench_exec: error: {error}", file=sys.stderr)
        print(f"kept work directory {work_dir}", file=sys.stderr)
        return 1

    print_latency_table(results)
    print_phase_table(results)
    print_ratios(results, args.heavy_inputs)
    print(f"\nbenchmark wall time {time.monotonic() - started:.1f} s")
    if args.keep_work_dir:
        print(f"kept work directory {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
