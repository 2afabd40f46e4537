"""The ``seekport`` command line (typer)."""
