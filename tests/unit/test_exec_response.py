"""Converting a REAPI ActionResult into the goma ExecResult."""

from __future__ import annotations

import trio

from gomaproxy.digest import DigestKey, digest_of_bytes
from gomaproxy.exec.clientpath import PathStyle, path_lib
from gomaproxy.exec.response import OutputContext, fill_exec_result
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2


async def test_output_store_os_error_is_error_message() -> None:
    """A file store write failure ends up in error_message, not as an escaped exception."""
    content = b"\x7fELF object"
    digest = digest_of_bytes(content)

    async def read_blob(wanted: DigestKey) -> bytes:
        assert wanted == digest
        return content

    async def store_blob(blob: goma_pb2.FileBlob) -> str:
        raise OSError(28, "No space left on device")

    context = OutputContext(
        read_blob=read_blob,
        store_blob=store_blob,
        limiter=trio.CapacityLimiter(2),
        paths=path_lib(PathStyle.POSIX),
        cwd="/work/out",
        root="/work/out",
        max_response_bytes=6 * 1024 * 1024,
    )
    response = goma_pb2.ExecResp()
    response.result.exit_status = -1
    action_result = re_pb2.ActionResult(exit_code=0)
    action_result.output_files.add(path="a.o", digest=digest.to_proto())

    await fill_exec_result(context, response, action_result)

    assert len(response.error_message) == 1
    assert "a.o" in response.error_message[0]
    assert "No space left on device" in response.error_message[0]
    assert response.result.exit_status == -1
    assert list(response.result.output) == []
