"""Wire facts of the generated protobuf and grpclib modules.

Field numbers, tags and method paths here are fixed by the goma client and by
the public REAPI, ByteStream and longrunning definitions. A change to any of
them breaks interoperability, so each one is pinned separately.
"""

import grpclib.client
import grpclib.const
import pytest
from google.protobuf import any_pb2
from google.protobuf.message import EncodeError

from gomaproxy.protos import (
    bytestream_grpc,
    bytestream_pb2,
    goma_data_pb2,
    longrunning_grpc,
    longrunning_pb2,
    remote_execution_grpc,
    remote_execution_pb2,
    semver_pb2,
)

GROUP_START_TAG_FIELD_10 = 0x53  # (10 << 3) | 3
GROUP_END_TAG_FIELD_10 = 0x54  # (10 << 3) | 4


def field_number(message_class, name: str) -> int:
    return message_class.DESCRIPTOR.fields_by_name[name].number


# goma_data.proto


def test_exec_req_input_is_group():
    request = goma_data_pb2.ExecReq()
    request.command_spec.name = "clang"
    entry = request.input.add()
    entry.filename = "a.c"
    entry.hash_key = "0" * 64

    data = request.SerializeToString()

    # command_spec (field 1, 7 bytes long) comes before the group.
    assert data[:2] == b"\x0a\x07"
    group_start = data.index(bytes([GROUP_START_TAG_FIELD_10]))
    assert data[-1] == GROUP_END_TAG_FIELD_10
    assert data[group_start + 1 : group_start + 6] == b"\x5a\x03a.c"
    assert data.count(bytes([GROUP_END_TAG_FIELD_10])) == 1


def test_exec_req_input_group_bytes():
    request = goma_data_pb2.ExecReq()
    request.command_spec.SetInParent()
    request.input.add(hash_key="k")

    data = request.SerializeToString()

    assert data == b"\x0a\x00\x53\x62\x01k\x54"


def test_exec_req_input_round_trip():
    request = goma_data_pb2.ExecReq()
    request.command_spec.SetInParent()
    request.input.add(filename="a.c", hash_key="k1")
    request.input.add(filename="b.h", hash_key="k2")

    parsed = goma_data_pb2.ExecReq.FromString(request.SerializeToString())

    assert [entry.filename for entry in parsed.input] == ["a.c", "b.h"]
    assert [entry.hash_key for entry in parsed.input] == ["k1", "k2"]


def test_exec_req_requires_command_spec():
    request = goma_data_pb2.ExecReq()

    with pytest.raises(EncodeError):
        request.SerializeToString()


def test_exec_req_input_requires_hash_key():
    request = goma_data_pb2.ExecReq()
    request.command_spec.SetInParent()
    request.input.add(filename="a.c")

    with pytest.raises(EncodeError):
        request.SerializeToString()


def test_exec_req_original_cwd_is_field_5():
    assert field_number(goma_data_pb2.ExecReq, "original_cwd") == 5


def test_exec_req_cache_policy_default():
    request = goma_data_pb2.ExecReq()

    assert request.cache_policy == goma_data_pb2.ExecReq.LOOKUP_AND_STORE
    assert goma_data_pb2.ExecReq.LOOKUP_AND_STORE == 1
    assert goma_data_pb2.ExecReq.LOOKUP_AND_STORE_SUCCESS == 4
    assert not request.HasField("cache_policy")


def test_exec_result_exit_status_default():
    result = goma_data_pb2.ExecResult()

    assert result.exit_status == -1
    assert not result.HasField("exit_status")


def test_exec_result_exit_status_zero_serialized():
    result = goma_data_pb2.ExecResult(exit_status=0)

    assert result.SerializeToString() == b"\x08\x00"


def test_exec_result_requires_exit_status():
    with pytest.raises(EncodeError):
        goma_data_pb2.ExecResult().SerializeToString()


def test_exec_result_output_is_group():
    result = goma_data_pb2.ExecResult(exit_status=0)
    output = result.output.add(filename="a.o")
    output.blob.blob_type = goma_data_pb2.FileBlob.FILE
    output.blob.content = b""

    data = result.SerializeToString()

    assert data[2] == GROUP_START_TAG_FIELD_10
    assert data[-1] == GROUP_END_TAG_FIELD_10
    assert result.output[0].is_executable is False


def test_file_blob_bytes():
    blob = goma_data_pb2.FileBlob(
        blob_type=goma_data_pb2.FileBlob.FILE,
        content=b"int main(){}\n",
        file_size=13,
    )

    expected = bytes.fromhex("08 01 5a 0d 69 6e 74 20 6d 61 69 6e 28 29 7b 7d 0a a0 01 0d")
    assert blob.SerializeToString() == expected


def test_file_blob_explicit_presence():
    blob = goma_data_pb2.FileBlob(
        blob_type=goma_data_pb2.FileBlob.FILE_CHUNK,
        offset=0,
        content=b"",
        file_size=0,
    )

    assert blob.SerializeToString() == b"\x08\x03\x50\x00\x5a\x00\xa0\x01\x00"


def test_file_blob_unspecified_type_serialized():
    blob = goma_data_pb2.FileBlob(blob_type=goma_data_pb2.FileBlob.FILE_UNSPECIFIED)

    assert blob.SerializeToString() == b"\x08\x00"


def test_file_blob_requires_blob_type():
    with pytest.raises(EncodeError):
        goma_data_pb2.FileBlob(content=b"x").SerializeToString()


def test_file_blob_type_values():
    assert goma_data_pb2.FileBlob.FILE_UNSPECIFIED == 0
    assert goma_data_pb2.FileBlob.FILE == 1
    assert goma_data_pb2.FileBlob.FILE_META == 2
    assert goma_data_pb2.FileBlob.FILE_CHUNK == 3
    assert goma_data_pb2.FileBlob.FILE_REF == 5


def test_lookup_file_resp_blob_is_field_2():
    assert field_number(goma_data_pb2.LookupFileResp, "blob") == 2


def test_exec_resp_defaults_and_enums():
    response = goma_data_pb2.ExecResp()

    assert response.error == goma_data_pb2.ExecResp.OK
    assert goma_data_pb2.ExecResp.BAD_REQUEST == -1
    assert response.bad_request_reason_code == goma_data_pb2.ExecResp.UNKNOWN
    assert goma_data_pb2.ExecResp.UNSUPPORTED_COMPILER_FLAGS == 1
    assert goma_data_pb2.ExecResp.STORAGE_CACHE == 2


def test_exec_resp_field_numbers():
    expected = {
        "result": 1,
        "error": 2,
        "bad_request_reason_code": 3,
        "missing_input": 11,
        "error_message": 12,
        "missing_reason": 15,
        "cache_key": 21,
        "requester_compiler_proxy_id": 26,
        "cache_hit": 27,
        "compiler_proxy_time": 50,
        "compiler_proxy_local_run_time": 61,
        "compiler_proxy_goma_finished": 70,
        "compiler_proxy_local_killed": 76,
        "compiler_proxy_exec_request_retry": 80,
        "execution_stats": 81,
    }
    for name, number in expected.items():
        assert field_number(goma_data_pb2.ExecResp, name) == number, name


def test_requester_info_api_version_default():
    info = goma_data_pb2.RequesterInfo()

    assert info.api_version == 2
    assert goma_data_pb2.RequesterInfo.CURRENT_VERSION == 2
    assert goma_data_pb2.RequesterInfo.POSIX_STYLE == 1


def test_http_port_response_requires_port():
    with pytest.raises(EncodeError):
        goma_data_pb2.HttpPortResponse().SerializeToString()


def test_save_log_req_keeps_unknown_fields():
    # exec_log (field 1) with an empty ExecLog, as a real client may send.
    data = b"\x0a\x00"

    request = goma_data_pb2.SaveLogReq.FromString(data)

    assert request.SerializeToString() == data
    assert goma_data_pb2.SaveLogResp().SerializeToString() == b""


# remote_execution.proto and semver.proto


def test_reapi_field_numbers():
    cases = [
        (remote_execution_pb2.FindMissingBlobsResponse, "missing_blob_digests", 2),
        (remote_execution_pb2.ActionResult, "exit_code", 4),
        (remote_execution_pb2.Action, "platform", 10),
        (remote_execution_pb2.Command, "output_paths", 7),
        (remote_execution_pb2.ExecuteRequest, "action_digest", 6),
    ]
    for message_class, name, number in cases:
        assert field_number(message_class, name) == number, f"{message_class.__name__}.{name}"


def test_reapi_more_field_numbers():
    cases = [
        (remote_execution_pb2.Digest, "size_bytes", 2),
        (remote_execution_pb2.Action, "do_not_cache", 7),
        (remote_execution_pb2.Action, "salt", 9),
        (remote_execution_pb2.Command, "working_directory", 6),
        (remote_execution_pb2.Command, "output_directory_format", 9),
        (remote_execution_pb2.FileNode, "is_executable", 4),
        (remote_execution_pb2.FileNode, "node_properties", 6),
        (remote_execution_pb2.ActionResult, "output_symlinks", 12),
        (remote_execution_pb2.ActionResult, "execution_metadata", 9),
        (remote_execution_pb2.OutputFile, "contents", 5),
        (remote_execution_pb2.OutputDirectory, "tree_digest", 3),
        (remote_execution_pb2.ExecutedActionMetadata, "virtual_execution_duration", 12),
        (remote_execution_pb2.ExecuteResponse, "message", 5),
        (remote_execution_pb2.BatchReadBlobsResponse.Response, "compressor", 4),
        (remote_execution_pb2.BatchUpdateBlobsRequest, "digest_function", 5),
        (remote_execution_pb2.CacheCapabilities, "supported_batch_update_compressors", 7),
        (remote_execution_pb2.RequestMetadata, "configuration_id", 7),
        (semver_pb2.SemVer, "prerelease", 4),
    ]
    for message_class, name, number in cases:
        assert field_number(message_class, name) == number, f"{message_class.__name__}.{name}"


def test_reapi_enum_values():
    assert remote_execution_pb2.DigestFunction.SHA256 == 1
    assert remote_execution_pb2.DigestFunction.BLAKE3 == 9
    assert remote_execution_pb2.ExecutionStage.COMPLETED == 4
    assert remote_execution_pb2.Compressor.ZSTD == 1
    assert remote_execution_pb2.SymlinkAbsolutePathStrategy.ALLOWED == 2


def test_execute_response_server_logs_map():
    response = remote_execution_pb2.ExecuteResponse()
    response.server_logs["worker"].human_readable = True

    parsed = remote_execution_pb2.ExecuteResponse.FromString(response.SerializeToString())

    assert parsed.server_logs["worker"].human_readable is True


# gRPC method paths


@pytest.fixture
def channel():
    # The channel connects lazily, so building stubs opens no connection.
    channel = grpclib.client.Channel("127.0.0.1", 1)
    yield channel
    channel.close()


def test_execution_stub_paths(channel):
    stub = remote_execution_grpc.ExecutionStub(channel)

    assert stub.Execute.name == "/build.bazel.remote.execution.v2.Execution/Execute"
    assert isinstance(stub.Execute, grpclib.client.UnaryStreamMethod)
    assert stub.WaitExecution.name == "/build.bazel.remote.execution.v2.Execution/WaitExecution"
    assert isinstance(stub.WaitExecution, grpclib.client.UnaryStreamMethod)


def test_action_cache_stub_paths(channel):
    stub = remote_execution_grpc.ActionCacheStub(channel)

    assert stub.GetActionResult.name == (
        "/build.bazel.remote.execution.v2.ActionCache/GetActionResult"
    )
    assert stub.UpdateActionResult.name == (
        "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult"
    )


def test_cas_stub_paths(channel):
    stub = remote_execution_grpc.ContentAddressableStorageStub(channel)
    prefix = "/build.bazel.remote.execution.v2.ContentAddressableStorage/"

    assert stub.FindMissingBlobs.name == prefix + "FindMissingBlobs"
    assert stub.BatchUpdateBlobs.name == prefix + "BatchUpdateBlobs"
    assert stub.BatchReadBlobs.name == prefix + "BatchReadBlobs"
    assert stub.GetTree.name == prefix + "GetTree"
    assert isinstance(stub.GetTree, grpclib.client.UnaryStreamMethod)


def test_capabilities_stub_path(channel):
    stub = remote_execution_grpc.CapabilitiesStub(channel)

    assert stub.GetCapabilities.name == (
        "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities"
    )


def test_bytestream_stub_paths(channel):
    stub = bytestream_grpc.ByteStreamStub(channel)

    assert stub.Read.name == "/google.bytestream.ByteStream/Read"
    assert isinstance(stub.Read, grpclib.client.UnaryStreamMethod)
    assert stub.Write.name == "/google.bytestream.ByteStream/Write"
    assert isinstance(stub.Write, grpclib.client.StreamUnaryMethod)
    assert stub.QueryWriteStatus.name == "/google.bytestream.ByteStream/QueryWriteStatus"


def test_operations_stub_paths(channel):
    stub = longrunning_grpc.OperationsStub(channel)

    assert stub.GetOperation.name == "/google.longrunning.Operations/GetOperation"
    assert stub.CancelOperation.name == "/google.longrunning.Operations/CancelOperation"


def test_bytestream_server_mapping():
    class ByteStream(bytestream_grpc.ByteStreamBase):
        async def Read(self, stream):
            pass

        async def Write(self, stream):
            pass

        async def QueryWriteStatus(self, stream):
            pass

    mapping = ByteStream().__mapping__()

    read = mapping["/google.bytestream.ByteStream/Read"]
    assert read.cardinality == grpclib.const.Cardinality.UNARY_STREAM
    write = mapping["/google.bytestream.ByteStream/Write"]
    assert write.cardinality == grpclib.const.Cardinality.STREAM_UNARY


# longrunning.proto


def test_operation_any_type_url():
    response = remote_execution_pb2.ExecuteResponse()
    response.result.exit_code = 1
    operation = longrunning_pb2.Operation(name="operations/1", done=True)
    operation.response.Pack(response)

    assert operation.response.type_url == (
        "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse"
    )
    assert operation.WhichOneof("result") == "response"


def test_operation_any_round_trip():
    metadata = remote_execution_pb2.ExecuteOperationMetadata(
        stage=remote_execution_pb2.ExecutionStage.EXECUTING
    )
    operation = longrunning_pb2.Operation(name="operations/1")
    operation.metadata.Pack(metadata)

    parsed = longrunning_pb2.Operation.FromString(operation.SerializeToString())
    unpacked = remote_execution_pb2.ExecuteOperationMetadata()

    assert parsed.metadata.Unpack(unpacked)
    assert unpacked.stage == remote_execution_pb2.ExecutionStage.EXECUTING
    assert isinstance(parsed.metadata, any_pb2.Any)


def test_operation_field_numbers():
    assert field_number(longrunning_pb2.Operation, "metadata") == 2
    assert field_number(longrunning_pb2.Operation, "done") == 3
    assert field_number(longrunning_pb2.Operation, "error") == 4
    assert field_number(longrunning_pb2.Operation, "response") == 5


def test_bytestream_field_numbers():
    assert field_number(bytestream_pb2.ReadResponse, "data") == 10
    assert field_number(bytestream_pb2.WriteRequest, "finish_write") == 3
    assert field_number(bytestream_pb2.WriteRequest, "data") == 10
    assert field_number(bytestream_pb2.QueryWriteStatusResponse, "complete") == 2
