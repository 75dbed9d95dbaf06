from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Effect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EFFECT_UNSPECIFIED: _ClassVar[Effect]
    EFFECT_ALLOW: _ClassVar[Effect]
    EFFECT_DENY: _ClassVar[Effect]

class TraceStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACE_STAGE_UNSPECIFIED: _ClassVar[TraceStage]
    TRACE_STAGE_SCHEMA: _ClassVar[TraceStage]
    TRACE_STAGE_DENY: _ClassVar[TraceStage]
    TRACE_STAGE_SCOPE_GATE: _ClassVar[TraceStage]
    TRACE_STAGE_ALLOW: _ClassVar[TraceStage]

class TraceOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRACE_OUTCOME_UNSPECIFIED: _ClassVar[TraceOutcome]
    TRACE_OUTCOME_PRINCIPAL_NOT_MATCHED: _ClassVar[TraceOutcome]
    TRACE_OUTCOME_RESOURCE_NOT_MATCHED: _ClassVar[TraceOutcome]
    TRACE_OUTCOME_HELD: _ClassVar[TraceOutcome]
    TRACE_OUTCOME_NOT_HELD: _ClassVar[TraceOutcome]
    TRACE_OUTCOME_ERROR: _ClassVar[TraceOutcome]
    TRACE_OUTCOME_SCOPE_COVERED: _ClassVar[TraceOutcome]
    TRACE_OUTCOME_SCOPE_NOT_COVERED: _ClassVar[TraceOutcome]
    TRACE_OUTCOME_SCHEMA_VIOLATED: _ClassVar[TraceOutcome]

class SqlDialect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SQL_DIALECT_UNSPECIFIED: _ClassVar[SqlDialect]
    SQL_DIALECT_POSTGRES: _ClassVar[SqlDialect]
    SQL_DIALECT_SQLITE: _ClassVar[SqlDialect]

class PlanKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_KIND_UNSPECIFIED: _ClassVar[PlanKind]
    PLAN_KIND_ALWAYS_ALLOWED: _ClassVar[PlanKind]
    PLAN_KIND_ALWAYS_DENIED: _ClassVar[PlanKind]
    PLAN_KIND_CONDITIONAL: _ClassVar[PlanKind]

class FilterOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILTER_OP_UNSPECIFIED: _ClassVar[FilterOp]
    FILTER_OP_EQ: _ClassVar[FilterOp]
    FILTER_OP_NE: _ClassVar[FilterOp]
    FILTER_OP_LT: _ClassVar[FilterOp]
    FILTER_OP_LE: _ClassVar[FilterOp]
    FILTER_OP_GT: _ClassVar[FilterOp]
    FILTER_OP_GE: _ClassVar[FilterOp]
    FILTER_OP_IN: _ClassVar[FilterOp]
    FILTER_OP_CONTAINS: _ClassVar[FilterOp]
    FILTER_OP_EXISTS: _ClassVar[FilterOp]
    FILTER_OP_AND: _ClassVar[FilterOp]
    FILTER_OP_OR: _ClassVar[FilterOp]
    FILTER_OP_NOT: _ClassVar[FilterOp]
EFFECT_UNSPECIFIED: Effect
EFFECT_ALLOW: Effect
EFFECT_DENY: Effect
TRACE_STAGE_UNSPECIFIED: TraceStage
TRACE_STAGE_SCHEMA: TraceStage
TRACE_STAGE_DENY: TraceStage
TRACE_STAGE_SCOPE_GATE: TraceStage
TRACE_STAGE_ALLOW: TraceStage
TRACE_OUTCOME_UNSPECIFIED: TraceOutcome
TRACE_OUTCOME_PRINCIPAL_NOT_MATCHED: TraceOutcome
TRACE_OUTCOME_RESOURCE_NOT_MATCHED: TraceOutcome
TRACE_OUTCOME_HELD: TraceOutcome
TRACE_OUTCOME_NOT_HELD: TraceOutcome
TRACE_OUTCOME_ERROR: TraceOutcome
TRACE_OUTCOME_SCOPE_COVERED: TraceOutcome
TRACE_OUTCOME_SCOPE_NOT_COVERED: TraceOutcome
TRACE_OUTCOME_SCHEMA_VIOLATED: TraceOutcome
SQL_DIALECT_UNSPECIFIED: SqlDialect
SQL_DIALECT_POSTGRES: SqlDialect
SQL_DIALECT_SQLITE: SqlDialect
PLAN_KIND_UNSPECIFIED: PlanKind
PLAN_KIND_ALWAYS_ALLOWED: PlanKind
PLAN_KIND_ALWAYS_DENIED: PlanKind
PLAN_KIND_CONDITIONAL: PlanKind
FILTER_OP_UNSPECIFIED: FilterOp
FILTER_OP_EQ: FilterOp
FILTER_OP_NE: FilterOp
FILTER_OP_LT: FilterOp
FILTER_OP_LE: FilterOp
FILTER_OP_GT: FilterOp
FILTER_OP_GE: FilterOp
FILTER_OP_IN: FilterOp
FILTER_OP_CONTAINS: FilterOp
FILTER_OP_EXISTS: FilterOp
FILTER_OP_AND: FilterOp
FILTER_OP_OR: FilterOp
FILTER_OP_NOT: FilterOp

class Principal(_message.Message):
    __slots__ = ("id", "roles", "capabilities", "scopes", "attr", "client_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    scopes: _containers.RepeatedScalarFieldContainer[str]
    attr: _struct_pb2.Struct
    client_id: str
    def __init__(self, id: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., scopes: _Optional[_Iterable[str]] = ..., attr: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., client_id: _Optional[str] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("kind", "id", "attr")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    attr: _struct_pb2.Struct
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., attr: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ResourceCheck(_message.Message):
    __slots__ = ("resource", "actions")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    actions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ..., actions: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("request_id", "principal", "resources", "context", "token", "explain")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    principal: Principal
    resources: _containers.RepeatedCompositeFieldContainer[ResourceCheck]
    context: _struct_pb2.Struct
    token: str
    explain: bool
    def __init__(self, request_id: _Optional[str] = ..., principal: _Optional[_Union[Principal, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[ResourceCheck, _Mapping]]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., token: _Optional[str] = ..., explain: _Optional[bool] = ...) -> None: ...

class ActionDecision(_message.Message):
    __slots__ = ("effect", "policy", "rule", "reason", "trace")
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    effect: Effect
    policy: str
    rule: str
    reason: str
    trace: _containers.RepeatedCompositeFieldContainer[TraceStep]
    def __init__(self, effect: _Optional[_Union[Effect, str]] = ..., policy: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., trace: _Optional[_Iterable[_Union[TraceStep, _Mapping]]] = ...) -> None: ...

class TraceStep(_message.Message):
    __slots__ = ("stage", "policy", "rule", "file", "line", "outcome", "error", "decided")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    stage: TraceStage
    policy: str
    rule: str
    file: str
    line: int
    outcome: TraceOutcome
    error: str
    decided: bool
    def __init__(self, stage: _Optional[_Union[TraceStage, str]] = ..., policy: _Optional[str] = ..., rule: _Optional[str] = ..., file: _Optional[str] = ..., line: _Optional[int] = ..., outcome: _Optional[_Union[TraceOutcome, str]] = ..., error: _Optional[str] = ..., decided: _Optional[bool] = ...) -> None: ...

class ResourceIdentity(_message.Message):
    __slots__ = ("kind", "id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class ResourceResult(_message.Message):
    __slots__ = ("resource", "actions")
    class ActionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ActionDecision
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ActionDecision, _Mapping]] = ...) -> None: ...
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    resource: ResourceIdentity
    actions: _containers.MessageMap[str, ActionDecision]
    def __init__(self, resource: _Optional[_Union[ResourceIdentity, _Mapping]] = ..., actions: _Optional[_Mapping[str, ActionDecision]] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("request_id", "policy_version", "results", "token_error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    policy_version: str
    results: _containers.RepeatedCompositeFieldContainer[ResourceResult]
    token_error: str
    def __init__(self, request_id: _Optional[str] = ..., policy_version: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ResourceResult, _Mapping]]] = ..., token_error: _Optional[str] = ...) -> None: ...

class SqlRequest(_message.Message):
    __slots__ = ("dialect", "columns")
    class ColumnsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    dialect: SqlDialect
    columns: _containers.ScalarMap[str, str]
    def __init__(self, dialect: _Optional[_Union[SqlDialect, str]] = ..., columns: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PlanFilterRequest(_message.Message):
    __slots__ = ("request_id", "principal", "resource_kind", "action", "context", "known_attr", "sql", "token")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_KIND_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    KNOWN_ATTR_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    principal: Principal
    resource_kind: str
    action: str
    context: _struct_pb2.Struct
    known_attr: _struct_pb2.Struct
    sql: SqlRequest
    token: str
    def __init__(self, request_id: _Optional[str] = ..., principal: _Optional[_Union[Principal, _Mapping]] = ..., resource_kind: _Optional[str] = ..., action: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., known_attr: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., sql: _Optional[_Union[SqlRequest, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("op", "attribute", "value", "values", "operands", "policy", "rule")
    OP_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    OPERANDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    op: FilterOp
    attribute: str
    value: _struct_pb2.Value
    values: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    operands: _containers.RepeatedCompositeFieldContainer[Filter]
    policy: str
    rule: str
    def __init__(self, op: _Optional[_Union[FilterOp, str]] = ..., attribute: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., values: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., operands: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ..., policy: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class SqlFilter(_message.Message):
    __slots__ = ("where", "params")
    WHERE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    where: str
    params: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, where: _Optional[str] = ..., params: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...

class PlanFilterResponse(_message.Message):
    __slots__ = ("request_id", "policy_version", "kind", "filter", "sql", "token_error", "schema_violation")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ERROR_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VIOLATION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    policy_version: str
    kind: PlanKind
    filter: Filter
    sql: SqlFilter
    token_error: str
    schema_violation: str
    def __init__(self, request_id: _Optional[str] = ..., policy_version: _Optional[str] = ..., kind: _Optional[_Union[PlanKind, str]] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., sql: _Optional[_Union[SqlFilter, _Mapping]] = ..., token_error: _Optional[str] = ..., schema_violation: _Optional[str] = ...) -> None: ...
