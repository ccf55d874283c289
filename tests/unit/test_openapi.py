"""The committed openapi.json is what the code generates: clients code against that file."""

import json

import pytest

from scripts.export_openapi import SPEC, generate

pytestmark = pytest.mark.unit


def test_committed_spec_matches_the_code() -> None:
    # Given the spec generated from the handler's routes and models
    generated = json.loads(generate())
    # Then it equals the committed file (run `make openapi` after changing the API)
    assert json.loads(SPEC.read_text()) == generated, "openapi.json is stale: run `make openapi`"


def test_every_route_documents_its_errors() -> None:
    spec = json.loads(generate())
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert any(c.startswith("2") for c in codes), f"{method} {path}: no success response"
            if operation.get("parameters") or "requestBody" in operation:
                assert "422" in codes, f"{method} {path}: validation errors undocumented"


PUBLIC = {("get", "/auth/config")}  # /openapi.json and /docs are public too, but not in the spec


def test_every_operation_but_the_public_ones_needs_a_bearer_token() -> None:
    spec = json.loads(generate())
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "429" in codes, f"{method} {path}: throttling undocumented"
            if (method, path) in PUBLIC:
                assert "security" not in operation and "401" not in codes
            else:
                assert operation["security"] == [{"bearerAuth": []}], f"{method} {path}"
                assert "401" in codes, f"{method} {path}: 401 undocumented"
            assert ("403" in codes) == path.startswith("/admin/"), f"{method} {path}"
