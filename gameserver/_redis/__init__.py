"""Several processes on one Redis: connection, store, leases, channels, service."""
