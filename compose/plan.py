"""Budgets -> plan: which prefix of which dialogue goes into which sample, at which image offset.

The plan is a pure function of (catalog, budgets, policy): every random choice comes from
`Policy.seed`. Per-dialogue work is vectorised over a candidate table with one row per
(dialogue, prefix length); Python loops run once per sample (and per tail step), never once per
record. A sample may end with long-range probes: the next QA turn of a dialogue placed at the
start of the sample, asked after everything else. docs/planning.md describes the algorithm, the
budgets, probes, orders and the report.

This module is the planner's public face; its parts live in compose/planning/, one job each
(docs/planning.md, "Modules"). Import from here.
"""

from __future__ import annotations

from compose.planning.columns import PLAN_COLUMNS, REQUIRED_COLUMNS, plan_columns
from compose.planning.config import Budgets, Infeasible, Policy
from compose.planning.feasible import check_feasible
from compose.planning.make import make_plan
from compose.planning.mentions import DigitTokens
from compose.planning.parse import parse_lengths, parse_reach, parse_tokens
from compose.planning.persist import DIGEST_KEY, METADATA_KEY, load_plan, save_plan
from compose.planning.result import SEGMENT_SCHEMA, Distribution, Plan, PlanReport

__all__ = [
    "DIGEST_KEY",
    "METADATA_KEY",
    "PLAN_COLUMNS",
    "REQUIRED_COLUMNS",
    "SEGMENT_SCHEMA",
    "Budgets",
    "DigitTokens",
    "Distribution",
    "Infeasible",
    "Plan",
    "PlanReport",
    "Policy",
    "check_feasible",
    "load_plan",
    "make_plan",
    "parse_lengths",
    "parse_reach",
    "parse_tokens",
    "plan_columns",
    "save_plan",
]
