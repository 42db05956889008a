"""TorchServe's APIs (REST ``/ping``, ``/predictions/...``, management reads; gRPC)."""
