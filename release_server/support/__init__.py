"""Support desk: inbound customer e-mail and the tickets made from it."""
