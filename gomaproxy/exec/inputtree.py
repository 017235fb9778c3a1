"""Phase 2 of an Exec: the exec root, input digests and the Merkle tree.

Inputs are resolved concurrently, each under the file lookup limiter.  An input that
cannot be resolved, or is not resolved by the phase deadline, is reported back to the
client as missing.  An input outside the exec root is skipped with a warning, as
goma-server does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio
import structlog

from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.errors import BadRequest, GomaProxyError
from gomaproxy.exec import command as command_mod
from gomaproxy.exec.blobs import BlobNotFound, BlobSource
from gomaproxy.exec.clientpath import ClientPathLib, PathStyle, path_lib
from gomaproxy.exec.execroot import (
    OutOfRoot,
    dedupe_windows_inputs,
    derive_exec_root,
    exec_paths,
    root_rel,
)
from gomaproxy.exec.inputs import InputResolver
from gomaproxy.exec.inventory import CommandFile, ServerFileSource, Toolchain
from gomaproxy.exec.merkle import MerkleTree
from gomaproxy.exec.missing import fill_missing_inputs
from gomaproxy.exec.outputs import command_output_dirs, command_output_files
from gomaproxy.exec.run import ExecRun
from gomaproxy.metrics import ExecMetrics

log = structlog.get_logger(__name__)


class InputTreeBuilder:
    """Builds the REAPI input root of a request from its goma inputs."""

    def __init__(
        self, resolver: InputResolver, *, missing_input_limit: int, metrics: ExecMetrics
    ) -> None:
        self._resolver = resolver
        self._missing_input_limit = missing_input_limit
        self._metrics = metrics

    async def build(
        self, run: ExecRun, *, absolute_symlinks: bool = True, deadline: float = math.inf
    ) -> bool:
        """Build the input tree of ``run``; returns True when the response is already final.

        With ``absolute_symlinks`` false, because the backend rejects symlinks with
        absolute targets, toolchain symlinks get targets relative to their directory.
        Inputs not resolved by ``deadline`` (in ``anyio.current_time()`` seconds) are
        reported as missing.
        """
        request, toolchain = run.request, run.toolchain
        assert toolchain is not None
        lib = path_lib(run.style)

        try:
            paths = exec_paths(
                run.style,
                cwd=request.cwd,
                input_filenames=[entry.filename for entry in request.input],
                # An empty argv0 adds only the cwd, which is in the list already.
                argv0="" if toolchain.argv0_on_workers else toolchain.argv0,
                args=list(request.arg),
                expected_output_files=list(request.expected_output_files),
                expected_output_dirs=list(request.expected_output_dirs),
            )
        except BadRequest as exc:
            return run.reject(f"bad input: {exc}")

        try:
            exec_root = derive_exec_root(
                run.style, paths, toolchain.allow_chroot, request.requester_info.exec_root
            )
        except BadRequest as exc:
            return run.reject(_exec_root_message(exc, toolchain))

        run.root, run.need_chroot = lib.clean(exec_root.root), exec_root.need_chroot
        run.cwd = lib.clean(request.cwd)

        tree = MerkleTree(run.style)
        missing = await self._add_inputs(run, tree, deadline)
        if missing:
            fill_missing_inputs(run.response, request, missing, limit=self._missing_input_limit)
            run.missing = len(run.response.missing_input)
            self._metrics.missing_inputs.inc(run.missing)
            run.outcome = "missing_inputs"
            return True

        add_command_files(run, tree, absolute_symlinks=absolute_symlinks)
        for directory in _extra_directories(run):
            tree.add_directory(directory)

        try:
            run.layout = plan_run_layout(run)
        except BadRequest as exc:
            return run.reject(str(exc))
        if run.layout.use_wrapper:
            wrapper = digest_of_bytes(command_mod.WRAPPER_SCRIPT)
            run.blobs.add_bytes(wrapper, command_mod.WRAPPER_SCRIPT)
            tree.add_file(command_mod.WRAPPER_NAME, wrapper.to_proto(), is_executable=True)

        built = tree.build()
        for digest, data in built.directories.items():
            run.blobs.add_bytes(digest, data)
        run.input_root = DigestKey.of(built.root_digest)
        return False

    async def _add_inputs(
        self, run: ExecRun, tree: MerkleTree, deadline: float
    ) -> list[tuple[str, str]]:
        entries = list(run.request.input)
        if run.style is PathStyle.WINDOWS:
            # Windows file names ignore case, so Foo.h and foo.h are one input.
            entries = dedupe_windows_inputs(entries, run.cwd, lambda entry: entry.filename)
        names: list[str | None] = [None] * len(entries)
        missing: list[tuple[str, str]] = []
        resolved: list[DigestKey | None] = [None] * len(entries)

        for index, entry in enumerate(entries):
            try:
                names[index] = root_rel(run.style, entry.filename, run.cwd, run.root)
            except OutOfRoot:
                log.warning("input_out_of_root", filename=entry.filename, root=run.root)

        pending = {index for index, name in enumerate(names) if name is not None}

        # Inputs already in the digest cache need no I/O; resolving them here instead of in a
        # task each keeps a cache-hit request with thousands of inputs cheap.
        for index in sorted(pending):
            found = self._resolver.resolve_cached(entries[index])
            if found is not None:
                pending.discard(index)
                resolved[index] = found.digest
                run.blobs.add(found.digest, found.source)

        async def resolve(index: int) -> None:
            entry = entries[index]
            try:
                found = await self._resolver.resolve(entry)
            except GomaProxyError as exc:
                pending.discard(index)
                missing.append((entry.filename, f"input: {exc}"))
                return
            pending.discard(index)
            resolved[index] = found.digest
            run.blobs.add(found.digest, found.source)

        with anyio.CancelScope(deadline=deadline) as scope:
            async with anyio.create_task_group() as group:
                for index in sorted(pending):
                    group.start_soon(resolve, index)
        if scope.cancelled_caught:
            log.warning("input_tree_timed_out", unresolved=len(pending))
            for index in sorted(pending):
                missing.append(
                    (entries[index].filename, "input: timed out before its digest was computed")
                )

        executables = executable_inputs(run.toolchain)
        for index, name in enumerate(names):
            digest = resolved[index]
            if name is not None and digest is not None:
                executable = entries[index].filename in executables
                tree.add_file(name, digest.to_proto(), is_executable=executable)
        return missing


def _exec_root_message(exc: BadRequest, toolchain: Toolchain) -> str:
    message = f"exec root detection failed: {exc}"
    if not toolchain.allow_chroot:
        message += (
            "; inputs under different top-level directories need an action at the "
            "absolute root, which this backend cannot run: install bubblewrap on the "
            "server (Debian package bubblewrap) or make every input relative to cwd"
        )
    return message


def _extra_directories(run: ExecRun) -> list[str]:
    """Empty directories the action needs: system include dirs and output parents."""
    lib = path_lib(run.style)
    spec = run.request.command_spec
    candidates = [
        *spec.cxx_system_include_path,
        *spec.system_include_path,
        *spec.system_framework_path,
    ]
    candidates += [lib.dir(name) for name in request_outputs(run)]
    candidates += request_output_dirs(run)

    directories = []
    for name in candidates:
        try:
            relative = root_rel(run.style, name, run.cwd, run.root)
        except OutOfRoot:
            continue
        if relative:
            directories.append(relative)
    return directories


def request_outputs(run: ExecRun) -> list[str]:
    request = run.request
    return command_output_files(
        request.command_spec.name,
        list(request.arg),
        list(request.expected_output_files),
        list(request.expected_output_dirs),
    )


def request_output_dirs(run: ExecRun) -> list[str]:
    request = run.request
    return command_output_dirs(
        request.command_spec.name,
        list(request.arg),
        list(request.expected_output_files),
        list(request.expected_output_dirs),
    )


def plan_run_layout(run: ExecRun) -> command_mod.Layout:
    outputs = [root_relative_output(run, name) for name in request_outputs(run)]
    output_dirs = [root_relative_output(run, name) for name in request_output_dirs(run)]

    base = work_dir(run)
    if run.style is PathStyle.WINDOWS:
        # REAPI paths always use "/", while Windows root-relative names use "\".
        base = base.replace("\\", "/")
        outputs = [name.replace("\\", "/") for name in outputs]
        output_dirs = [name.replace("\\", "/") for name in output_dirs]
    return command_mod.plan_layout(base, outputs, output_dirs)


def work_dir(run: ExecRun) -> str:
    return root_rel(run.style, run.request.cwd, run.cwd, run.root)


def root_relative_output(run: ExecRun, name: str) -> str:
    try:
        return root_rel(run.style, name, run.cwd, run.root)
    except OutOfRoot:
        raise BadRequest(f"output {name} is outside the exec root {run.root}") from None


def executable_inputs(toolchain: Toolchain | None) -> frozenset[str]:
    """Return the input filenames that the toolchain marks executable.

    An input with the same path as an executable command file counts too, because the
    input then is that command file.
    """
    if toolchain is None:
        return frozenset()
    from_files = {file.path for file in toolchain.command_files if file.is_executable}
    return toolchain.executable_inputs | from_files


def add_command_files(run: ExecRun, tree: MerkleTree, *, absolute_symlinks: bool) -> None:
    """Add the toolchain's command files to ``tree`` and their sources to ``run.blobs``.

    A command file with the path of an input is that input and is not added again.  A
    command file outside the exec root is skipped, like such an input.
    """
    assert run.toolchain is not None
    lib = path_lib(run.style)
    input_names = {entry.filename for entry in run.request.input}

    for file in run.toolchain.command_files:
        if file.path in input_names:
            continue
        try:
            name = root_rel(run.style, file.path, run.cwd, run.root)
        except OutOfRoot:
            log.debug("command_file_out_of_root", path=file.path, root=run.root)
            continue

        if file.symlink:
            target = file.symlink
            if not absolute_symlinks and lib.is_abs(target):
                link = file.path if lib.is_abs(file.path) else lib.join(run.cwd, file.path)
                target = relative_symlink_target(lib, link, target)
            tree.add_symlink(name, target)
            continue

        if file.digest is None:
            log.warning("command_file_without_content", path=file.path)
            continue
        tree.add_file(name, file.digest.to_proto(), is_executable=file.is_executable)
        if file.digest not in run.blobs:
            run.blobs.add(file.digest, _command_file_source(file))


def relative_symlink_target(lib: ClientPathLib, link: str, target: str) -> str:
    """Return absolute ``target`` relative to the directory of the symlink at ``link``.

    ``link`` must be absolute; a relative link path is taken relative to the cwd by the
    caller, so ``/a/b.txt`` pointing to ``/c/d.txt`` gets ``../c/d.txt``.
    """
    return lib.rel(lib.dir(lib.clean(link)), lib.clean(target))


def _command_file_source(file: CommandFile) -> BlobSource:
    if file.source_path:
        return ServerFileSource(file.source_path)
    return _CasOnlySource(file)


@dataclass(frozen=True)
class _CasOnlySource:
    """A toolchain file that only the CAS can provide; reading it is an error."""

    file: CommandFile
    filename: str | None = None

    async def read(self) -> bytes:
        raise BlobNotFound(
            f"toolchain file {self.file.path} ({self.file.digest}) is not in the CAS and "
            "the inventory names no source file for it"
        )
