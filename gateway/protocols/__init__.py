"""Protocol adapters: wire messages <-> gateway.types, then the DataPlane; nothing else."""
