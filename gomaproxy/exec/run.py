"""The state of one Exec request and the process-wide limiters its phases share."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from gomaproxy.config import ExecConfig
from gomaproxy.digest import DigestKey
from gomaproxy.exec.blobs import BlobStore
from gomaproxy.exec.clientpath import PathStyle
from gomaproxy.exec.command import Layout
from gomaproxy.exec.inventory import Toolchain
from gomaproxy.protos import goma_data_pb2 as goma_pb2
from gomaproxy.protos import remote_execution_pb2 as re_pb2


@dataclass
class Limiters:
    """The process-wide capacity limiters, named after what they protect."""

    file_lookup: anyio.CapacityLimiter
    cas_blob_lookup: anyio.CapacityLimiter
    output_file: anyio.CapacityLimiter

    @classmethod
    def from_config(cls, config: ExecConfig) -> Limiters:
        return cls(
            file_lookup=anyio.CapacityLimiter(config.file_lookup_concurrency),
            cas_blob_lookup=anyio.CapacityLimiter(config.cas_blob_lookup_concurrency),
            output_file=anyio.CapacityLimiter(config.output_file_concurrency),
        )

    def by_name(self) -> dict[str, anyio.CapacityLimiter]:
        return {
            "file_lookup": self.file_lookup,
            "cas_blob_lookup": self.cas_blob_lookup,
            "output_file": self.output_file,
        }


@dataclass
class ExecRun:
    """The state of one Exec request as it moves through the phases."""

    request: goma_pb2.ExecReq
    request_id: str = ""
    response: goma_pb2.ExecResp = field(default_factory=goma_pb2.ExecResp)
    toolchain: Toolchain | None = None
    style: PathStyle = PathStyle.POSIX
    cwd: str = ""
    root: str = ""
    need_chroot: bool = False
    relocatable: bool = False
    not_relocatable_reason: str = ""
    blobs: BlobStore = field(default_factory=BlobStore)
    input_root: DigestKey | None = None
    layout: Layout | None = None
    action_digest: DigestKey | None = None
    action: re_pb2.Action | None = None
    # Milliseconds per phase, in the order the phases ran.
    timings: dict[str, float] = field(default_factory=dict)
    outcome: str = "ok"
    cache: str = "none"
    uploaded: int = 0
    uploaded_bytes: int = 0
    missing: int = 0
    # The request id of the identical request whose ActionResult or error this one took.
    merged_with: str | None = None

    def reject(self, message: str) -> bool:
        """Mark the response BAD_REQUEST with ``message``; returns True, the request is done."""
        self.response.error = goma_pb2.ExecResp.BAD_REQUEST
        self.response.error_message.append(message)
        self.outcome = "bad_request"
        return True
