"""Run an `airflow ...` CLI command inside the current process, as airflow/__main__.py runs it.

A command in a child process of its own (`python -m airflow db migrate`) imports Airflow again: about 7 s of CPU
each on a 2-core machine, which is most of what `db migrate` or `pools set` costs. The demo and the tests' Airflow
children import Airflow anyway, so they run these commands here. The environment (AIRFLOW_HOME, the metadata
database's URL) must be set before Airflow is first imported: Airflow reads it once, at import.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys


def airflow_cli(*argv: str) -> str:
    """`airflow <argv>` in this process; returns what the command printed (it is kept off this process's stdout)."""
    settings = sys.modules.get("airflow.settings")
    wanted = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if settings is not None and wanted and getattr(settings, "SQL_ALCHEMY_CONN", None) not in (None, wanted):
        raise RuntimeError("Airflow was imported before its metadata database was set: run the command in a child "
                           "process, or set AIRFLOW__DATABASE__SQL_ALCHEMY_CONN before importing Airflow")
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    write_default_airflow_configuration_if_needed()
    args = cli_parser.get_parser().parse_args(list(argv))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        args.func(args)
    return printed.getvalue()
