"""GPU inference: the torch and TensorRT backends and the GPU data path they share.

- :mod:`~framewire.inference.gpu.plan`: precision, profiles, engine cache keys,
  buffer and CUDA-graph planning (plain Python, tested everywhere);
- :mod:`~framewire.inference.gpu.runtime`: importing PyTorch and TensorRT with
  messages that say how to install them;
- :mod:`~framewire.inference.gpu.backend`: what a device backend provides;
- :mod:`~framewire.inference.gpu.torch_backend` (``--backend torch``) and
  :mod:`~framewire.inference.gpu.tensorrt_backend` (``--backend tensorrt``);
- :mod:`~framewire.inference.gpu.pipeline`: batched decode, letterbox and NMS
  on the device;
- :mod:`~framewire.inference.gpu.engine`: the engine that serves them.

Only the modules that run a model import PyTorch or TensorRT, so framewire
imports and its CPU backends work without either. docs/gpu.md says what ran
on which machine.
"""
