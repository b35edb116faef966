"""One process, everything in memory: the store and the local hosting."""
