"""The Truce gateway: every stored model version behind REST and gRPC."""
