"""``natsnet doctor``: the Debugging Flow against a NATS deployment the user already has (see ``command.py``)."""
