"""The local API gateway routes as API Gateway HTTP API does, from template.yaml's HttpApi events:
the most specific path, then a specific method over ANY, $default last; no route, no invocation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests

from onecopy_local.apigateway import ApiServer, Route, match_route, template_routes
from onecopy_local.lambda_runtime import FunctionError
from onecopy_local.resources import template

pytestmark = pytest.mark.integration

ROUTES = [
    Route("GET", "/pets/dog/1", "Exact"),
    Route("GET", "/pets/dog/{id}", "Param"),
    Route("GET", "/pets/{proxy+}", "PetsGreedy"),
    Route("ANY", "/pets/dog/{id}", "AnyParam"),
    Route("ANY", "/{proxy+}", "Root"),
    Route("POST", "/pets", "PostPets"),
]


@pytest.mark.parametrize(
    ("method", "path", "key", "parameters"),
    [
        # An exact path beats a path variable, which beats a greedy one
        ("GET", "/pets/dog/1", "GET /pets/dog/1", {}),
        ("GET", "/pets/dog/2", "GET /pets/dog/{id}", {"id": "2"}),
        ("GET", "/pets/cat/1", "GET /pets/{proxy+}", {"proxy": "cat/1"}),
        # A specific method beats ANY on the same path; ANY serves the other methods
        ("DELETE", "/pets/dog/1", "ANY /pets/dog/{id}", {"id": "1"}),
        ("POST", "/pets", "POST /pets", {}),
        ("PUT", "/pets", "ANY /{proxy+}", {"proxy": "pets"}),
        # Variables are URL-decoded; a greedy one takes the rest of the path
        ("GET", "/pets/dog/a%20b", "GET /pets/dog/{id}", {"id": "a b"}),
        ("PATCH", "/a/b/c", "ANY /{proxy+}", {"proxy": "a/b/c"}),
    ],
)
def test_the_most_specific_route_wins(
    method: str, path: str, key: str, parameters: dict[str, str]
) -> None:
    match = match_route(ROUTES, method, path)
    assert match is not None
    assert (match.route.key, match.path_parameters) == (key, parameters)


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("POST", "/"), ("GET", "/pets/")])
def test_a_greedy_variable_needs_a_segment(method: str, path: str) -> None:
    without_root = [r for r in ROUTES if r.path != "/{proxy+}"]
    assert match_route(without_root, method, path) is None


def test_the_default_route_takes_only_what_nothing_else_matches() -> None:
    routes = [*ROUTES, Route("ANY", "$default", "Default")]
    default = match_route(routes, "GET", "/")
    assert default is not None and default.route.key == "$default"
    specific = match_route(routes, "GET", "/pets/dog/1")
    assert specific is not None and specific.route.function == "Exact"


def test_the_templates_routes_are_its_http_api_events() -> None:
    routes = {r.key: r.function for r in template_routes(template())}
    assert routes["ANY /{proxy+}"] == "ApiFunction"
    assert routes["GET /"] == "PageFunction"
    assert {f for f in routes.values()} == {"ApiFunction", "PageFunction"}


# --- through HTTP: which function is invoked, with which event ------------------------------------


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200, "body": self.name, "headers": {"content-type": "text/plain"}}


@pytest.fixture
def gateway() -> Iterator[tuple[str, dict[str, Recorder]]]:
    """The template's routes, served on a free port, each function a recorder; without their
    authorizer (tests/integration/test_local_auth.py covers it), routing is all that is tested."""
    routes = [replace(r, authorizer=None) for r in template_routes(template())]
    functions = {name: Recorder(name) for name in {r.function for r in routes}}
    server = ApiServer(0, routes, functions)
    server.start()
    yield f"http://127.0.0.1:{server.port}", functions
    server.close()


def test_a_request_reaches_its_routes_function_with_the_route_key(
    gateway: tuple[str, dict[str, Recorder]],
) -> None:
    url, functions = gateway
    # When the page and an API path are asked for
    page = requests.get(f"{url}/", timeout=10)
    api = requests.get(f"{url}/uploads/abc?x=1", timeout=10)
    # Then each went to its own function, with API Gateway's route key and path parameters
    assert (page.text, api.text) == ("PageFunction", "ApiFunction")
    (page_event,) = functions["PageFunction"].events
    assert page_event["routeKey"] == page_event["requestContext"]["routeKey"] == "GET /"
    assert "pathParameters" not in page_event
    (api_event,) = functions["ApiFunction"].events
    assert api_event["routeKey"] == "ANY /{proxy+}"
    assert api_event["pathParameters"] == {"proxy": "uploads/abc"}
    assert api_event["queryStringParameters"] == {"x": "1"}


@pytest.mark.parametrize(("method", "path"), [("POST", "/"), ("DELETE", "/"), ("HEAD", "/")])
def test_no_route_is_404_without_invoking_anything(
    gateway: tuple[str, dict[str, Recorder]], method: str, path: str
) -> None:
    url, functions = gateway
    response = requests.request(method, f"{url}{path}", timeout=10)
    assert response.status_code == 404
    if method != "HEAD":
        assert response.json() == {"message": "Not Found"}
    assert all(not f.events for f in functions.values())


def test_a_function_that_fails_is_a_500_from_the_gateway() -> None:
    def crash(event: dict[str, Any]) -> Any:
        raise FunctionError({"errorType": "Runtime.ExitError", "errorMessage": "exit status 1"})

    server = ApiServer(0, [Route("ANY", "/{proxy+}", "Crashing")], {"Crashing": crash})
    server.start()
    try:
        response = requests.get(f"http://127.0.0.1:{server.port}/x", timeout=10)
    finally:
        server.close()
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_a_route_without_a_function_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="Missing"):
        ApiServer(0, [Route("GET", "/", "Missing")], {})


def test_a_route_without_its_authorizer_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="SignedIn"):
        ApiServer(0, [Route("GET", "/", "Page", "SignedIn")], {"Page": lambda event: {}})


def test_the_templates_routes_carry_its_default_authorizer_unless_marked_none() -> None:
    routes = {r.key: r.authorizer for r in template_routes(template())}
    assert (
        routes["ANY /{proxy+}"]
        == template()["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"]
    )
    assert routes["GET /"] is routes["GET /auth/config"] is None
