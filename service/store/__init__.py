"""The storage core: the only part of sessionstore that talks to Redis."""
