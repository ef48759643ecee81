"""Client agent: downloads, verifies and installs component updates on a customer machine.

The installation machinery is split into small modules:

* ``errors``    - the ``AgentError`` hierarchy shared by every module.
* ``package``   - artifact format: manifest parsing and safe archive extraction.
* ``package_rules`` - the format's rules without I/O (shared with the server's publish check).
* ``hooks``     - running the lifecycle hook commands declared by a release.
* ``fsutil``    - crash-safe file primitives (atomic writes, symlink switch, locking).
* ``journal``   - the record of the update in progress, used for crash recovery.
* ``installer`` - the install / rollback / recovery state machine.
* ``outbox``    - durable queue of reports waiting to be sent to the server.
* ``backoff``   - retry delay policy and ``Retry-After`` parsing.
"""
