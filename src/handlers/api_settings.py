"""The API function's own settings, a pydantic model: only the API imports it (handlers.settings).

The table settings every function shares are handlers.settings.TableSettings; the API validates
both when it starts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    # S3 presigned URLs can live 7 days; the contract caps them at 15 minutes.
    upload_url_ttl_seconds: int = Field(default=900, alias="UPLOAD_URL_TTL_SECONDS", ge=1, le=900)
    download_url_ttl_seconds: int = Field(
        default=900, alias="DOWNLOAD_URL_TTL_SECONDS", ge=1, le=900
    )
    allowed_origins: tuple[str, ...] = Field(alias="ALLOWED_ORIGINS", min_length=1)
    multipart_threshold_bytes: int = Field(
        default=100 * 1024**2, alias="MULTIPART_THRESHOLD_BYTES", ge=5 * 1024**2
    )
    multipart_part_size_bytes: int = Field(
        default=16 * 1024**2, alias="MULTIPART_PART_SIZE_BYTES", ge=5 * 1024**2, le=5 * 1024**3
    )
    # The Secrets Manager secret that signs the hash list's page tokens (generated per stack in
    # template.yaml). Only its ARN is configured; the value is read when first needed.
    page_token_secret_arn: str = Field(
        alias="PAGE_TOKEN_SECRET_ARN", pattern=r"^arn:[\w-]+:secretsmanager:"
    )

    # Per owner: uploads still waiting for their bytes (their URL not yet expired).
    max_pending_uploads: int = Field(alias="MAX_PENDING_UPLOADS", ge=1)
    # What GET /auth/config tells clients so they can sign in. With an outside OIDC issuer
    # (template parameter AuthIssuer) there is no user pool and no Cognito endpoint: both empty.
    auth_issuer: str = Field(alias="AUTH_ISSUER", pattern=r"^https://\S+$")
    auth_client_id: str = Field(alias="AUTH_CLIENT_ID", min_length=1)
    auth_user_pool_id: str = Field(alias="AUTH_USER_POOL_ID")
    auth_cognito_endpoint: str = Field(alias="AUTH_COGNITO_ENDPOINT", pattern=r"^(https?://\S+)?$")
    region: str = Field(alias="AWS_REGION", min_length=1)
    # The health view (GET /admin/health): the queues it reports, the grace that makes an
    # unreferenced content due for collection, and the backlog age the alarm fires at.
    ingest_queue_url: str = Field(alias="INGEST_QUEUE_URL", pattern=r"^https?://\S+$")
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL", pattern=r"^https?://\S+$")
    collection_grace_seconds: int = Field(alias="COLLECTION_GRACE_SECONDS", ge=0)
    oldest_message_alarm_seconds: int = Field(alias="OLDEST_MESSAGE_ALARM_SECONDS", ge=1)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(o.strip() for o in value.split(",") if o.strip())
        return value
