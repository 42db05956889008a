"""Edge deployment: run and ship models on devices (imports only numpy and LiteRT)."""
