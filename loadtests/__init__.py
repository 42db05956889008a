"""Load tests for any server speaking OIP v2, TF Serving or TorchServe (``truce loadtest``).

Modules imported by the locust process (``locustfile``, ``prepared``, ``recorder``,
``failures``) use only the standard library, gevent, locust and grpc: see ``prepared``.
"""
