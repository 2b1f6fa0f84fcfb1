"""`logsense bench`: labeled data sets, protocols, baselines and reports.

Imports the detection pipeline (`logsense.models`); nothing the server runs imports this package.
"""

from logsense.models.bench.command import add_arguments, run

__all__ = ["add_arguments", "run"]
