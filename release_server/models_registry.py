"""Imports every model module so that ``Base.metadata`` knows every table."""
from __future__ import annotations

from .accounts import models as accounts_models  # noqa: F401
from .releases import models as releases_models  # noqa: F401
