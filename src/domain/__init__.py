"""The rules of onecopy, in plain Python: no AWS, no environment, no I/O."""
