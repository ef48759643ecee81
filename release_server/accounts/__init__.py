"""Staff and customer accounts, roles, API tokens and the audit log."""
