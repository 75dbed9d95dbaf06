"""A policy set's schema as callers see it: `verdict schema export` (JSON Schema, draft 2020-12, of
a Check request, one definition per kind under `$defs/kinds`) read back into the declared type of
every resource attribute, so that verdict.sqlalchemy can hold columns to the kind's types.

    schema = Schema.load("schema.json")      # or Schema.from_json(dict)
    schema.kind("Patient")["practice_id"]    # AttributeType(type='string', required=True, ...)

Nested objects are flattened to dotted paths ("address.city"), as PlanFilter names attributes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from verdict.client import VerdictError

STRING, INT, DOUBLE, BOOL, ENUM, LIST, OBJECT = (
    "string", "int", "double", "bool", "enum", "list", "object")


class SchemaError(VerdictError):
    """A schema document this module cannot read."""


@dataclass(frozen=True)
class AttributeType:
    """One declared attribute: its type, whether every resource must carry it (`required`, only
    ever true at the top level of `attr`: a nested attribute is required only where its object
    is), and whether a string or list may be empty. `values` for an enum, `items` for a list."""

    type: str
    required: bool = True
    non_empty: bool = False
    values: tuple[str, ...] = ()
    items: "AttributeType | None" = None


@dataclass(frozen=True)
class Schema:
    # kind -> dotted attribute path -> type (objects flattened to their leaves).
    kinds: Mapping[str, Mapping[str, AttributeType]]

    @classmethod
    def load(cls, path: str | Path) -> "Schema":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> "Schema":
        try:
            kinds = document["$defs"]["kinds"]
        except (KeyError, TypeError):
            raise SchemaError("not a `verdict schema export` document: no $defs/kinds") from None
        out = {}
        for name, kind in kinds.items():
            attr = kind.get("properties", {}).get("attr", {"type": "object", "properties": {}})
            leaves: dict[str, AttributeType] = {}
            _flatten(attr, "", True, leaves, f"$defs/kinds/{name}/attr")
            out[name] = leaves
        return cls(out)

    def kind(self, name: str) -> Mapping[str, AttributeType]:
        try:
            return self.kinds[name]
        except KeyError:
            raise SchemaError(f"kind {name!r} is not declared in the schema") from None


def _flatten(obj: Mapping[str, Any], prefix: str, top: bool, out: dict, where: str) -> None:
    if obj.get("type") != "object":
        raise SchemaError(f"{where}: expected an object")
    required = set(obj.get("required", []))
    for name, spec in obj.get("properties", {}).items():
        path = f"{prefix}{name}"
        spec, nullable = _unwrap(spec)
        if spec.get("type") == "object":
            _flatten(spec, f"{path}.", False, out, f"{where}/{name}")
            continue
        ty = _type(spec, f"{where}/{name}")
        out[path] = AttributeType(ty.type, required=top and name in required and not nullable,
                                  non_empty=ty.non_empty, values=ty.values, items=ty.items)


def _unwrap(spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """An optional attribute is `anyOf: [T, {type: null}]`."""
    options = spec.get("anyOf")
    if options is None:
        return spec, False
    rest = [o for o in options if o.get("type") != "null"]
    if len(rest) != 1:
        raise SchemaError(f"unsupported anyOf: {options}")
    return rest[0], len(rest) < len(options)


def _type(spec: Mapping[str, Any], where: str) -> AttributeType:
    t = spec.get("type")
    if t == "string" and "enum" in spec:
        return AttributeType(ENUM, values=tuple(spec["enum"]))
    if t == "string":
        return AttributeType(STRING, non_empty=spec.get("minLength", 0) > 0)
    if t == "integer":
        return AttributeType(INT)
    if t == "number":
        return AttributeType(DOUBLE)
    if t == "boolean":
        return AttributeType(BOOL)
    if t == "array":
        items = spec.get("items", {})
        if items.get("type") == "object":
            return AttributeType(LIST, non_empty=spec.get("minItems", 0) > 0,
                                 items=AttributeType(OBJECT))
        return AttributeType(LIST, non_empty=spec.get("minItems", 0) > 0,
                             items=_type(items, f"{where}/items"))
    raise SchemaError(f"{where}: unsupported type {t!r}")
