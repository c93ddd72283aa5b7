"""Storage: entry format, serializers, locks and the local store (knows nothing of functions)."""
