"""Checking HTTP requests and responses against an OpenAPI 3.0 description (GitHub's, trimmed).

Routing, parameter and body checks follow the description; schema validation is done by
``openapi-schema-validator`` (OpenAPI 3.0 semantics, ``nullable`` included) with ``$ref`` resolved
through a ``referencing`` registry holding the whole description.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from openapi_schema_validator import OAS30Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

SPEC_URI = "urn:github-openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def pointer(*parts: object) -> str:
    """A JSON pointer into the description, for ``$ref``."""
    return SPEC_URI + "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _null_in_nullable_enums(node: Any) -> Any:
    """Let ``nullable: true`` admit null in an ``enum`` too.

    OpenAPI 3.0.3 says an enum must list null for a nullable schema to accept it; GitHub's description
    marks fields like ``issue.state_reason`` nullable with an enum of strings and sends null for them,
    so the validator would reject GitHub's real answers. This is the one adjustment made.
    """
    if isinstance(node, dict):
        if node.get("nullable") is True and isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        for value in node.values():
            _null_in_nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            _null_in_nullable_enums(value)
    return node


@dataclass
class Problem:
    status: int  # what GitHub would answer
    message: str


@dataclass
class Route:
    template: str
    method: str
    operation: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)  # path parameters, decoded

    @property
    def operation_id(self) -> str:
        return self.operation["operationId"]


class OpenAPI:
    def __init__(self, spec: dict[str, Any]):
        self.spec = _null_in_nullable_enums(copy.deepcopy(spec))
        self.registry = Registry().with_resource(SPEC_URI, DRAFT4.create_resource(self.spec))
        self._routes: list[tuple[re.Pattern[str], str]] = []
        for template, item in self.spec["paths"].items():
            multi = {
                p["name"]
                for method in METHODS
                for p in (self.resolve(x) for x in item.get(method, {}).get("parameters", []))
                if p.get("x-multi-segment")
            }
            regex = re.sub(
                r"\\\{(\w+)\\\}",
                lambda m, multi=multi: f"(?P<{m.group(1)}>{'.+' if m.group(1) in multi else '[^/]+'})",
                re.escape(template),
            )
            self._routes.append((re.compile(f"^{regex}$"), template))
        # literal segments win over parameters: /issues/comments/{id} before /issues/{number}
        self._routes.sort(key=lambda r: -len(re.sub(r"\{\w+\}", "", r[1])))
        self._validators: dict[str, Any] = {}

    @classmethod
    @cache
    def load(cls, path: Path) -> OpenAPI:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    # --- description look-ups --------------------------------------------------------------------
    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            _, _, kind, name = node["$ref"].split("/", 3)
            node = self.spec["components"][kind][name]
        return node

    def example(self, name: str) -> Any:
        """A deep copy of ``components/examples/<name>``'s value."""
        return copy.deepcopy(self.spec["components"]["examples"][name]["value"])

    def errors(self, ref: str, instance: Any) -> list[str]:
        """Schema violations of ``instance`` against the schema at ``ref`` (a :func:`pointer`)."""
        validator = self._validators.get(ref)
        if validator is None:
            validator = self._validators[ref] = OAS30Validator({"$ref": ref}, registry=self.registry)
        found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}" for e in found]

    # --- requests -----------------------------------------------------------------------------------
    def route(self, method: str, raw_path: str) -> Route | Problem:
        method = method.lower()
        matched = False
        for regex, template in self._routes:
            m = regex.match(raw_path)
            if not m:
                continue
            matched = True
            operation = self.spec["paths"][template].get(method)
            if operation is not None:
                params = {k: unquote(v) for k, v in m.groupdict().items()}
                return Route(template, method, operation, params)
        reason = "method not allowed on this path" if matched else "no such path"
        return Problem(404, f"{method.upper()} {raw_path}: {reason} in GitHub's REST API")

    def _parameters(self, route: Route) -> list[tuple[dict[str, Any], str]]:
        """(parameter, pointer to its schema) for the operation's and the path item's parameters."""
        out = []
        for owner in (("paths", route.template), ("paths", route.template, route.method)):
            node: Any = self.spec
            for key in owner:
                node = node[key]
            for index, ref in enumerate(node.get("parameters", [])):
                param = self.resolve(ref)
                if "$ref" in ref:
                    schema = pointer("components", "parameters", ref["$ref"].rsplit("/", 1)[1], "schema")
                else:
                    schema = pointer(*owner, "parameters", index, "schema")
                out.append((param, schema))
        return out

    def check_request(
        self, route: Route, query: Mapping[str, list[str]], body: bytes, content_type: str | None
    ) -> list[Problem]:
        problems: list[Problem] = []
        declared = {}
        for param, schema_ref in self._parameters(route):
            where, name = param["in"], param["name"]
            if where == "path":
                problems += self._value_problems(route.params.get(name), param, schema_ref, "path")
            elif where == "query":
                declared[name] = param
                values = query.get(name)
                if values is None:
                    if param.get("required"):
                        problems.append(Problem(422, f"query parameter {name!r} is required"))
                    continue
                schema = self.resolve(param.get("schema", {}))
                if len(values) > 1 and schema.get("type") != "array":
                    problems.append(Problem(422, f"query parameter {name!r} given {len(values)} times"))
                problems += self._value_problems(values[0], param, schema_ref, "query")
        for name in query:
            if name not in declared:
                problems.append(Problem(422, f"unknown query parameter {name!r}"))
        problems += self._body_problems(route, body, content_type)
        return problems

    def _value_problems(
        self, raw: str | None, param: dict[str, Any], schema_ref: str, where: str
    ) -> list[Problem]:
        name = param["name"]
        if raw is None:
            return [Problem(404, f"{where} parameter {name!r} missing")]
        schema = self.resolve(param.get("schema", {}))
        value: Any = raw
        kind = schema.get("type")
        try:
            if kind == "integer":
                value = int(raw)
            elif kind == "boolean":
                value = {"true": True, "false": False}[raw]
        except (ValueError, KeyError):
            return [
                Problem(422 if where == "query" else 404, f"{where} parameter {name}={raw!r} is not {kind}")
            ]
        return [Problem(422, f"{where} parameter {name}: {e}") for e in self.errors(schema_ref, value)]

    def _body_problems(self, route: Route, body: bytes, content_type: str | None) -> list[Problem]:
        spec = route.operation.get("requestBody")
        if spec is None:
            return (
                [Problem(400, f"{route.method.upper()} sends a body this operation does not take")]
                if body
                else []
            )
        if not body:
            return [Problem(422, "request body is required")] if spec.get("required") else []
        if not (content_type or "").startswith("application/json"):
            return [Problem(415, f"request body has content type {content_type!r}, not application/json")]
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return [Problem(400, "Problems parsing JSON")]
        ref = pointer(
            "paths", route.template, route.method, "requestBody", "content", "application/json", "schema"
        )
        return [Problem(422, f"Invalid request body: {e}") for e in self.errors(ref, data)]

    # --- responses ---------------------------------------------------------------------------------
    def check_response(self, route: Route, status: int, content_type: str | None, data: Any) -> list[str]:
        """How a response the fake sends differs from what the description promises."""
        responses = route.operation["responses"]
        declared = responses.get(str(status)) or responses.get("default")
        if declared is None:
            return [] if status >= 400 else [f"status {status} is not a documented answer"]
        ref_name = declared["$ref"].rsplit("/", 1)[1] if "$ref" in declared else None
        content = self.resolve(declared).get("content")
        if not content:
            return [] if data is None else [f"status {status} has no documented body"]
        media = (content_type or "application/json").split(";")[0].strip()
        if media not in content:
            return [f"status {status}: content type {media!r} is not documented ({', '.join(content)})"]
        if ref_name:
            ref = pointer("components", "responses", ref_name, "content", media, "schema")
        else:
            ref = pointer(
                "paths", route.template, route.method, "responses", str(status), "content", media, "schema"
            )
        return [f"status {status}: {e}" for e in self.errors(ref, data)]
