"""The versioned model store: immutable, checksummed model versions on disk."""
