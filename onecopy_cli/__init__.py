"""The `onecopy` command-line client: a plain HTTP client of the onecopy API."""

__version__ = "0.1.0"
