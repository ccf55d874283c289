"""Adapters: the only code that knows boto3. One module per AWS service."""
