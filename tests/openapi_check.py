"""A response's check against openapi.yaml, the rules openapi-core's validate_response
applies, made once per (path template, method, status) instead of once per response.

openapi-core walks the document through jsonschema-path on every call (resolving each
$ref again, building a new schema validator and deep-copying its format checker): 2-5
ms a response, ~3,600 responses a run. Here the document is read once, and each
operation's response gets, the first time it is seen, the schema validators openapi-core
would build: openapi-schema-validator's OAS30ReadValidator with its FORMAT_CHECKER, on
the same schemas, their $refs resolved against the same document. What openapi-core
checks is checked the same way (tests/test_openapi_check.py compares the two on
responses that match the document and on ones that break it in each way):

- the path and method: a path the document lacks, or a method its path lacks, raises
  PathNotFound or OperationNotFound (openapi-core's own exceptions);
- the status: its own entry, else its range (`2XX`), else `default`, else an error;
- the body, when the response's entry has `content`: present, of a documented media
  type, parsed as JSON, valid against the media type's schema;
- each documented header the response carries (Content-Type aside): cast to its schema's
  type as openapi-core casts it, then valid against its schema; a `required` one
  missing is an error.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import ValidationError
from openapi_core.templating.paths.exceptions import (
    OperationNotFound,
    PathNotFound,
    ServerNotFound,
)
from openapi_schema_validator import OAS30ReadValidator
from referencing import Registry
from referencing.jsonschema import DRAFT4

_ROOT = "urn:cruddur:openapi.yaml"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# openapi-core's casts of a header's text to its schema's type (casting/schemas); a
# header whose schema is an array or an object is not something this check knows.
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _boolean(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"not a boolean: {text!r}")


_CASTS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": _boolean,
}


class ResponseMismatch(AssertionError):
    """The response is not what the document says."""


class _Part:
    """One schema of the document, with its validator made once."""

    def __init__(self, spec: OpenAPIDocument, schema: dict) -> None:
        self.schema = schema
        self.resolved = spec.resolve(schema)
        self.validator = OAS30ReadValidator(
            schema,
            _resolver=spec.resolver,
            format_checker=OAS30ReadValidator.FORMAT_CHECKER,
        )

    def errors(self, value: Any) -> list[str]:
        return [_describe(error) for error in self.validator.iter_errors(value)]


def _describe(error: ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "(the whole value)"
    return f"{where}: {error.message}"


class _ResponseRules:
    """What one (path template, method, status) allows: its media types' schemas and
    its headers."""

    def __init__(self, spec: OpenAPIDocument, entry: dict) -> None:
        entry = spec.resolve(entry)
        self.content: dict[str, _Part | None] | None = None
        if "content" in entry:
            self.content = {}
            for media, media_type in spec.resolve(entry["content"]).items():
                media_type = spec.resolve(media_type)
                schema = media_type.get("schema")
                self.content[media] = None if schema is None else _Part(spec, schema)
        self.headers: list[tuple[str, bool, _Part, Callable[[str], Any]]] = []
        for name, header in spec.resolve(entry.get("headers", {})).items():
            if name.lower() == "content-type":  # openapi-core ignores it too
                continue
            header = spec.resolve(header)
            if "content" in header or header.get("style", "simple") != "simple":
                raise NotImplementedError(f"header {name}: only simple headers are checked")
            part = _Part(spec, header["schema"])
            kind = part.resolved.get("type")
            if kind not in _CASTS:
                raise NotImplementedError(f"header {name}: a {kind} is not checked")
            self.headers.append((name, bool(header.get("required")), part, _CASTS[kind]))

    def problems(self, mimetype: str, data: bytes, headers: Mapping[str, str]) -> list[str]:
        found = []
        if self.content is not None:
            found += self._body_problems(mimetype, data)
        for name, required, part, cast in self.headers:
            if name not in headers:
                if "default" in part.resolved:  # openapi-core checks the default instead
                    found += [f"header {name}: {e}" for e in part.errors(part.resolved["default"])]
                elif required:
                    found.append(f"header {name} is required and missing")
                continue
            try:
                value = cast(headers[name])
            except (ValueError, TypeError):
                found.append(f"header {name}: {headers[name]!r} is not of its schema's type")
                continue
            found += [f"header {name}: {error}" for error in part.errors(value)]
        return found

    def _body_problems(self, mimetype: str, data: bytes) -> list[str]:
        assert self.content is not None
        if not data:
            return ["the body is missing"]
        media = mimetype.split(";")[0].lower().rstrip()
        if mimetype in self.content:
            part = self.content[mimetype]
        elif media in self.content:
            part = self.content[media]
        else:
            ranges = [key for key in self.content if fnmatch.fnmatch(media, key)]
            if not ranges:
                return [f"the media type {mimetype!r} is not documented ({list(self.content)})"]
            part = self.content[ranges[0]]
            media = ranges[0]
        if media not in ("application/json", "application/vnd.api+json"):
            raise NotImplementedError(f"a {media} body is not checked")
        try:
            value = json.loads(data)
        except ValueError as error:
            return [f"the body is not JSON: {error}"]
        return [] if part is None else [f"body: {error}" for error in part.errors(value)]


class OpenAPIDocument:
    """openapi.yaml, read once, that checks responses."""

    def __init__(self, path: Path) -> None:
        self.document = yaml.load(
            path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
        assert str(self.document["openapi"]).startswith("3.0."), "this check knows OAS 3.0"
        registry = Registry().with_resource(_ROOT, DRAFT4.create_resource(self.document))
        self.resolver = registry.resolver(base_uri=_ROOT)
        servers = [server["url"] for server in self.document.get("servers", [{"url": "/"}])]
        assert servers == ["/"], "this check knows only the server /"
        self._templates: list[tuple[re.Pattern[str], int, dict]] = []
        for template, item in self.document["paths"].items():
            item = self.resolve(item)
            parts = re.split(r"\{([^}]*)\}", template)
            pattern = "".join(
                re.escape(part) if index % 2 == 0 else "[^/]*" for index, part in enumerate(parts)
            )
            self._templates.append((re.compile(pattern + "$"), len(parts) // 2, item))
        self._rules: dict[tuple[int, str, str], _ResponseRules] = {}

    def resolve(self, node: Any) -> Any:
        """node, or what its $ref names when it is a reference."""
        while isinstance(node, dict) and "$ref" in node:
            node = self.resolver.lookup(node["$ref"]).contents
        return node

    def operation(self, method: str, path: str) -> dict:
        """The operation serving method on path, found as openapi-core finds it: the
        templates that end the URL, fewest parameters first (a path without any first),
        then the first that has the method and whose rest of the URL is the server's."""
        method = method.lower()
        matches = []
        for pattern, count, item in self._templates:
            found = pattern.search(path)
            if found:
                matches.append((count, found.start() == 0, item))
        if not matches:
            raise PathNotFound(path)
        operations = [
            (whole, item[method])
            for _, whole, item in sorted(matches, key=lambda match: match[0])
            if method in _METHODS and method in item
        ]
        if not operations:
            raise OperationNotFound(path, method)
        for whole, operation in operations:
            if whole:
                return self.resolve(operation)
        raise ServerNotFound(path)

    def rules(self, method: str, path: str, status: int) -> _ResponseRules:
        operation = self.operation(method, path)
        key = (id(operation), method.lower(), str(status))
        rules = self._rules.get(key)
        if rules is None:
            responses = self.resolve(operation["responses"])
            code = str(status)
            for name in (code, f"{code[0]}XX", "default"):
                if name in responses:
                    break
            else:
                raise ResponseMismatch(f"{method} {path}: status {status} is not documented")
            rules = self._rules[key] = _ResponseRules(self, responses[name])
        return rules

    def check(
        self,
        method: str,
        path: str,
        status: int,
        mimetype: str,
        data: bytes,
        headers: Mapping[str, str],
    ) -> None:
        """Raise PathNotFound or OperationNotFound for an undocumented path or method,
        ResponseMismatch for a response outside the document."""
        problems = self.rules(method, path, status).problems(mimetype, data, headers)
        if problems:
            raise ResponseMismatch(f"{method} {path} → {status}: " + "; ".join(problems))


@cache
def document(path: Path) -> OpenAPIDocument:
    return OpenAPIDocument(path)
