"""Invoking a Lambda function (and finding it through a CloudFormation stack) with boto3.

Against AWS, boto3's usual configuration applies (profile, region, credentials). Against a local
endpoint (`onecopy-local`, or `sam local start-lambda`) nothing checks the signature, so when no
credentials are configured placeholder ones are used, and the region defaults to us-east-1.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from onecopy_cli.api import CliError

DEFAULT_LOCAL_ENDPOINT = "http://127.0.0.1:3001"
LOCAL_REGION = "us-east-1"
# Lambda's own limit is 15 minutes; the answer comes only when the function returns. No retries:
# an invocation that may have run must not silently run twice.
_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 905,
    "retries": {"total_max_attempts": 1},
}
_LOCAL_HINT = (
    ". Is it running? (`make run` starts the local stack; --lambda-endpoint, "
    "ONECOPY_LAMBDA_ENDPOINT or --stack point elsewhere.)"
)


class Invoker(Protocol):
    def invoke(self, function_name: str, payload: dict[str, Any]) -> Any:
        """Invoke synchronously; the function's JSON result, or CliError when it failed."""
        ...

    def stack_output(self, stack_name: str, output_key: str) -> str: ...

    def sqs(self, endpoint_url: str | None) -> Any: ...


class LambdaInvoker:
    def __init__(self, *, endpoint_url: str | None = None, region: str | None = None) -> None:
        # boto3 takes a sixth of a second to import: only the command that needs it pays.
        import boto3

        self.endpoint_url = endpoint_url
        session = boto3.Session(region_name=region)
        if endpoint_url is not None and session.get_credentials() is None:
            session = boto3.Session(
                region_name=region,
                aws_access_key_id="onecopy-local",
                aws_secret_access_key="onecopy-local",  # noqa: S106 - nothing checks it
            )
        self.region = session.region_name or (LOCAL_REGION if endpoint_url else None)
        self._session = session

    def sqs(self, endpoint_url: str | None) -> Any:
        """An SQS client with the same session (for `admin redrive`)."""
        from botocore.config import Config

        return self._session.client(
            "sqs",
            region_name=self.region or LOCAL_REGION,
            endpoint_url=endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def _client(self, service: str) -> Any:
        from botocore.config import Config

        if self.region is None:
            raise CliError("no AWS region configured: set AWS_REGION or pass --region")
        return self._session.client(
            service,  # type: ignore[call-overload]
            region_name=self.region,
            endpoint_url=self.endpoint_url if service == "lambda" else None,
            config=Config(**_CLIENT_CONFIG),
        )

    def invoke(self, function_name: str, payload: dict[str, Any]) -> Any:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
        )

        where = f" at {self.endpoint_url}" if self.endpoint_url else f" in {self.region}"
        try:
            response = self._client("lambda").invoke(
                FunctionName=function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
            body = response["Payload"].read()
        except EndpointConnectionError as exc:
            target = self.endpoint_url or exc.kwargs.get("endpoint_url", "AWS Lambda")
            hint = _LOCAL_HINT if self.endpoint_url else ""
            raise CliError(f"cannot reach the Lambda endpoint at {target}{hint}") from exc
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            if code == "ResourceNotFoundException":
                raise CliError(f"no Lambda function {function_name!r}{where}") from exc
            if code in ("AccessDeniedException", "AccessDenied"):
                raise CliError(
                    f"admins only: your AWS identity may not invoke {function_name}{where} "
                    f"({message})"
                ) from exc
            raise CliError(f"invoking {function_name}{where} failed: {code}: {message}") from exc
        except (NoCredentialsError, NoRegionError) as exc:
            raise CliError(f"{exc} (configure AWS credentials and a region)") from exc
        except BotoCoreError as exc:
            raise CliError(f"invoking {function_name}{where} failed: {exc}") from exc
        try:
            result = json.loads(body) if body else None
        except ValueError as exc:
            raise CliError(f"{function_name} returned something other than JSON") from exc
        if response.get("FunctionError"):
            detail = result if isinstance(result, dict) else {}
            kind = detail.get("errorType", response["FunctionError"])
            raise CliError(f"{function_name} failed: {kind}: {detail.get('errorMessage', '')}")
        return result

    def stack_output(self, stack_name: str, output_key: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            stacks = self._client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", str(exc))
            raise CliError(f"cannot read stack {stack_name!r}: {message}") from exc
        except BotoCoreError as exc:
            raise CliError(f"cannot read stack {stack_name!r}: {exc}") from exc
        for output in stacks[0].get("Outputs", []) if stacks else []:
            if output.get("OutputKey") == output_key:
                return str(output["OutputValue"])
        raise CliError(f"stack {stack_name!r} has no output {output_key!r}")
