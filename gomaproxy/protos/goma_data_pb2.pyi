import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FileBlob(_message.Message):
    __slots__ = ("blob_type", "offset", "content", "file_size", "hash_key")
    class BlobType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        FILE_UNSPECIFIED: _ClassVar[FileBlob.BlobType]
        FILE: _ClassVar[FileBlob.BlobType]
        FILE_META: _ClassVar[FileBlob.BlobType]
        FILE_CHUNK: _ClassVar[FileBlob.BlobType]
        FILE_REF: _ClassVar[FileBlob.BlobType]
    FILE_UNSPECIFIED: FileBlob.BlobType
    FILE: FileBlob.BlobType
    FILE_META: FileBlob.BlobType
    FILE_CHUNK: FileBlob.BlobType
    FILE_REF: FileBlob.BlobType
    BLOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASH_KEY_FIELD_NUMBER: _ClassVar[int]
    blob_type: FileBlob.BlobType
    offset: int
    content: bytes
    file_size: int
    hash_key: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, blob_type: _Optional[_Union[FileBlob.BlobType, str]] = ..., offset: _Optional[int] = ..., content: _Optional[bytes] = ..., file_size: _Optional[int] = ..., hash_key: _Optional[_Iterable[str]] = ...) -> None: ...

class CommandSpec(_message.Message):
    __slots__ = ("name", "version", "target", "size", "binary_hash", "equivalent_hash", "detailed_info", "local_compiler_path", "system_include_path", "cxx_system_include_path", "system_framework_path", "system_library_path", "comment")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BINARY_HASH_FIELD_NUMBER: _ClassVar[int]
    EQUIVALENT_HASH_FIELD_NUMBER: _ClassVar[int]
    DETAILED_INFO_FIELD_NUMBER: _ClassVar[int]
    LOCAL_COMPILER_PATH_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_INCLUDE_PATH_FIELD_NUMBER: _ClassVar[int]
    CXX_SYSTEM_INCLUDE_PATH_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FRAMEWORK_PATH_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_LIBRARY_PATH_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    target: str
    size: int
    binary_hash: bytes
    equivalent_hash: _containers.RepeatedScalarFieldContainer[bytes]
    detailed_info: str
    local_compiler_path: str
    system_include_path: _containers.RepeatedScalarFieldContainer[str]
    cxx_system_include_path: _containers.RepeatedScalarFieldContainer[str]
    system_framework_path: _containers.RepeatedScalarFieldContainer[str]
    system_library_path: _containers.RepeatedScalarFieldContainer[str]
    comment: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., target: _Optional[str] = ..., size: _Optional[int] = ..., binary_hash: _Optional[bytes] = ..., equivalent_hash: _Optional[_Iterable[bytes]] = ..., detailed_info: _Optional[str] = ..., local_compiler_path: _Optional[str] = ..., system_include_path: _Optional[_Iterable[str]] = ..., cxx_system_include_path: _Optional[_Iterable[str]] = ..., system_framework_path: _Optional[_Iterable[str]] = ..., system_library_path: _Optional[_Iterable[str]] = ..., comment: _Optional[str] = ...) -> None: ...

class SubprogramSpec(_message.Message):
    __slots__ = ("path", "binary_hash", "size")
    PATH_FIELD_NUMBER: _ClassVar[int]
    BINARY_HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    path: str
    binary_hash: str
    size: int
    def __init__(self, path: _Optional[str] = ..., binary_hash: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ToolchainSpec(_message.Message):
    __slots__ = ("path", "hash", "size", "is_executable", "symlink_path")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    IS_EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    SYMLINK_PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    hash: str
    size: int
    is_executable: bool
    symlink_path: str
    def __init__(self, path: _Optional[str] = ..., hash: _Optional[str] = ..., size: _Optional[int] = ..., is_executable: _Optional[bool] = ..., symlink_path: _Optional[str] = ...) -> None: ...

class ExecResult(_message.Message):
    __slots__ = ("exit_status", "stdout_buffer", "stderr_buffer", "command_spec", "subprogram", "output")
    class Output(_message.Message):
        __slots__ = ("filename", "blob", "is_executable")
        FILENAME_FIELD_NUMBER: _ClassVar[int]
        BLOB_FIELD_NUMBER: _ClassVar[int]
        IS_EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
        filename: str
        blob: FileBlob
        is_executable: bool
        def __init__(self, filename: _Optional[str] = ..., blob: _Optional[_Union[FileBlob, _Mapping]] = ..., is_executable: _Optional[bool] = ...) -> None: ...
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    STDOUT_BUFFER_FIELD_NUMBER: _ClassVar[int]
    STDERR_BUFFER_FIELD_NUMBER: _ClassVar[int]
    COMMAND_SPEC_FIELD_NUMBER: _ClassVar[int]
    SUBPROGRAM_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    exit_status: int
    stdout_buffer: bytes
    stderr_buffer: bytes
    command_spec: CommandSpec
    subprogram: _containers.RepeatedCompositeFieldContainer[SubprogramSpec]
    output: _containers.RepeatedCompositeFieldContainer[ExecResult.Output]
    def __init__(self, exit_status: _Optional[int] = ..., stdout_buffer: _Optional[bytes] = ..., stderr_buffer: _Optional[bytes] = ..., command_spec: _Optional[_Union[CommandSpec, _Mapping]] = ..., subprogram: _Optional[_Iterable[_Union[SubprogramSpec, _Mapping]]] = ..., output: _Optional[_Iterable[_Union[ExecResult.Output, _Mapping]]] = ...) -> None: ...

class PlatformProperty(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class RequesterInfo(_message.Message):
    __slots__ = ("addr", "username", "compiler_proxy_id", "api_version", "pid", "retry", "goma_revision", "build_id", "dimensions", "path_style", "exec_root", "platform_properties")
    class GomaApiVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CURRENT_VERSION: _ClassVar[RequesterInfo.GomaApiVersion]
    CURRENT_VERSION: RequesterInfo.GomaApiVersion
    class PathStyle(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN_STYLE: _ClassVar[RequesterInfo.PathStyle]
        POSIX_STYLE: _ClassVar[RequesterInfo.PathStyle]
        WINDOWS_STYLE: _ClassVar[RequesterInfo.PathStyle]
    UNKNOWN_STYLE: RequesterInfo.PathStyle
    POSIX_STYLE: RequesterInfo.PathStyle
    WINDOWS_STYLE: RequesterInfo.PathStyle
    ADDR_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_ID_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    GOMA_REVISION_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    PATH_STYLE_FIELD_NUMBER: _ClassVar[int]
    EXEC_ROOT_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    addr: str
    username: str
    compiler_proxy_id: str
    api_version: int
    pid: int
    retry: int
    goma_revision: str
    build_id: str
    dimensions: _containers.RepeatedScalarFieldContainer[str]
    path_style: RequesterInfo.PathStyle
    exec_root: str
    platform_properties: _containers.RepeatedCompositeFieldContainer[PlatformProperty]
    def __init__(self, addr: _Optional[str] = ..., username: _Optional[str] = ..., compiler_proxy_id: _Optional[str] = ..., api_version: _Optional[int] = ..., pid: _Optional[int] = ..., retry: _Optional[int] = ..., goma_revision: _Optional[str] = ..., build_id: _Optional[str] = ..., dimensions: _Optional[_Iterable[str]] = ..., path_style: _Optional[_Union[RequesterInfo.PathStyle, str]] = ..., exec_root: _Optional[str] = ..., platform_properties: _Optional[_Iterable[_Union[PlatformProperty, _Mapping]]] = ...) -> None: ...

class RequesterEnv(_message.Message):
    __slots__ = ("gomacc_path", "local_path", "umask", "verify_output", "use_local", "fallback", "verify_command", "fallback_input_file")
    GOMACC_PATH_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PATH_FIELD_NUMBER: _ClassVar[int]
    UMASK_FIELD_NUMBER: _ClassVar[int]
    VERIFY_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    USE_LOCAL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    VERIFY_COMMAND_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_INPUT_FILE_FIELD_NUMBER: _ClassVar[int]
    gomacc_path: str
    local_path: str
    umask: int
    verify_output: bool
    use_local: bool
    fallback: bool
    verify_command: str
    fallback_input_file: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gomacc_path: _Optional[str] = ..., local_path: _Optional[str] = ..., umask: _Optional[int] = ..., verify_output: _Optional[bool] = ..., use_local: _Optional[bool] = ..., fallback: _Optional[bool] = ..., verify_command: _Optional[str] = ..., fallback_input_file: _Optional[_Iterable[str]] = ...) -> None: ...

class ExecReq(_message.Message):
    __slots__ = ("command_spec", "arg", "env", "cwd", "original_cwd", "input", "expanded_arg", "subprogram", "requester_info", "cache_policy", "requester_env", "hermetic_mode", "trace", "expected_output_files", "expected_output_dirs", "toolchain_included", "toolchain_specs")
    class CachePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        LOOKUP_AND_STORE: _ClassVar[ExecReq.CachePolicy]
        LOOKUP_ONLY: _ClassVar[ExecReq.CachePolicy]
        STORE_ONLY: _ClassVar[ExecReq.CachePolicy]
        LOOKUP_AND_STORE_SUCCESS: _ClassVar[ExecReq.CachePolicy]
    LOOKUP_AND_STORE: ExecReq.CachePolicy
    LOOKUP_ONLY: ExecReq.CachePolicy
    STORE_ONLY: ExecReq.CachePolicy
    LOOKUP_AND_STORE_SUCCESS: ExecReq.CachePolicy
    class Input(_message.Message):
        __slots__ = ("filename", "hash_key", "content")
        FILENAME_FIELD_NUMBER: _ClassVar[int]
        HASH_KEY_FIELD_NUMBER: _ClassVar[int]
        CONTENT_FIELD_NUMBER: _ClassVar[int]
        filename: str
        hash_key: str
        content: FileBlob
        def __init__(self, filename: _Optional[str] = ..., hash_key: _Optional[str] = ..., content: _Optional[_Union[FileBlob, _Mapping]] = ...) -> None: ...
    COMMAND_SPEC_FIELD_NUMBER: _ClassVar[int]
    ARG_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_CWD_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    EXPANDED_ARG_FIELD_NUMBER: _ClassVar[int]
    SUBPROGRAM_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_INFO_FIELD_NUMBER: _ClassVar[int]
    CACHE_POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_ENV_FIELD_NUMBER: _ClassVar[int]
    HERMETIC_MODE_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_OUTPUT_FILES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_OUTPUT_DIRS_FIELD_NUMBER: _ClassVar[int]
    TOOLCHAIN_INCLUDED_FIELD_NUMBER: _ClassVar[int]
    TOOLCHAIN_SPECS_FIELD_NUMBER: _ClassVar[int]
    command_spec: CommandSpec
    arg: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    original_cwd: str
    input: _containers.RepeatedCompositeFieldContainer[ExecReq.Input]
    expanded_arg: _containers.RepeatedScalarFieldContainer[str]
    subprogram: _containers.RepeatedCompositeFieldContainer[SubprogramSpec]
    requester_info: RequesterInfo
    cache_policy: ExecReq.CachePolicy
    requester_env: RequesterEnv
    hermetic_mode: bool
    trace: bool
    expected_output_files: _containers.RepeatedScalarFieldContainer[str]
    expected_output_dirs: _containers.RepeatedScalarFieldContainer[str]
    toolchain_included: bool
    toolchain_specs: _containers.RepeatedCompositeFieldContainer[ToolchainSpec]
    def __init__(self, command_spec: _Optional[_Union[CommandSpec, _Mapping]] = ..., arg: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., original_cwd: _Optional[str] = ..., input: _Optional[_Iterable[_Union[ExecReq.Input, _Mapping]]] = ..., expanded_arg: _Optional[_Iterable[str]] = ..., subprogram: _Optional[_Iterable[_Union[SubprogramSpec, _Mapping]]] = ..., requester_info: _Optional[_Union[RequesterInfo, _Mapping]] = ..., cache_policy: _Optional[_Union[ExecReq.CachePolicy, str]] = ..., requester_env: _Optional[_Union[RequesterEnv, _Mapping]] = ..., hermetic_mode: _Optional[bool] = ..., trace: _Optional[bool] = ..., expected_output_files: _Optional[_Iterable[str]] = ..., expected_output_dirs: _Optional[_Iterable[str]] = ..., toolchain_included: _Optional[bool] = ..., toolchain_specs: _Optional[_Iterable[_Union[ToolchainSpec, _Mapping]]] = ...) -> None: ...

class ExecutionStats(_message.Message):
    __slots__ = ("execution_start_timestamp", "execution_completed_timestamp")
    EXECUTION_START_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_COMPLETED_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    execution_start_timestamp: _timestamp_pb2.Timestamp
    execution_completed_timestamp: _timestamp_pb2.Timestamp
    def __init__(self, execution_start_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., execution_completed_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExecResp(_message.Message):
    __slots__ = ("result", "error", "bad_request_reason_code", "missing_input", "missing_reason", "error_message", "force_store_output_file_for_unmatched_hash", "force_store_output_file_for_unmatched_version", "force_store_output_file_for_unmatched_subprograms", "cache_key", "cache_hit", "requester_compiler_proxy_id", "compiler_proxy_time", "compiler_proxy_include_preproc_time", "compiler_proxy_include_fileload_time", "compiler_proxy_rpc_call_time", "compiler_proxy_file_response_time", "compiler_proxy_rpc_build_time", "compiler_proxy_rpc_send_time", "compiler_proxy_rpc_wait_time", "compiler_proxy_rpc_recv_time", "compiler_proxy_rpc_parse_time", "compiler_proxy_local_pending_time", "compiler_proxy_local_run_time", "compiler_proxy_goma_finished", "compiler_proxy_goma_cache_hit", "compiler_proxy_goma_aborted", "compiler_proxy_goma_error", "compiler_proxy_local_finished", "compiler_proxy_local_run", "compiler_proxy_local_killed", "compiler_proxy_exec_request_retry", "execution_stats")
    class ExecError(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OK: _ClassVar[ExecResp.ExecError]
        BAD_REQUEST: _ClassVar[ExecResp.ExecError]
    OK: ExecResp.ExecError
    BAD_REQUEST: ExecResp.ExecError
    class BadRequestReasonCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[ExecResp.BadRequestReasonCode]
        UNSUPPORTED_COMPILER_FLAGS: _ClassVar[ExecResp.BadRequestReasonCode]
    UNKNOWN: ExecResp.BadRequestReasonCode
    UNSUPPORTED_COMPILER_FLAGS: ExecResp.BadRequestReasonCode
    class CacheSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NO_CACHE: _ClassVar[ExecResp.CacheSource]
        MEM_CACHE: _ClassVar[ExecResp.CacheSource]
        STORAGE_CACHE: _ClassVar[ExecResp.CacheSource]
        LOCAL_OUTPUT_CACHE: _ClassVar[ExecResp.CacheSource]
    NO_CACHE: ExecResp.CacheSource
    MEM_CACHE: ExecResp.CacheSource
    STORAGE_CACHE: ExecResp.CacheSource
    LOCAL_OUTPUT_CACHE: ExecResp.CacheSource
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BAD_REQUEST_REASON_CODE_FIELD_NUMBER: _ClassVar[int]
    MISSING_INPUT_FIELD_NUMBER: _ClassVar[int]
    MISSING_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FORCE_STORE_OUTPUT_FILE_FOR_UNMATCHED_HASH_FIELD_NUMBER: _ClassVar[int]
    FORCE_STORE_OUTPUT_FILE_FOR_UNMATCHED_VERSION_FIELD_NUMBER: _ClassVar[int]
    FORCE_STORE_OUTPUT_FILE_FOR_UNMATCHED_SUBPROGRAMS_FIELD_NUMBER: _ClassVar[int]
    CACHE_KEY_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_COMPILER_PROXY_ID_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_INCLUDE_PREPROC_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_INCLUDE_FILELOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_RPC_CALL_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_FILE_RESPONSE_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_RPC_BUILD_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_RPC_SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_RPC_WAIT_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_RPC_RECV_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_RPC_PARSE_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_LOCAL_PENDING_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_LOCAL_RUN_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_GOMA_FINISHED_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_GOMA_CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_GOMA_ABORTED_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_GOMA_ERROR_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_LOCAL_FINISHED_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_LOCAL_RUN_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_LOCAL_KILLED_FIELD_NUMBER: _ClassVar[int]
    COMPILER_PROXY_EXEC_REQUEST_RETRY_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_STATS_FIELD_NUMBER: _ClassVar[int]
    result: ExecResult
    error: ExecResp.ExecError
    bad_request_reason_code: ExecResp.BadRequestReasonCode
    missing_input: _containers.RepeatedScalarFieldContainer[str]
    missing_reason: _containers.RepeatedScalarFieldContainer[str]
    error_message: _containers.RepeatedScalarFieldContainer[str]
    force_store_output_file_for_unmatched_hash: bool
    force_store_output_file_for_unmatched_version: bool
    force_store_output_file_for_unmatched_subprograms: bool
    cache_key: str
    cache_hit: ExecResp.CacheSource
    requester_compiler_proxy_id: str
    compiler_proxy_time: float
    compiler_proxy_include_preproc_time: float
    compiler_proxy_include_fileload_time: float
    compiler_proxy_rpc_call_time: float
    compiler_proxy_file_response_time: float
    compiler_proxy_rpc_build_time: float
    compiler_proxy_rpc_send_time: float
    compiler_proxy_rpc_wait_time: float
    compiler_proxy_rpc_recv_time: float
    compiler_proxy_rpc_parse_time: float
    compiler_proxy_local_pending_time: float
    compiler_proxy_local_run_time: float
    compiler_proxy_goma_finished: bool
    compiler_proxy_goma_cache_hit: bool
    compiler_proxy_goma_aborted: bool
    compiler_proxy_goma_error: bool
    compiler_proxy_local_finished: bool
    compiler_proxy_local_run: bool
    compiler_proxy_local_killed: bool
    compiler_proxy_exec_request_retry: int
    execution_stats: ExecutionStats
    def __init__(self, result: _Optional[_Union[ExecResult, _Mapping]] = ..., error: _Optional[_Union[ExecResp.ExecError, str]] = ..., bad_request_reason_code: _Optional[_Union[ExecResp.BadRequestReasonCode, str]] = ..., missing_input: _Optional[_Iterable[str]] = ..., missing_reason: _Optional[_Iterable[str]] = ..., error_message: _Optional[_Iterable[str]] = ..., force_store_output_file_for_unmatched_hash: _Optional[bool] = ..., force_store_output_file_for_unmatched_version: _Optional[bool] = ..., force_store_output_file_for_unmatched_subprograms: _Optional[bool] = ..., cache_key: _Optional[str] = ..., cache_hit: _Optional[_Union[ExecResp.CacheSource, str]] = ..., requester_compiler_proxy_id: _Optional[str] = ..., compiler_proxy_time: _Optional[float] = ..., compiler_proxy_include_preproc_time: _Optional[float] = ..., compiler_proxy_include_fileload_time: _Optional[float] = ..., compiler_proxy_rpc_call_time: _Optional[float] = ..., compiler_proxy_file_response_time: _Optional[float] = ..., compiler_proxy_rpc_build_time: _Optional[float] = ..., compiler_proxy_rpc_send_time: _Optional[float] = ..., compiler_proxy_rpc_wait_time: _Optional[float] = ..., compiler_proxy_rpc_recv_time: _Optional[float] = ..., compiler_proxy_rpc_parse_time: _Optional[float] = ..., compiler_proxy_local_pending_time: _Optional[float] = ..., compiler_proxy_local_run_time: _Optional[float] = ..., compiler_proxy_goma_finished: _Optional[bool] = ..., compiler_proxy_goma_cache_hit: _Optional[bool] = ..., compiler_proxy_goma_aborted: _Optional[bool] = ..., compiler_proxy_goma_error: _Optional[bool] = ..., compiler_proxy_local_finished: _Optional[bool] = ..., compiler_proxy_local_run: _Optional[bool] = ..., compiler_proxy_local_killed: _Optional[bool] = ..., compiler_proxy_exec_request_retry: _Optional[int] = ..., execution_stats: _Optional[_Union[ExecutionStats, _Mapping]] = ...) -> None: ...

class StoreFileReq(_message.Message):
    __slots__ = ("blob", "requester_info")
    BLOB_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_INFO_FIELD_NUMBER: _ClassVar[int]
    blob: _containers.RepeatedCompositeFieldContainer[FileBlob]
    requester_info: RequesterInfo
    def __init__(self, blob: _Optional[_Iterable[_Union[FileBlob, _Mapping]]] = ..., requester_info: _Optional[_Union[RequesterInfo, _Mapping]] = ...) -> None: ...

class StoreFileResp(_message.Message):
    __slots__ = ("hash_key",)
    HASH_KEY_FIELD_NUMBER: _ClassVar[int]
    hash_key: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hash_key: _Optional[_Iterable[str]] = ...) -> None: ...

class LookupFileReq(_message.Message):
    __slots__ = ("hash_key", "requester_info")
    HASH_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_INFO_FIELD_NUMBER: _ClassVar[int]
    hash_key: _containers.RepeatedScalarFieldContainer[str]
    requester_info: RequesterInfo
    def __init__(self, hash_key: _Optional[_Iterable[str]] = ..., requester_info: _Optional[_Union[RequesterInfo, _Mapping]] = ...) -> None: ...

class LookupFileResp(_message.Message):
    __slots__ = ("blob",)
    BLOB_FIELD_NUMBER: _ClassVar[int]
    blob: _containers.RepeatedCompositeFieldContainer[FileBlob]
    def __init__(self, blob: _Optional[_Iterable[_Union[FileBlob, _Mapping]]] = ...) -> None: ...

class EmptyMessage(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HttpPortResponse(_message.Message):
    __slots__ = ("port",)
    PORT_FIELD_NUMBER: _ClassVar[int]
    port: int
    def __init__(self, port: _Optional[int] = ...) -> None: ...

class SaveLogReq(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SaveLogResp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
