"""MLServer custom runtime for the benchmark: loads a TorchScript file, runs one forward call.

Runs inside MLServer's process (its own virtualenv), not in Truce. The first input is the
model's tensor (any name); the output is returned as ``output-0``. With MLServer's adaptive
batching on, MLServer itself concatenates requests before ``predict``.
"""

from __future__ import annotations

import os

import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class TorchScriptRuntime(MLModel):  # type: ignore[misc]  # MLServer is not installed for mypy
    """TorchScript in, FP32 logits out."""

    async def load(self) -> bool:
        threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
        if threads:
            torch.set_num_threads(threads)
        uri = await get_model_uri(self._settings)
        self._model = torch.jit.load(uri, map_location="cpu").eval()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        with torch.inference_mode():
            y = self._model(torch.from_numpy(x)).numpy()
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output("output-0", y)],
        )
