"""The Truce edge runner: what runs on the device, copied into every bundle.

    python3 -m edge.runner run    BUNDLE --input x.npy [--output y.npy]
    python3 -m edge.runner bench  BUNDLE [--runs N] [--threads T]
    python3 -m edge.runner serve  BUNDLE [--host H] [--port P]
    python3 -m edge.runner verify BUNDLE [--trusted-key KEY.pub]

Imports only the standard library, numpy and the TFLite interpreter (torch only for lite
TorchScript bundles), so a device needs no Truce install.
"""

RUNNER_VERSION = "1"
