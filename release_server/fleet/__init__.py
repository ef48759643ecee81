"""Customers, installations, enrollment, inventory and update reports."""
