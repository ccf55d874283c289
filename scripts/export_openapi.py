"""Write the API's OpenAPI document, generated from the handler code, to openapi.json.

`make openapi` runs this; tests/unit/test_openapi.py fails when the committed file drifts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.json"

# Placeholder settings: generating the document touches no AWS resource.
PLACEHOLDER_ENV = {
    "BUCKET_NAME": "onecopy-files",
    "UPLOADS_TABLE": "onecopy-uploads",
    "CONTENTS_TABLE": "onecopy-contents",
    "STATS_TABLE": "onecopy-stats",
    "HOLDINGS_TABLE": "onecopy-holdings",
    "STATS_SHARDS": "16",
    "ALLOWED_ORIGINS": "*",
    # Only the ARN: generating the document never reads the secret.
    "PAGE_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:page-token",
    "MAX_PENDING_UPLOADS": "100",
    "INGEST_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/onecopy-ingest",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/onecopy-ingest-dlq",
    "COLLECTION_GRACE_SECONDS": "86400",
    "OLDEST_MESSAGE_ALARM_SECONDS": "900",
    "AUTH_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example",
    "AUTH_USER_POOL_ID": "us-east-1_example",
    "AUTH_CLIENT_ID": "exampleclientid",
    "AUTH_COGNITO_ENDPOINT": "https://cognito-idp.us-east-1.amazonaws.com/",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def generate() -> str:
    for key, value in PLACEHOLDER_ENV.items():
        os.environ.setdefault(key, value)
    sys.path.insert(0, str(ROOT / "src"))
    from handlers.api import openapi_json

    return json.dumps(json.loads(openapi_json()), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SPEC.write_text(generate())
    print(f"wrote {SPEC.relative_to(ROOT)}")
