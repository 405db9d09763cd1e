"""Studies: a spec expands into cells, cells run resumably into an SQLite database, and the report
turns the rows into utility curves. Heavy modules (torch) load only when a study runs."""

from selfstudy.study.db import ResultsDB
from selfstudy.study.runner import run_study
from selfstudy.study.spec import load_spec

__all__ = ["ResultsDB", "load_spec", "run_study"]
