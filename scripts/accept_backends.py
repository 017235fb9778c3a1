#!/usr/bin/env python3
"""Acceptance run of the 26 sample compiles through buildbox-casd and BuildGrid.

For each backend named in ``--backends``:
  1. Install it if needed and start it on a free 127.0.0.1 port with a new state
     directory (scripts/backends/casd.py or buildgrid.py).
  2. Start ``gomaproxy serve --backend grpc://127.0.0.1:PORT`` with a configuration
     that lets actions run at absolute paths, as both backends' bubblewrap runner does.
  3. Compile the 26 files through ``gomaproxy cc`` and compare each object's sha256
     with a local gcc compile (done once for all backends).
  4. Delete the proxy's objects and compile again; each report's ``cache_hit`` must
     be something other than NO_CACHE.
  5. Compile a source with errors; the exit status and stderr must match local gcc.

The compiles, comparisons and reports reuse scripts/accept_main.py. Their progress
and diagnostics go to stderr. Stdout gets exactly one line per backend, for example
``casd: 26/26 identical, 26/26 cache hits``. Every process is stopped by PID at the
end, and the exit status is 0 only when every check passed on every backend.

Usage: python scripts/accept_backends.py [--backends casd,buildgrid] [--jobs N]
"""

# ruff: noqa: T201 (a command-line script reports to the user with print)

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "backends"))

from _common import DEFAULT_CACHE_DIR as BACKENDS_CACHE_DIR  # noqa: E402
from _common import BackendError, free_port, load_script, make_state_dir  # noqa: E402
from accept_main import (  # noqa: E402
    AcceptanceError,
    CompileOutcome,
    CompileSettings,
    ServerProcess,
    compile_all_locally,
    compile_all_through_proxy,
    count_cache_hits,
    count_identical,
    default_gomaproxy_command,
    report_failed_compiles,
    run_broken_source,
    summarize_cache_sources,
    timed_step,
)
from fetch_samples import DEFAULT_CACHE_DIR as SAMPLES_CACHE_DIR  # noqa: E402
from fetch_samples import FetchError, fetch_samples  # noqa: E402
from samples import SampleCompile, SampleListError, build_sample_compiles  # noqa: E402

casd = load_script("casd")
buildgrid = load_script("buildgrid")

BACKEND_NAMES = ("casd", "buildgrid")

# Both backends run actions with bubblewrap, with the input root as / and the host's
# /usr, /etc and library directories mounted read-only, so a request whose inputs
# include system headers can run at its client paths. casd ignores the
# InputRootAbsolutePath property; BuildGrid accepts it through its property set and the
# bot fails actions whose value is not /.
PROXY_CONFIG = """\
[backend]
absolute_root = true
input_root_absolute_path_property = true
"""


@dataclass
class BackendOutcome:
    """The result of one backend's run. A count is -1 when its step did not run."""

    name: str
    total: int
    identical: int = -1
    cache_hits: int = -1
    passed: bool = False
    error: str = ""

    def summary(self) -> str:
        if self.error:
            return f"{self.name}: error: {self.error.splitlines()[0]}"
        return (
            f"{self.name}: {max(self.identical, 0)}/{self.total} identical, "
            f"{max(self.cache_hits, 0)}/{self.total} cache hits"
        )


@dataclass
class StartedBackend:
    address: str
    stop: Callable[[], None]


def install_backend(name: str, cache_dir: Path) -> None:
    if name == "casd":
        casd.install(cache_dir)
    else:
        buildgrid.install(cache_dir)


def start_backend(name: str, state_dir: Path, cache_dir: Path) -> StartedBackend:
    """Start one installed backend, and return its address and a function that stops it."""
    port = free_port()
    if name == "casd":
        server = casd.start(state_dir, port, cache_dir=cache_dir)
        print(f"   buildbox-casd PID {server.pid} on {server.address}")
        return StartedBackend(server.address, lambda: print(f"   {casd.stop(state_dir)}"))

    server = buildgrid.start(state_dir, port, cache_dir=cache_dir)
    phases = ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in server.timings.items())
    print(f"   BuildGrid on {server.address} ({phases})")

    def stop() -> None:
        for line in buildgrid.stop(state_dir):
            print(f"   {line}")

    return StartedBackend(server.address, stop)


def check_compiles(
    name: str,
    compiles: list[SampleCompile],
    local: list[CompileOutcome],
    work_dir: Path,
    settings: CompileSettings,
    timings: list[tuple[str, float]],
    outcome: BackendOutcome,
) -> None:
    """Run the cold, cached and broken-source checks and fill in ``outcome``."""
    total = len(compiles)
    remote_dir = work_dir / "remote"
    with timed_step(f"{name}: proxy compiles, first run ({total} files)", timings):
        first = compile_all_through_proxy(compiles, remote_dir, work_dir / "reports", settings)
    first_failures = report_failed_compiles(first, f"{name} proxy")
    outcome.identical = count_identical(local, first, f"{name} proxy")
    print(f"   first run cache_hit values: {dict(summarize_cache_sources(first))}")

    shutil.rmtree(remote_dir)
    with timed_step(f"{name}: proxy compiles, second run ({total} files)", timings):
        second = compile_all_through_proxy(
            compiles, remote_dir, work_dir / "reports-cached", settings
        )
    second_failures = report_failed_compiles(second, f"{name} proxy (cached)")
    cached_identical = count_identical(local, second, f"{name} proxy (cached)")
    outcome.cache_hits = count_cache_hits(second)
    print(f"   second run cache_hit values: {dict(summarize_cache_sources(second))}")

    with timed_step(f"{name}: broken source", timings):
        broken_ok = run_broken_source(work_dir, settings)

    outcome.passed = (
        first_failures == 0
        and second_failures == 0
        and outcome.identical == total
        and cached_identical == total
        and outcome.cache_hits == total
        and broken_ok
    )


def run_backend(
    name: str,
    compiles: list[SampleCompile],
    local: list[CompileOutcome],
    settings: CompileSettings,
    args: argparse.Namespace,
    timings: list[tuple[str, float]],
) -> BackendOutcome:
    outcome = BackendOutcome(name, len(compiles))
    work_dir = make_state_dir(f"gomaproxy-accept-{name}-")
    print(f"== {name}: work directory {work_dir}", flush=True)
    config_path = work_dir / "gomaproxy.toml"
    config_path.write_text(PROXY_CONFIG)
    backend: StartedBackend | None = None
    server: ServerProcess | None = None
    try:
        with timed_step(f"{name}: install the backend", timings):
            install_backend(name, args.backends_cache_dir)
        with timed_step(f"{name}: start the backend", timings):
            backend = start_backend(name, work_dir / "backend", args.backends_cache_dir)
        server = ServerProcess(settings.gomaproxy_command, work_dir)
        server.args += ["--config", str(config_path), "--backend", f"grpc://{backend.address}"]
        with timed_step(f"{name}: start gomaproxy serve", timings):
            server.start(args.start_timeout)
        backend_settings = CompileSettings(
            compiler=settings.compiler,
            jobs=settings.jobs,
            timeout=settings.timeout,
            gomaproxy_command=settings.gomaproxy_command,
            server_url=server.url,
            client_state_dir=work_dir / "client-state",
        )
        check_compiles(name, compiles, local, work_dir, backend_settings, timings, outcome)
    except (AcceptanceError, BackendError) as error:
        outcome.error = str(error)
        print(f"{name}: error: {error}")
    finally:
        if server is not None:
            server.stop(args.stop_timeout)
            if not outcome.passed:
                print(f"Last lines of the proxy log {server.log_path}:\n{server.log_tail()}")
        if backend is not None:
            backend.stop()
    if outcome.passed and not args.keep_work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        print(f"   kept work directory {work_dir}")
    return outcome


def parse_backends(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKEND_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown backend {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(BACKEND_NAMES)}"
        )
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        type=parse_backends,
        default=list(BACKEND_NAMES),
        help="comma-separated backends to run (default: casd,buildgrid)",
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="number of concurrent compiles (default: 2)"
    )
    parser.add_argument("--compiler", default="gcc", help="C compiler (default: gcc)")
    parser.add_argument(
        "--gomaproxy",
        type=shlex.split,
        help="command that runs the gomaproxy CLI (default: the installed gomaproxy)",
    )
    parser.add_argument(
        "--samples-cache-dir",
        type=Path,
        default=SAMPLES_CACHE_DIR,
        help=f"sample cache directory (default: {SAMPLES_CACHE_DIR})",
    )
    parser.add_argument(
        "--backends-cache-dir",
        type=Path,
        default=BACKENDS_CACHE_DIR,
        help=f"where the backends are installed (default: {BACKENDS_CACHE_DIR})",
    )
    parser.add_argument(
        "--keep-work-dir",
        action="store_true",
        help="keep each backend's work directory after a successful run "
        "(it is always kept after a failure)",
    )
    parser.add_argument(
        "--compile-timeout", type=float, default=600.0, help="seconds per compile (default: 600)"
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the proxy's /healthz (default: 60)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        help="seconds between SIGTERM and SIGKILL for the proxy (default: 10)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    return args


def run(args: argparse.Namespace, timings: list[tuple[str, float]]) -> list[BackendOutcome]:
    with timed_step("fetch samples", timings):
        roots = fetch_samples(args.samples_cache_dir.resolve())
        compiles = build_sample_compiles(roots)

    settings = CompileSettings(
        compiler=args.compiler,
        jobs=args.jobs,
        timeout=args.compile_timeout,
        gomaproxy_command=args.gomaproxy or default_gomaproxy_command(),
    )
    local_dir = make_state_dir("gomaproxy-accept-local-")
    try:
        with timed_step(f"local compiles ({len(compiles)} files)", timings):
            local = compile_all_locally(compiles, local_dir, settings)
        if report_failed_compiles(local, "local"):
            raise AcceptanceError(
                "local gcc failed, so there is nothing to compare against. Check the gcc "
                "output above and the flags in scripts/samples.py."
            )
        return [
            run_backend(name, compiles, local, settings, args, timings) for name in args.backends
        ]
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    timings: list[tuple[str, float]] = []
    started = time.monotonic()
    outcomes: list[BackendOutcome] = []
    failure = ""
    # Everything but the summary lines goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            outcomes = run(args, timings)
        except (AcceptanceError, FetchError, SampleListError) as error:
            failure = str(error)
            print(f"accept_backends: error: {error}")
        print("wall time per step:")
        for title, seconds in timings:
            print(f"  {seconds:7.1f} s  {title}")
        print(f"  {time.monotonic() - started:7.1f} s  total")

    for outcome in outcomes:
        print(outcome.summary(), flush=True)
    passed = not failure and bool(outcomes) and all(outcome.passed for outcome in outcomes)
    print("PASSED" if passed else "FAILED", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
