"""Greenery orchestration: the Greenery funnel analytics as a Dagster code location."""
