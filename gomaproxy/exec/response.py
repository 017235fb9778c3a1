"""Turn a REAPI ActionResult into the goma ExecResult.

Outputs of at most 2 MiB are embedded as FILE blobs; larger ones are cut into 2 MiB
FILE_CHUNKs kept in the goma file store and referenced from an inline FILE_META.  Every
output blob is also stored under its hash key, so a client that later sends an object
file by hash key only (as a link input, say) finds it.  When the whole response would
pass the size limit, embedded FILEs are stored and replaced by FILE_REFs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import structlog

from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.errors import GomaProxyError
from gomaproxy.exec.clientpath import ClientPathLib
from gomaproxy.goma.blob import LARGE_FILE_THRESHOLD, ChunkSize, chunked_file, file_blob
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2

log = structlog.get_logger(__name__)


@dataclass
class OutputContext:
    """What output conversion needs from the request and the server."""

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
    for directory in action_result.output_directories:
        jobs.extend(await _directory_files(ctx, directory))

    converted: list[_Converted | None] = [None] * len(jobs)

    async def convert(
        index: int, path: str, filename: str, digest: DigestKey, executable: bool
    ) -> None:
        async with ctx.limiter:
            converted[index] = await _convert_one(ctx, path, filename, digest, executable)

    async with anyio.create_task_group() as group:
        for index, job in enumerate(jobs):
            group.start_soon(convert, index, *job)
    return [c for c in converted if c is not None]


def _client_name(ctx: OutputContext, root_relative: str) -> str:
    return ctx.paths.rel(ctx.cwd, ctx.paths.join(ctx.root, root_relative))


async def _convert_one(
    ctx: OutputContext, path: str, filename: str, digest: DigestKey, executable: bool
) -> _Converted:
    try:
        content = await ctx.read_blob(digest)
        blob = await _output_blob(ctx, content)
    except GomaProxyError as exc:
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
    ctx: OutputContext, directory: re_pb2.OutputDirectory
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
    _walk_tree(ctx, tree.root, directory.path, children, jobs)
    return jobs


def _walk_tree(
    ctx: OutputContext,
    node: re_pb2.Directory,
    prefix: str,
    children: dict[DigestKey, re_pb2.Directory],
    jobs: list[tuple[str, str, DigestKey, bool]],
) -> None:
    for file in node.files:
        path = f"{prefix}/{file.name}"
        jobs.append((path, _client_name(ctx, path), DigestKey.of(file.digest), file.is_executable))
    for sub in node.directories:
        child = children.get(DigestKey.of(sub.digest))
        if child is None:
            log.warning("output_tree_missing_child", directory=f"{prefix}/{sub.name}")
            continue
        _walk_tree(ctx, child, f"{prefix}/{sub.name}", children, jobs)


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
        key = await ctx.store_blob(output.blob)
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
