"""On a CUDA GPU: the GPU data path and the torch backend against the CPU path.

Marked ``gpu``; every test skips without a CUDA GPU (CI has none). These ran
only where docs/gpu.md says they ran.
"""

from __future__ import annotations

import numpy as np
import pytest

from framewire.inference.heads import DecodeOptions, YoloV8Head
from framewire.inference.inputs import decode_rgb
from framewire.inference.preprocess import LETTERBOX_GREY, fill_slot, place
from tests.inference.conftest import encode_jpeg, engine_config
from tests.inference.gpu_stack import count_matches, require_cuda, vtest_rgb, yolo_models
from tests.inference.test_gpu_backends import _detect, _frames
from tests.inference.test_gpu_pipeline import _random_prediction

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _cuda() -> None:
    require_cuda()


def test_nvjpeg_batch_decode_is_within_a_grey_level_of_libjpeg() -> None:
    import torch

    from framewire.inference.gpu.pipeline import decode_jpegs

    frames = [encode_jpeg(frame[:, :, ::-1].copy()) for frame in vtest_rgb([0, 40, 80, 120])]
    decoded = decode_jpegs([*frames, frames[0][:500]], torch.device("cuda"))
    assert not isinstance(decoded[-1], torch.Tensor)  # the truncated one fails alone
    for data, image in zip(frames, decoded, strict=False):
        assert isinstance(image, torch.Tensor)
        assert image.is_cuda
        difference = np.abs(image.permute(1, 2, 0).cpu().numpy().astype(int) - decode_rgb(data))
        assert difference.mean() < 1.0  # IDCTs differ; the pictures do not


def test_fitting_and_nms_on_the_gpu_equal_the_cpu_rules() -> None:
    import torch

    from framewire.inference.gpu.pipeline import fit_batch, yolo_detections

    image = vtest_rgb([10])[0]
    placement = place(768, 576, 640, 640, "letterbox")
    expected = np.zeros((3, 640, 640), np.float32)
    fill_slot(expected, image, placement, layout="NCHW", scale=1 / 255)
    target = torch.zeros((1, 3, 640, 640), device="cuda", dtype=torch.float16)
    source = torch.from_numpy(image).permute(2, 0, 1).cuda()
    fit_batch(target, [source], [placement], layout="NCHW", scale=1 / 255, pad_value=LETTERBOX_GREY)
    assert np.abs(target[0].float().cpu().numpy() - expected).max() <= 1 / 255 + 2e-3

    prediction = _random_prediction(np.random.default_rng(5), 4, 80, 8400, v5=False)
    options = [DecodeOptions(0.25, 100, 0.45, 30000)] * 4
    placements = [placement] * 4
    host = torch.empty((400, 7), dtype=torch.float32, pin_memory=True)
    found = yolo_detections(
        torch.from_numpy(prediction).cuda(), "yolov8", placements, options, host
    )
    for index in range(4):
        want = YoloV8Head().decode([prediction], index, placement, (640, 640), options[index])
        assert np.array_equal(found[index].class_ids, want.class_ids)
        np.testing.assert_allclose(found[index].boxes, want.boxes, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_on_cuda_matches_onnxruntime_on_the_cpu(precision: str) -> None:
    torchscript, onnx = yolo_models("yolov8n", 640)
    frames = _frames(6)
    cuda = _detect(
        engine_config(model=torchscript, backend="torch", device="cuda", precision=precision),
        frames,
        0.8,
    )
    cpu = _detect(engine_config(model=onnx, backend="onnxruntime"), frames, 0.8)
    matched, total = count_matches(cuda, cpu)
    print(f"{precision}: {matched} of {total} CPU detections matched on the GPU")
    # An untrained network amplifies rounding: FP16 (and nvJPEG's IDCT) may move a few boxes.
    assert matched >= (1.0 if precision == "fp32" else 0.9) * total


def test_cuda_graphs_are_captured_and_replayed() -> None:
    from framewire.inference.engine import Engine
    from framewire.inference.gpu.backend import DeviceBackend

    torchscript, _ = yolo_models("yolov8n", 640)
    engine = Engine.load(engine_config(model=torchscript, backend="torch", max_batch=8))
    try:
        backend = engine.backend
        assert isinstance(backend, DeviceBackend)
        assert backend.precision == "fp16"
        assert len(backend._graphs) == 2 * 4  # type: ignore[attr-defined]  # 2 inputs x 1,2,4,8
        batch = backend.device_input(0)
        graph_out = backend.run_device(0, 3)[0].clone()
        eager = backend.module(batch[:3])  # type: ignore[attr-defined]
        assert (graph_out.float() - eager.float()).abs().max().item() < 1e-2
    finally:
        engine.close()


def test_calls_merged_on_the_gpu_get_the_results_they_get_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    from dataclasses import replace

    from framewire.v1 import inference_service_pb2
    from tests.inference.conftest import HeldModel, RunningServer, jpeg_image, server_config

    torchscript, _ = yolo_models("yolov8n", 640)
    engine = engine_config(model=torchscript, backend="torch", device="cuda", max_batch=8)
    config = server_config(replace(engine, concurrent_batches=1), metrics_port=-1)
    options = inference_service_pb2.DetectOptions(score_threshold=0.8)
    frames = _frames(6)
    calls = [frames[:1], frames[1:3], frames[3:6]]
    requests = [
        inference_service_pb2.DetectRequest(images=[jpeg_image(f, options=options) for f in call])
        for call in calls
    ]
    with RunningServer(config) as server:  # --merge-calls auto: a GPU merges
        queue = server.server.servicer.calls
        assert queue is not None
        assert queue.merge
        alone = [server.stub.Detect(request, timeout=60) for request in requests]
        with HeldModel(server.server.engine, monkeypatch) as model:
            first = server.stub.Detect.future(requests[0], timeout=60)
            model.wait_inside()
            later = [server.stub.Detect.future(request, timeout=60) for request in requests[1:]]
            while queue.calls < 3:
                threading.Event().wait(0.01)
        merged = [first.result(), *(call.result() for call in later)]
        assert server.server.engine.metrics.merged_calls._value.get() == 2

    def labelled(response: inference_service_pb2.DetectResponse) -> list[list[object]]:
        return [list(result.detections) for result in response.results]

    for together, by_itself in zip(merged, alone, strict=True):
        matched, total = count_matches(labelled(together), labelled(by_itself))
        assert total > 0
        assert matched >= 0.9 * total  # FP16 in a batch of 5 against batches of 1-3
