"""The support desk's fixed words: ticket kinds, statuses, priorities, sources, departments, review outcomes.

Plain tuples, apart from the models, so a command line can offer them as choices
without loading the database layer.
"""
from __future__ import annotations

KINDS = ("incident", "problem", "service", "development")
STATUSES = ("new", "in_progress", "waiting_for_customer", "processed", "closed")
OPEN_STATUSES = ("new", "in_progress", "waiting_for_customer")
PRIORITIES = ("low", "normal", "high", "urgent")
SOURCES = ("mail", "portal", "agent", "api", "failure_report", "phone")
#: The vendor's two departments: support answers customers and links them with development, which fixes and builds.
DEPARTMENTS = ("support", "development")
#: The outcome of reviewing a development request (an improvement proposal).
REVIEW_OUTCOMES = ("accepted", "declined")
