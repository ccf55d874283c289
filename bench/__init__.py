"""onecopy's benchmarks: `python -m bench [NAME ...]` prints figures; never fails on time.

Each module measures one thing and exposes ``run(...)`` (small sizes for the smoke test) and
``main()`` (the figures recorded in bench/README.md).
"""
