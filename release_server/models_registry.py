"""Imports every model module so that ``Base.metadata`` knows every table."""
from __future__ import annotations

from .accounts import models as accounts_models  # noqa: F401
from .releases import models as releases_models  # noqa: F401
from .signing import models as signing_models  # noqa: F401
from .deltas import models as deltas_models  # noqa: F401
from .fleet import models as fleet_models  # noqa: F401
from .rollouts import models as rollouts_models  # noqa: F401
from .support import models as support_models  # noqa: F401
from . import worker as worker_models  # noqa: F401  (the worker lease)
