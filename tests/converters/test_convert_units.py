"""Pure parts of the converters: samples, parity arithmetic, the route table, planning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.job import Tolerance
from converters.parity import compare_output, default_tolerance
from converters.samples import batch_plan, generate, load_dir, repeat_to
from converters.service import ConvertOptions, plan
from converters.targets import TARGETS, check_installed, route, targets_from
from model_store.signature import TensorSpec
from truce.errors import FailedPrecondition, InvalidArgument, MissingDependency, NotFound

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 3, 4])
IDS = TensorSpec(name="ids", datatype="INT64", shape=[-1, -1])


# --- samples -----------------------------------------------------------------------------
def test_generate_is_seeded_and_fills_dynamic_dims() -> None:
    a, b = generate([X, IDS], 5, seed=3), generate([X, IDS], 5, seed=3)
    assert a["x"].shape == (5, 3, 4) and a["x"].dtype == np.float32
    assert a["ids"].shape == (5, 8) and a["ids"].dtype == np.int64
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], generate([X], 5, seed=4)["x"])


def test_batch_plan_varies_dynamic_and_repeats_static() -> None:
    assert batch_plan(32, [X]) == [1, 7, 8, 8, 8]
    assert batch_plan(3, [X]) == [1, 2]
    assert batch_plan(40, [X]) == [1, 7, 8, 8, 8, 8]
    fixed = TensorSpec(name="x", datatype="FP32", shape=[4, 3])
    assert batch_plan(10, [fixed]) == [4, 4, 4]
    arrays = repeat_to({"x": np.arange(3)}, 7)
    assert arrays["x"].tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_load_dir_reads_npy_and_npz_and_hashes(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((2, 3, 4), np.float32))
    np.save(tmp_path / "b.npy", np.ones((3, 4), np.float32))  # one sample, no batch dim
    arrays, hashes = load_dir(tmp_path, [X])
    assert arrays["x"].shape == (3, 3, 4)
    assert sorted(hashes) == ["a.npy", "b.npy"] and all(len(h) == 64 for h in hashes.values())

    two = tmp_path / "two"
    two.mkdir()
    np.savez(two / "s.npz", x=np.zeros((2, 3, 4), np.float32), ids=np.zeros((2, 5), np.int64))
    arrays, _ = load_dir(two, [X, IDS])
    assert arrays["ids"].shape == (2, 5)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.ones((2, 3, 5), np.float32), r"has shape \[2, 3, 5\]"),
        (np.ones((2, 3, 4), np.float64), "is float64, the model takes float32"),
        (np.array([{"a": 1}], dtype=object), "without pickle"),
    ],
)
def test_load_dir_refuses_bad_files(tmp_path: Path, array: np.ndarray, expected: str) -> None:
    np.save(tmp_path / "bad.npy", array, allow_pickle=True)
    with pytest.raises(InvalidArgument, match=expected):
        load_dir(tmp_path, [X])


def test_load_dir_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_dir(tmp_path / "absent", [X])
    with pytest.raises(InvalidArgument, match=r"no \.npy or \.npz"):
        load_dir(tmp_path, [X])
    np.savez(tmp_path / "s.npz", y=np.zeros((1, 3, 4), np.float32))
    with pytest.raises(InvalidArgument, match="name each array after its input"):
        load_dir(tmp_path, [X])


# --- parity arithmetic -------------------------------------------------------------------
def test_compare_passes_close_outputs_and_reports_metrics() -> None:
    ref = np.random.default_rng(0).standard_normal((16, 10)).astype(np.float32)
    rep = compare_output("y", ref, ref + 1e-7, default_tolerance("none"))
    assert rep.passed and rep.mismatched == 0
    assert rep.max_abs_err is not None and rep.max_abs_err < 2e-7
    assert rep.top1_agreement == 1.0 and rep.cosine is not None and rep.cosine > 0.999999


def test_compare_fails_beyond_tolerance_and_names_the_output() -> None:
    ref = np.ones((4, 10), np.float32)
    rep = compare_output("logits", ref, ref + 0.01, default_tolerance("none"))
    assert not rep.passed and rep.mismatched == 40
    assert "output 'logits': 40 of 40 values differ" in rep.reasons[0]
    assert compare_output("logits", ref, ref + 0.01, default_tolerance("fp16")).passed


def test_quantized_modes_are_judged_by_cosine_and_top1() -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((50, 10)).astype(np.float32)
    noisy = ref + rng.normal(0, 0.01, ref.shape).astype(np.float32)
    assert compare_output("y", ref, noisy, default_tolerance("int8")).passed
    shuffled = ref[:, ::-1].copy()
    rep = compare_output("y", ref, shuffled, default_tolerance("int8"))
    assert not rep.passed and any("top-1 agreement" in r for r in rep.reasons)


def test_shape_nan_and_integer_mismatches_fail() -> None:
    tol = default_tolerance("none")
    assert (
        "has shape [2, 3]"
        in compare_output("y", np.zeros((2, 2)), np.zeros((2, 3)), tol).reasons[0]
    )
    nan = np.array([[np.nan, 1.0]])
    assert not compare_output("y", np.array([[0.0, 1.0]]), nan, tol).passed
    assert compare_output("y", nan, nan.copy(), tol).passed
    ints = compare_output("y", np.array([1, 2, 3]), np.array([1, 2, 4]), tol)
    assert not ints.passed and ints.mismatched == 1


def test_tolerance_overrides() -> None:
    tol = default_tolerance("int8", {"min_top1": 0.5, "atol": 0.1})
    assert tol == Tolerance(atol=0.1, rtol=None, min_cosine=0.99, min_top1=0.5)
    assert default_tolerance("none", {"rtol": 0.0}).rtol == 0.0


# --- routes and planning -----------------------------------------------------------------
def test_route_table_covers_the_issue() -> None:
    assert targets_from("torchscript") == [
        "torchscript_lite",
        "torch_export",
        "onnx",
        "tflite",
        "executorch",
    ]
    assert "torchscript" in targets_from("torch_export")
    assert targets_from("keras") == ["onnx", "tflite", "savedmodel"]
    assert targets_from("onnx") == ["torchscript", "tflite"]
    assert set(TARGETS) >= {t for f in ("torchscript", "keras", "onnx") for t in targets_from(f)}


@pytest.mark.parametrize(
    ("source", "target", "quantize", "error", "text"),
    [
        ("torchscript", "tensorrt", "none", InvalidArgument, "unknown target 'tensorrt'; use one"),
        ("tflite", "onnx", "none", FailedPrecondition, "cannot be converted: convert from"),
        ("keras", "torchscript", "none", InvalidArgument, "Truce converts to onnx, tflite"),
        ("onnx", "onnx", "none", InvalidArgument, "already onnx; pick another"),
        ("torchscript", "onnx", "int8", InvalidArgument, "applies to --to tflite only"),
    ],
)
def test_route_errors_are_one_actionable_line(
    source: str, target: str, quantize: str, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text) as info:
        route(source, target, quantize)
    assert "\n" not in str(info.value)


def test_missing_extra_names_the_install_command() -> None:
    r = route("onnx", "tflite")
    with pytest.raises(MissingDependency, match=r"onnx2tf.*pip install 'truce\[convert\]'"):
        check_installed(r, has=lambda module: module != "onnx2tf")


def test_plan_expands_quantization_for_tflite_only(tmp_path: Path) -> None:
    opts = ConvertOptions(targets=["onnx", "tflite"], quantize=["none", "int8"])
    assert plan("keras", opts) == [("onnx", "none"), ("tflite", "none"), ("tflite", "int8")]
    with pytest.raises(InvalidArgument, match="add --to tflite"):
        plan("keras", ConvertOptions(targets=["onnx"], quantize=["fp16"]))
    with pytest.raises(InvalidArgument, match="unknown --quantize 'int4'"):
        plan("keras", ConvertOptions(targets=["tflite"], quantize=["int4"]))
    with pytest.raises(InvalidArgument, match="--calibration is used by --quantize int8 only"):
        plan("keras", ConvertOptions(targets=["tflite"], calibration_dir=tmp_path))
    with pytest.raises(NotFound, match="--inputs nowhere"):
        plan("keras", ConvertOptions(targets=["tflite"], inputs_dir=tmp_path / "nowhere"))
