"""A small REAPI v2 client for checking real backends directly, without the proxy.

It uses grpclib on asyncio with the project's generated messages and stubs, and builds
input trees from ``{path: bytes}`` mappings. Synchronous tests run a scenario on an
asyncio event loop of their own, which pytest-trio leaves alone.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from google.protobuf import duration_pb2
from grpclib.client import Channel

from gomaproxy.digest import DigestKey, digest_of_bytes, digest_of_message
from gomaproxy.protos import longrunning_pb2 as lro_pb2
from gomaproxy.protos import remote_execution_grpc as re_grpc
from gomaproxy.protos import remote_execution_pb2 as re_pb2

RPC_TIMEOUT_S = 60.0


@dataclass
class InputFile:
    content: bytes
    is_executable: bool = False


@dataclass
class _DirectoryBuilder:
    files: dict[str, InputFile] = field(default_factory=dict)
    directories: dict[str, _DirectoryBuilder] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)


def build_input_tree(
    files: Mapping[str, bytes | InputFile],
    *,
    symlinks: Mapping[str, str] | None = None,
    empty_directories: Sequence[str] = (),
) -> tuple[DigestKey, dict[DigestKey, bytes]]:
    """Build a Merkle tree of ``files`` (relative paths) and return its root and every blob."""
    root = _DirectoryBuilder()

    def directory_of(path: str) -> tuple[_DirectoryBuilder, str]:
        parts = path.split("/")
        node = root
        for part in parts[:-1]:
            node = node.directories.setdefault(part, _DirectoryBuilder())
        return node, parts[-1]

    for path, content in files.items():
        node, name = directory_of(posixpath.normpath(path))
        node.files[name] = content if isinstance(content, InputFile) else InputFile(content)
    for path, target in (symlinks or {}).items():
        node, name = directory_of(posixpath.normpath(path))
        node.symlinks[name] = target
    for path in empty_directories:
        node, name = directory_of(posixpath.normpath(path))
        node.directories.setdefault(name, _DirectoryBuilder())

    blobs: dict[DigestKey, bytes] = {}

    def encode(node: _DirectoryBuilder) -> DigestKey:
        message = re_pb2.Directory()
        for name in sorted(node.files):
            file = node.files[name]
            digest = digest_of_bytes(file.content)
            blobs[digest] = file.content
            message.files.add(name=name, digest=digest.to_proto(), is_executable=file.is_executable)
        for name in sorted(node.directories):
            child = encode(node.directories[name])
            message.directories.add(name=name, digest=child.to_proto())
        for name in sorted(node.symlinks):
            message.symlinks.add(name=name, target=node.symlinks[name])
        digest, data = digest_of_message(message)
        blobs[digest] = data
        return digest

    return encode(root), blobs


@dataclass
class ActionSpec:
    """What to run: a Command and the Action fields that a test varies."""

    arguments: Sequence[str]
    environment: Mapping[str, str] = field(default_factory=dict)
    output_paths: Sequence[str] = ()
    working_directory: str = ""
    platform: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 0.0
    do_not_cache: bool = False
    salt: bytes = b""


def build_action(
    spec: ActionSpec, input_root: DigestKey
) -> tuple[DigestKey, dict[DigestKey, bytes]]:
    """Return the Action's digest and the Action and Command blobs."""
    platform = re_pb2.Platform()
    for name, value in sorted(spec.platform.items()):
        platform.properties.add(name=name, value=value)
    command = re_pb2.Command(
        arguments=list(spec.arguments),
        output_paths=sorted(spec.output_paths),
        # Servers older than REAPI 2.1 read only the deprecated fields; casd and
        # BuildGrid read output_paths.
        output_files=sorted(spec.output_paths),
        working_directory=spec.working_directory,
    )
    for name, value in sorted(spec.environment.items()):
        command.environment_variables.add(name=name, value=value)
    if platform.properties:
        command.platform.CopyFrom(platform)
    command_digest, command_bytes = digest_of_message(command)

    action = re_pb2.Action(
        command_digest=command_digest.to_proto(),
        input_root_digest=input_root.to_proto(),
        do_not_cache=spec.do_not_cache,
        salt=spec.salt,
    )
    if spec.timeout_s:
        action.timeout.CopyFrom(duration_pb2.Duration(seconds=int(spec.timeout_s)))
    if platform.properties:
        action.platform.CopyFrom(platform)
    action_digest, action_bytes = digest_of_message(action)
    return action_digest, {command_digest: command_bytes, action_digest: action_bytes}


class ReapiClient:
    """REAPI calls against one ``host:port`` without TLS, for one instance name."""

    def __init__(self, address: str, instance_name: str = "") -> None:
        host, _, port = address.rpartition(":")
        self.instance_name = instance_name
        self._channel = Channel(host, int(port))
        self.capabilities_stub = re_grpc.CapabilitiesStub(self._channel)
        self.cas = re_grpc.ContentAddressableStorageStub(self._channel)
        self.action_cache = re_grpc.ActionCacheStub(self._channel)
        self.execution = re_grpc.ExecutionStub(self._channel)

    async def __aenter__(self) -> ReapiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._channel.close()

    async def capabilities(self) -> re_pb2.ServerCapabilities:
        return await self.capabilities_stub.GetCapabilities(
            re_pb2.GetCapabilitiesRequest(instance_name=self.instance_name),
            timeout=RPC_TIMEOUT_S,
        )

    async def find_missing(self, digests: Sequence[DigestKey]) -> set[DigestKey]:
        response = await self.cas.FindMissingBlobs(
            re_pb2.FindMissingBlobsRequest(
                instance_name=self.instance_name,
                blob_digests=[digest.to_proto() for digest in digests],
            ),
            timeout=RPC_TIMEOUT_S,
        )
        return {DigestKey.of(digest) for digest in response.missing_blob_digests}

    async def upload(self, blobs: Mapping[DigestKey, bytes]) -> None:
        """Upload the blobs that the server lacks in one BatchUpdateBlobs call.

        Raises AssertionError when the server rejects one. The blobs must fit in one
        gRPC message (4 MiB on both casd and BuildGrid).
        """
        missing = await self.find_missing(list(blobs))
        if not missing:
            return
        request = re_pb2.BatchUpdateBlobsRequest(instance_name=self.instance_name)
        for digest in sorted(missing):
            request.requests.add(digest=digest.to_proto(), data=blobs[digest])
        response = await self.cas.BatchUpdateBlobs(request, timeout=RPC_TIMEOUT_S)
        for entry in response.responses:
            assert entry.status.code == 0, f"upload of {DigestKey.of(entry.digest)}: {entry.status}"

    async def read_blob(self, digest: re_pb2.Digest | DigestKey) -> bytes:
        key = digest if isinstance(digest, DigestKey) else DigestKey.of(digest)
        response = await self.cas.BatchReadBlobs(
            re_pb2.BatchReadBlobsRequest(
                instance_name=self.instance_name, digests=[key.to_proto()]
            ),
            timeout=RPC_TIMEOUT_S,
        )
        (entry,) = response.responses
        assert entry.status.code == 0, f"read of {key}: {entry.status}"
        return entry.data

    async def execute(
        self, action_digest: DigestKey, *, skip_cache_lookup: bool = False
    ) -> tuple[re_pb2.ExecuteResponse, list[lro_pb2.Operation]]:
        """Run Execute to the end and return the response and every Operation received."""
        request = re_pb2.ExecuteRequest(
            instance_name=self.instance_name,
            action_digest=action_digest.to_proto(),
            skip_cache_lookup=skip_cache_lookup,
        )
        operations: list[lro_pb2.Operation] = []
        async with self.execution.Execute.open(timeout=RPC_TIMEOUT_S) as stream:
            await stream.send_message(request, end=True)
            async for operation in stream:
                operations.append(operation)
                if operation.done:
                    break
        return _execute_response(operations), operations

    async def run(
        self,
        spec: ActionSpec,
        files: Mapping[str, bytes | InputFile],
        *,
        skip_cache_lookup: bool = False,
    ) -> re_pb2.ExecuteResponse:
        """Upload an input tree, the Command and the Action, then Execute it."""
        root, blobs = build_input_tree(files)
        action_digest, action_blobs = build_action(spec, root)
        await self.upload({**blobs, **action_blobs})
        response, _ = await self.execute(action_digest, skip_cache_lookup=skip_cache_lookup)
        return response


def _execute_response(operations: list[lro_pb2.Operation]) -> re_pb2.ExecuteResponse:
    assert operations, "the Execute stream ended without an Operation"
    last = operations[-1]
    assert last.done, f"the Execute stream ended before the operation finished: {last}"
    assert not last.HasField("error"), f"operation {last.name} failed: {last.error}"
    response = re_pb2.ExecuteResponse()
    assert last.response.Unpack(response), f"operation {last.name} has no ExecuteResponse"
    return response
