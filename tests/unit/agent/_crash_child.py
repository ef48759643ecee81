"""Runs one installation in a child process so tests can kill it part-way.

Usage: python _crash_child.py STATE_DIR INSTALL_DIR ARTIFACT COMPONENT FROM TO
(FROM may be "-" for a first install). Prints the outcome as JSON.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from client_agent.installer import Installer, InstallerConfig  # noqa: E402

state_dir, install_dir, artifact, component, from_version, to_version = sys.argv[1:7]
installer = Installer(InstallerConfig(Path(state_dir), Path(install_dir)))
outcome = installer.install(Path(artifact), component,
                            None if from_version == "-" else from_version, to_version)
print(json.dumps(outcome.to_report()))
