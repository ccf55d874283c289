"""Configuration, validated once when a function starts. A missing setting fails the cold start.

Every function validates the table settings; the API and the collector validate theirs as well.
The table and collector settings are core models (handlers.core_models): the worker,
reconciliation and the collector import no `pydantic`. The API's are a pydantic model, imported
only by the API (it needs pydantic for its requests anyway).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING

from handlers.core_models import CoreModel, core_model, core_schema, field

if TYPE_CHECKING:
    from handlers.api_settings import ApiSettings

_TABLE_FIELDS = {
    "bucket_name": field(core_schema.str_schema(min_length=3, max_length=63), "BUCKET_NAME"),
    "uploads_table": field(core_schema.str_schema(min_length=3), "UPLOADS_TABLE"),
    "contents_table": field(core_schema.str_schema(min_length=3), "CONTENTS_TABLE"),
    "stats_table": field(core_schema.str_schema(min_length=3), "STATS_TABLE"),
    "holdings_table": field(core_schema.str_schema(min_length=3), "HOLDINGS_TABLE"),
    # Each shard takes up to ~1,000 writes/s; reads sum them in one BatchGetItem (max 100 keys).
    "stats_shards": field(core_schema.int_schema(ge=1, le=100), "STATS_SHARDS"),
}


@core_model(_TABLE_FIELDS)
class TableSettings(CoreModel):
    """What every function uses (handlers.wiring), and all the worker and reconciliation use."""

    bucket_name: str
    uploads_table: str
    contents_table: str
    stats_table: str
    holdings_table: str
    stats_shards: int


WorkerSettings = TableSettings


@core_model(
    {
        **_TABLE_FIELDS,
        # How long an unreferenced content is kept before the collector removes it: a new
        # upload of it meanwhile costs no copy, and download URLs handed out before the deletion
        # keep working (the template keeps it above DOWNLOAD_URL_TTL_SECONDS's maximum).
        "grace_period_seconds": field(core_schema.int_schema(ge=0), "COLLECTION_GRACE_SECONDS"),
    }
)
class CollectorSettings(TableSettings):
    grace_period_seconds: int


def parse_table_settings(env: Mapping[str, str]) -> TableSettings:
    return TableSettings.model_validate(dict(env))


@cache
def table_settings() -> TableSettings:
    return parse_table_settings(os.environ)


@cache
def api_settings() -> ApiSettings:
    from handlers.api_settings import ApiSettings

    return ApiSettings.model_validate(dict(os.environ))


def worker_settings() -> WorkerSettings:
    return table_settings()


@cache
def collector_settings() -> CollectorSettings:
    return CollectorSettings.model_validate(dict(os.environ))


def reset() -> None:
    """Validate again on next use (tests and a second local stack change the environment)."""
    for factory in (table_settings, api_settings, collector_settings):
        factory.cache_clear()
