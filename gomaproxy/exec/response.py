"""Turn a REAPI ActionResult into the goma ExecResult.

Outputs of at most 2 MiB are embedded as FILE blobs; larger ones are cut into 2 MiB
FILE_CHUNKs kept in the goma file store and referenced from an inline FILE_META.  Every
output blob is also stored under its hash key, so a client that later sends an object
file by hash key only (as a link input, say) finds it.  When the whole response would
pass the size limit, embedded FILEs are stored and replaced by FILE_REFs.

goma has no symlink outputs, so an output symlink (in any of the ActionResult symlink
lists, or inside an output directory) is sent as the file it points to.  Its target
must resolve, through at most ``MAX_SYMLINK_HOPS`` symlinks, to a file of the same
result or to a directory of the result, whose files are then sent under the symlink's
path.  Any other symlink, such as one to an absolute path, becomes an error_message
line, so the client retries and then compiles locally.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio
import structlog

from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.errors import GomaProxyError
from gomaproxy.exec.clientpath import ClientPathLib
from gomaproxy.goma.blob import LARGE_FILE_THRESHOLD, ChunkSize, chunked_file, file_blob, hash_key
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2

log = structlog.get_logger(__name__)

# Symlinks followed from one output symlink before it is reported as unresolvable.
MAX_SYMLINK_HOPS = 8

# (path relative to the working directory, digest, is_executable) of one output file.
OutputFile = tuple[str, DigestKey, bool]


@dataclass
class OutputContext:
    """The request and server state that output conversion uses."""

    read_blob: Callable[[DigestKey], Awaitable[bytes]]
    store_blob: Callable[[goma_pb2.FileBlob], Awaitable[str]]
    limiter: anyio.CapacityLimiter
    paths: ClientPathLib
    cwd: str
    root: str
    max_response_bytes: int


@dataclass
class _Converted:
    filename: str
    blob: goma_pb2.FileBlob | None
    is_executable: bool
    error: str = ""


async def fill_exec_result(
    ctx: OutputContext, response: goma_pb2.ExecResp, action_result: re_pb2.ActionResult
) -> None:
    """Fill ``response.result`` from ``action_result``; failures become error_message lines.

    Raises:
        GomaProxyError: the response cannot be brought under the size limit.
    """
    result = response.result

    result.stdout_buffer = await _stream_bytes(
        ctx, response, "stdout", action_result.stdout_raw, action_result.stdout_digest
    )
    result.stderr_buffer = await _stream_bytes(
        ctx, response, "stderr", action_result.stderr_raw, action_result.stderr_digest
    )

    for converted in await _convert_outputs(ctx, action_result):
        if converted.error:
            response.error_message.append(converted.error)
            continue
        output = result.output.add(
            filename=converted.filename, is_executable=converted.is_executable
        )
        output.blob.CopyFrom(converted.blob)

    if not response.error_message:
        result.exit_status = action_result.exit_code

    _set_execution_stats(response, action_result.execution_metadata)

    if response.ByteSize() > ctx.max_response_bytes:
        await _reduce_response_size(ctx, response)


async def _stream_bytes(
    ctx: OutputContext, response: goma_pb2.ExecResp, name: str, raw: bytes, digest: re_pb2.Digest
) -> bytes:
    # Non-empty inline bytes win; a digest is fetched only when it names content.
    if raw:
        return raw
    if digest.size_bytes <= 0:
        return b""
    try:
        return await ctx.read_blob(DigestKey.of(digest))
    except GomaProxyError as exc:
        response.error_message.append(f"failed to fetch {name} {DigestKey.of(digest)}: {exc}")
        return b""


async def _convert_outputs(
    ctx: OutputContext, action_result: re_pb2.ActionResult
) -> list[_Converted]:
    jobs: list[tuple[str, str, DigestKey, bool]] = []
    for output in action_result.output_files:
        jobs.append(
            (
                output.path,
                _client_name(ctx, output.path),
                DigestKey.of(output.digest),
                output.is_executable,
            )
        )
    symlinks = [(link.path, link.target) for link in _output_symlinks(action_result)]
    for directory in action_result.output_directories:
        jobs.extend(await _directory_files(ctx, directory, symlinks))

    files = [(path, digest, executable) for path, _, digest, executable in jobs]
    resolved, errors = resolve_output_symlinks(files, symlinks)
    for error in errors:
        log.warning("output_symlink_unresolved", error=error)
    for path, digest, executable in resolved:
        jobs.append((path, _client_name(ctx, path), digest, executable))

    converted: list[_Converted | None] = [None] * len(jobs)

    async def convert(
        index: int, path: str, filename: str, digest: DigestKey, executable: bool
    ) -> None:
        async with ctx.limiter:
            converted[index] = await _convert_one(ctx, path, filename, digest, executable)

    async with anyio.create_task_group() as group:
        for index, job in enumerate(jobs):
            group.start_soon(convert, index, *job)

    symlink_errors = [_Converted("", None, False, error=error) for error in errors]
    return [c for c in converted if c is not None] + symlink_errors


def _output_symlinks(action_result: re_pb2.ActionResult) -> list[re_pb2.OutputSymlink]:
    """List the output symlinks of all three ActionResult fields, each path once."""
    by_path: dict[str, re_pb2.OutputSymlink] = {}
    for link in (
        *action_result.output_symlinks,
        *action_result.output_file_symlinks,
        *action_result.output_directory_symlinks,
    ):
        by_path.setdefault(link.path, link)
    return list(by_path.values())


def resolve_output_symlinks(
    files: Sequence[OutputFile], symlinks: Sequence[tuple[str, str]]
) -> tuple[list[OutputFile], list[str]]:
    """Turn output symlinks into the output files they point to (pure).

    Args:
        files: the regular output files, including those of output directories.
        symlinks: ``(path, target)`` of each output symlink; a relative target is
            relative to the symlink's directory, as on POSIX.

    Returns:
        The files to send under the symlinks' paths, and one error message per symlink
        that does not resolve to a file or directory of the result.
    """
    by_path = {path: (digest, executable) for path, digest, executable in files}
    links = dict(symlinks)
    resolved: list[OutputFile] = []
    errors: list[str] = []

    for path, target in symlinks:
        real = _follow_symlink(path, links)
        found = _files_at(real, by_path) if real is not None else []
        if not found:
            errors.append(
                f"output symlink {path} -> {target} does not point to a file or directory "
                "of the action result, and goma clients cannot receive symlinks"
            )
            continue
        resolved.extend((path + suffix, digest, executable) for suffix, digest, executable in found)
    return resolved, errors


def _follow_symlink(path: str, links: Mapping[str, str]) -> str | None:
    """Return the non-symlink path that ``path`` leads to, or None when it leaves the result."""
    current = path
    for _ in range(MAX_SYMLINK_HOPS):
        target = links.get(current)
        if target is None:
            return current
        if posixpath.isabs(target):
            return None
        current = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
        if current == ".." or current.startswith("../"):
            return None
    return None if current in links else current


def _files_at(path: str, by_path: Mapping[str, tuple[DigestKey, bool]]) -> list[OutputFile]:
    """Return the file at ``path`` with suffix "", or the files below it with "/<rest>"."""
    if path in by_path:
        digest, executable = by_path[path]
        return [("", digest, executable)]

    prefix = path + "/"
    return [
        (name[len(path) :], digest, executable)
        for name, (digest, executable) in by_path.items()
        if name.startswith(prefix)
    ]


def _client_name(ctx: OutputContext, root_relative: str) -> str:
    return ctx.paths.rel(ctx.cwd, ctx.paths.join(ctx.root, root_relative))


async def _convert_one(
    ctx: OutputContext, path: str, filename: str, digest: DigestKey, executable: bool
) -> _Converted:
    try:
        content = await ctx.read_blob(digest)
        blob = await _output_blob(ctx, content)
    except (GomaProxyError, OSError) as exc:
        # An OSError is a failed write to the goma file store, such as a full disk.
        log.warning("output_conversion_failed", path=path, digest=str(digest), error=str(exc))
        return _Converted(filename, None, executable, error=f"goma blob for {path}: {exc}")
    return _Converted(filename, blob, executable)


async def _output_blob(ctx: OutputContext, content: bytes) -> goma_pb2.FileBlob:
    # Outputs use the inclusive rule: exactly 2 MiB is still one FILE.
    if len(content) <= LARGE_FILE_THRESHOLD:
        blob = file_blob(content)
        await ctx.store_blob(blob)
        return blob

    chunked = chunked_file(content, ChunkSize.TOTAL)
    for chunk in chunked.chunks:
        await ctx.store_blob(chunk)
    await ctx.store_blob(chunked.meta)
    return chunked.meta


async def _directory_files(
    ctx: OutputContext, directory: re_pb2.OutputDirectory, symlinks: list[tuple[str, str]]
) -> list[tuple[str, str, DigestKey, bool]]:
    if not directory.HasField("tree_digest"):
        log.warning("output_directory_without_tree", path=directory.path)
        return []

    tree = re_pb2.Tree()
    tree.ParseFromString(await ctx.read_blob(DigestKey.of(directory.tree_digest)))
    children: dict[DigestKey, re_pb2.Directory] = {}
    for child in tree.children:
        children[digest_of_bytes(child.SerializeToString(deterministic=True))] = child

    jobs: list[tuple[str, str, DigestKey, bool]] = []
    _walk_tree(ctx, tree.root, directory.path, children, jobs, symlinks)
    return jobs


def _walk_tree(
    ctx: OutputContext,
    node: re_pb2.Directory,
    prefix: str,
    children: dict[DigestKey, re_pb2.Directory],
    jobs: list[tuple[str, str, DigestKey, bool]],
    symlinks: list[tuple[str, str]],
) -> None:
    for file in node.files:
        path = f"{prefix}/{file.name}"
        jobs.append((path, _client_name(ctx, path), DigestKey.of(file.digest), file.is_executable))
    for link in node.symlinks:
        symlinks.append((f"{prefix}/{link.name}", link.target))
    for sub in node.directories:
        child = children.get(DigestKey.of(sub.digest))
        if child is None:
            log.warning("output_tree_missing_child", directory=f"{prefix}/{sub.name}")
            continue
        _walk_tree(ctx, child, f"{prefix}/{sub.name}", children, jobs, symlinks)


def _set_execution_stats(
    response: goma_pb2.ExecResp, metadata: re_pb2.ExecutedActionMetadata
) -> None:
    stats = response.execution_stats
    stats.execution_start_timestamp.CopyFrom(metadata.execution_start_timestamp)
    stats.execution_completed_timestamp.CopyFrom(metadata.execution_completed_timestamp)


async def _reduce_response_size(ctx: OutputContext, response: goma_pb2.ExecResp) -> None:
    for output in response.result.output:
        if output.blob.blob_type != goma_pb2.FileBlob.FILE:
            continue
        # _output_blob stored every FILE output already, so its key is only computed here.
        key = hash_key(output.blob)
        size = output.blob.file_size
        output.blob.Clear()
        output.blob.blob_type = goma_pb2.FileBlob.FILE_REF
        output.blob.file_size = size
        output.blob.hash_key.append(key)

    size = response.ByteSize()
    if size > ctx.max_response_bytes:
        raise GomaProxyError(
            f"response is {size} bytes after replacing outputs by references, over the "
            f"limit of {ctx.max_response_bytes}; raise exec.max_response_bytes"
        )
