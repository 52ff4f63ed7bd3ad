"""Audio brief -> production plan. ``load_brief`` / ``parse_brief`` validate a brief, ``make_plan`` chooses a model
from ``catalog.yaml`` and writes the prompt, chain, seed protocol and eval plan, ``run_brief`` carries a plan out
with this project's models; ``render`` turns plans (and the skill document) into Markdown."""
from tokenwave.brief.catalog import load_catalog
from tokenwave.brief.plan import make_plan
from tokenwave.brief.schema import Brief, BriefConflictError, BriefError, load_brief, parse_brief

__all__ = ["Brief", "BriefConflictError", "BriefError", "load_brief", "load_catalog", "make_plan", "parse_brief"]
