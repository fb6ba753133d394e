"""The planner, one job per module (docs/planning.md, "Modules"). Import it from `compose.plan`,
its public face; these modules may change shape."""
