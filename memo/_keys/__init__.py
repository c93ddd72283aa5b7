"""Keys: canonical encoding of arguments, code fingerprints and file-content digests (no I/O)."""
