"""The shape of the API function's event, and of the claims its JWT authorizer passes on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Http(BaseModel):
    method: str
    path: str


class _HttpContext(BaseModel):
    http: _Http


class HttpApiEvent(BaseModel):
    """What the API's resolver relies on: an API Gateway HTTP API request, payload format 2.0.

    A REST API (v1) payload, or any other event sent to the function, lacks these and would
    otherwise crash the resolver with a KeyError.
    """

    version: Literal["2.0"]
    raw_path: str = Field(alias="rawPath")
    request_context: _HttpContext = Field(alias="requestContext")


class JwtClaims(BaseModel):
    """The verified claims API Gateway's JWT authorizer passes on: what authorization uses.

    `cognito:groups` arrives flattened to one string ("[admins other]") on AWS, or as a list.
    """

    model_config = ConfigDict(populate_by_name=True)

    sub: str = Field(min_length=1)
    groups: str | list[str] | None = Field(default=None, alias="cognito:groups")
