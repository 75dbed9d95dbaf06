import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("active_version", "loaded_at", "rule_count", "policy_count", "last_error", "last_error_at", "reloads_ok", "reloads_failed", "failing_tests", "token_keys")
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    RULE_COUNT_FIELD_NUMBER: _ClassVar[int]
    POLICY_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    RELOADS_OK_FIELD_NUMBER: _ClassVar[int]
    RELOADS_FAILED_FIELD_NUMBER: _ClassVar[int]
    FAILING_TESTS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_KEYS_FIELD_NUMBER: _ClassVar[int]
    active_version: str
    loaded_at: _timestamp_pb2.Timestamp
    rule_count: int
    policy_count: int
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    reloads_ok: int
    reloads_failed: int
    failing_tests: _containers.RepeatedScalarFieldContainer[str]
    token_keys: TokenKeysStatus
    def __init__(self, active_version: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rule_count: _Optional[int] = ..., policy_count: _Optional[int] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reloads_ok: _Optional[int] = ..., reloads_failed: _Optional[int] = ..., failing_tests: _Optional[_Iterable[str]] = ..., token_keys: _Optional[_Union[TokenKeysStatus, _Mapping]] = ...) -> None: ...

class TokenKeysStatus(_message.Message):
    __slots__ = ("source", "jwks_uri", "key_ids", "last_success_at", "last_error", "last_error_at", "refreshes_ok", "refreshes_failed", "next_refresh_at")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    JWKS_URI_FIELD_NUMBER: _ClassVar[int]
    KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    REFRESHES_OK_FIELD_NUMBER: _ClassVar[int]
    REFRESHES_FAILED_FIELD_NUMBER: _ClassVar[int]
    NEXT_REFRESH_AT_FIELD_NUMBER: _ClassVar[int]
    source: str
    jwks_uri: str
    key_ids: _containers.RepeatedScalarFieldContainer[str]
    last_success_at: _timestamp_pb2.Timestamp
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    refreshes_ok: int
    refreshes_failed: int
    next_refresh_at: _timestamp_pb2.Timestamp
    def __init__(self, source: _Optional[str] = ..., jwks_uri: _Optional[str] = ..., key_ids: _Optional[_Iterable[str]] = ..., last_success_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., refreshes_ok: _Optional[int] = ..., refreshes_failed: _Optional[int] = ..., next_refresh_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
