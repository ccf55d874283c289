"""The API's documents: the OpenAPI document and the Swagger UI page that shows it.

Imported only by the routes that serve them (GET /openapi.json, GET /docs). Powertools' OpenAPI
models (pydantic models of the whole OpenAPI specification) take about a third of boto3's import
time to build, and request validation never uses them (it works from the routes' own models), so
every other request's cold start goes without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import aws_lambda_powertools.event_handler
from aws_lambda_powertools.event_handler.openapi.compat import model_json
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Server
from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

# Swagger UI's script and styles, as Powertools ships them (the page needs no CDN).
_SWAGGER_UI = Path(aws_lambda_powertools.event_handler.__file__).parent / "openapi" / "swagger_ui"


def bearer_scheme(description: str) -> HTTPBearer:
    return HTTPBearer(bearerFormat="JWT", description=description)


def swagger_page(app: APIGatewayHttpResolver, info: dict[str, Any]) -> str:
    """What Powertools' enable_swagger() serves: the document, its server the API's base path,
    inlined into Swagger UI's page."""
    spec = app.get_openapi_schema(servers=[Server(url=app._get_base_path() or "/")], **info)
    # A "</script>" inside a description must not end the page's script element.
    escaped = model_json(spec, by_alias=True, exclude_none=True, indent=2).replace("</", "<\\/")
    return generate_swagger_html(
        escaped,
        (_SWAGGER_UI / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (_SWAGGER_UI / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    )
