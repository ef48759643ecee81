"""``python -m client_agent``: the same as the ``client-agent`` command."""

import sys

from client_agent.cli import main

sys.exit(main())
