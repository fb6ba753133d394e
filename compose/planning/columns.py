"""The catalog columns the planner reads, as `Catalog.frame` names them. Naming nested leaves
keeps planning memory bounded by what it needs (mention numbers, image sizes), not by the turn
text (docs/planning.md, "Memory")."""

from __future__ import annotations

from compose import order as ordering
from compose.planning.config import Policy

# The columns `make_plan` cannot do without (it checks them); `source` is needed only for
# source weights and `turns` only for the mention correction.
REQUIRED_COLUMNS = ("row", "n_images", "n_qa", "qa_text_tokens", "qa_new_images", "images")


# The catalog columns the planner reads, as `Catalog.frame` names them: of the turns only their
# mention numbers, of the images only their sizes, so planning never holds the turn text.
PLAN_COLUMNS = [
    "row",
    "id",
    "n_images",
    "n_qa",
    "qa_text_tokens",
    "qa_new_images",
    "images.width",
    "images.height",
    "turns.mentions",
    "source",
]


def plan_columns(policy: Policy) -> list[str]:
    """`PLAN_COLUMNS`, and the first question's text when the order is `topic`."""
    topic = [ordering.FIRST_QUESTION] if policy.order == "topic" else []
    return [*PLAN_COLUMNS, *topic]
