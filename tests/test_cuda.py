"""The CUDA backend. Tests marked ``cuda`` run only where ebgc.HAS_CUDA (a GPU and the backend);
elsewhere they are skipped, and the tests without the mark check what needs no GPU: recognising
device arrays, streams, and clear errors where the backend or device is missing.

On the GPU the contract is strict: a blob made on the device is byte-for-byte what the host runner
(the device's per-lane code run on the CPU, tests/test_grid.py) writes, which is the CPU codec's
blob with the device's chunk size; ``coder="bitpack"`` blobs are the CPU's; decoding on the device
gives the CPU's bits, and streams cross between devices in both directions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ebgc
from ebgc import arrays, cuda
from ebgc.vocabulary import BFLOAT16
from conftest import assert_within_bound
from strategies import ADVERSARIAL_KINDS, adversarial, error_bounds, float_arrays, modes

DTYPES = (np.float32, np.float64, np.float16, BFLOAT16)


class FakeDeviceArray:
    """Speaks __cuda_array_interface__ without any GPU behind it."""

    def __init__(self, shape, typestr="<f4", strides=None, ptr=0, stream=None):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "strides": strides,
                                         "data": (ptr, False), "version": 3, "stream": stream}


# ---- without a GPU ------------------------------------------------------------------------------

def test_recognises_device_arrays():
    assert arrays.is_device(FakeDeviceArray((3,)))
    assert not arrays.is_device(np.zeros(3, np.float32))
    assert not arrays.is_device(b"abc")


def test_cuda_array_interface_checks():
    arr = arrays.device_array(FakeDeviceArray((0,), stream=7))
    assert (arr.shape, arr.dtype, arr.stream, arr.size) == ((0,), "float32", 7, 0)
    with pytest.raises(ebgc.UnsupportedDTypeError):
        arrays.device_array(FakeDeviceArray((3,), typestr="<i4"))
    with pytest.raises(ebgc.InvalidArgumentError, match="C-contiguous"):
        arrays.device_array(FakeDeviceArray((3, 4), strides=(4, 12)))
    with pytest.raises(ebgc.InvalidArgumentError, match="read-only"):
        fake = FakeDeviceArray((0,))
        fake.__cuda_array_interface__["data"] = (0, True)
        arrays.device_array(fake, writable=True)


def test_device_blob_needs_a_device_array_and_the_backend():
    with pytest.raises(ebgc.InvalidArgumentError, match="device arrays"):
        ebgc.compress(np.zeros(10, np.float32), 1e-3, device_blob=True)
    with pytest.raises(ebgc.InvalidArgumentError, match="device arrays"):
        ebgc.compress_many([np.zeros(10, np.float32)], 1e-3, device_blob=True)
    if not cuda.available():
        with pytest.raises(ebgc.CudaError, match="device_blob"):
            ebgc.compress(FakeDeviceArray((3,)), 1e-3, device_blob=True)
        with pytest.raises(ebgc.CudaError, match="device_blob"):
            ebgc.compress_many([FakeDeviceArray((3,))], 1e-3, device_blob=True)


def test_stream_handles():
    class TorchLike:
        cuda_stream = 1234

    class CupyLike:
        ptr = 99

    assert arrays.stream_handle(5, "cai", 0) == 5
    assert arrays.stream_handle(TorchLike(), "cai", 0) == 1234
    assert arrays.stream_handle(CupyLike(), "cai", 0) == 99
    assert arrays.stream_handle(None, "cai", 0) == 0
    for bad in (True, -1, "default", 1.5):
        with pytest.raises(ebgc.InvalidArgumentError):
            arrays.stream_handle(bad, "cai", 0)


def test_has_cuda_is_a_bool():
    assert isinstance(ebgc.HAS_CUDA, bool)
    assert ebgc.HAS_CUDA == cuda.available()


@pytest.mark.skipif(ebgc.HAS_CUDA, reason="checks the behaviour without a usable GPU")
def test_without_gpu_errors_are_typed():
    blob = ebgc.compress(np.ones(10, np.float32), 1e-2)
    with pytest.raises(ebgc.CudaError):
        ebgc.decompress(blob, device="cuda")
    with pytest.raises(ebgc.InvalidArgumentError, match="no CUDA backend"):
        ebgc.compress(FakeDeviceArray((3,)), 1e-2)
    if cuda._cuda is not None:  # built, but no device here
        assert cuda._cuda.device_count() == 0
        with pytest.raises(ebgc.CudaError):
            cuda._cuda.device_of(4096)
        with pytest.raises(ebgc.CudaError):
            cuda._cuda.compress(4096, [10], "float32", 1e-2, 1, 1, 1)
    ebgc.decompress(blob, device="cpu")  # "cpu" is the host path
    # stream decoders on a device: typed errors without one, "cpu" is the host
    with pytest.raises(ebgc.CudaError):
        ebgc.GradientDecoder(device="cuda")
    with pytest.raises(ebgc.InvalidArgumentError):
        ebgc.GradientDecoder(device="gpu0")
    msg = ebgc.GradientEncoder(1e-2).encode({"w": np.ones(10, np.float32)})
    dec = ebgc.GradientDecoder(device="cpu")
    with pytest.raises(ebgc.CudaError):
        dec.decode(msg, device="cuda:0")
    assert isinstance(dec.decode(msg)["w"], np.ndarray)  # the failed call changed nothing


# ---- on the GPU -------------------------------------------------------------------------------
# The device arrays come from torch (the GPU machine has it); cupy is used where torch is absent.

def _lib():
    try:
        import torch

        if torch.cuda.is_available():
            return "torch"
    except ImportError:
        pass
    return "cupy"


def to_device(x: np.ndarray):
    if _lib() == "torch":
        import torch

        from ebgc.torch import to_torch

        return to_torch(x.copy(order="C")).cuda()  # (ascontiguousarray would make 0-d arrays 1-d)
    import cupy

    return cupy.asarray(x)


def to_host(d) -> np.ndarray:
    """A device array back on the host: by its own kind, since ebgc.decompress(device="cuda") returns
    cupy arrays (torch tensors only for bfloat16) whichever library made the input."""
    if hasattr(d, "get"):  # cupy
        return d.get()
    import torch

    d = d.cpu()
    if d.dtype == torch.bfloat16:
        return d.view(torch.int16).numpy().view(BFLOAT16)
    return d.numpy()


def bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view({8: np.uint64, 4: np.uint32, 2: np.uint16}[a.dtype.itemsize])


def synchronize():
    if _lib() == "torch":
        import torch

        torch.cuda.synchronize()
    else:
        import cupy

        cupy.cuda.Device().synchronize()


def host_reference(x: np.ndarray, eb: float, mode: str, coder: str = "auto", previous=None, previous2=None,
                   reconstruction=None) -> bytes:
    """What the device must write: the host runner's blob (coder auto/context/huffman/raw) or the
    CPU's bit-packed blob."""
    from ebgc import _core
    from ebgc.vocabulary import CODERS, MODES

    def buf(a):
        return a if a is None or a.dtype != BFLOAT16 else a.view(np.uint16)

    name = "bfloat16" if x.dtype == BFLOAT16 else x.dtype.name
    if coder == "bitpack":
        return _core.compress(buf(np.ascontiguousarray(x)), name, eb, MODES[mode], CODERS[coder], 1, low_rank=False,
                              previous=buf(previous), previous2=buf(previous2))
    return _core._grid_compress(buf(np.ascontiguousarray(x)), name, eb, MODES[mode], CODERS[coder],
                                previous=buf(previous), previous2=buf(previous2), reconstruction=buf(reconstruction))


def assert_gpu_matches_cpu(x: np.ndarray, eb: float, mode: str) -> None:
    """The GPU blob is the host runner's (auto) and the CPU's (bitpack), and decoding it on the GPU
    gives the CPU's bits, within the bound."""
    for coder in ("auto", "bitpack"):
        blob = ebgc.compress(to_device(x), eb, mode=mode, coder=coder)
        assert blob == host_reference(x, eb, mode, coder), coder
        out = to_device(np.zeros_like(x))
        ebgc.decompress(blob, out=out)
        synchronize()
        assert_within_bound(x, to_host(out), blob)
        np.testing.assert_array_equal(bits(to_host(out)), bits(ebgc.decompress(blob)))


SIZES = (1, 31, 32, 33, 2047, 2048, 2049, 65535, 65536, 65537, 300_001)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("mode,eb", [("rel", 1e-2), ("rel", 1e-4), ("abs", 1e-3)])
@pytest.mark.parametrize("coder", ["auto", "context", "huffman", "bitpack"])
def test_gpu_blob_is_the_host_runners_blob(dtype, n, mode, eb, coder):
    x = (np.random.default_rng(n).laplace(size=n) * 1e-3).astype(dtype)
    ref = host_reference(x, eb, mode, coder)
    gpu = ebgc.compress(to_device(x), eb, mode=mode, coder=coder)
    assert gpu == ref
    y = ebgc.decompress(gpu, device="cuda")
    synchronize()
    np.testing.assert_array_equal(bits(to_host(y) if not isinstance(y, np.ndarray) else y),
                                  bits(ebgc.decompress(ref)))


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ADVERSARIAL_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_gpu_adversarial_inputs(kind, dtype):
    x = adversarial(kind, 5000, dtype, np.random.default_rng(3))
    for mode, eb in (("rel", 1e-3), ("abs", 1e-6)):
        assert_gpu_matches_cpu(x, eb, mode)


@pytest.mark.cuda
def test_gpu_too_many_outliers_falls_back_to_the_same_blob():
    x = np.full(100_000, np.nan, np.float32)  # every value is an outlier: over the GPU's capacity
    x[::7] = 1.0
    assert ebgc.compress(to_device(x), 1e-2, coder="bitpack") == ebgc.compress(x, 1e-2, coder="bitpack")
    assert ebgc.compress(to_device(x), 1e-2, coder="context") == host_reference(x, 1e-2, "rel", "context")
    assert ebgc.compress(to_device(x), 1e-2, coder="huffman") == host_reference(x, 1e-2, "rel", "huffman")


@pytest.mark.cuda
@pytest.mark.parametrize("coder", ["raw", "huffman", "context", "bitpack"])
def test_gpu_decodes_cpu_blobs_of_every_coder(coder):
    x = (np.random.default_rng(1).laplace(size=(300, 700)) * 1e-3).astype(np.float32)
    blob = ebgc.compress(x, 1e-3, coder=coder)
    y = ebgc.decompress(blob, device="cuda")
    synchronize()
    np.testing.assert_array_equal(bits(to_host(y)), bits(ebgc.decompress(blob)))
    if coder in ("huffman", "context"):  # host-coded (a matrix the low-rank fit may predict)
        assert ebgc.compress(to_device(x), 1e-3, coder=coder) == blob
    else:
        assert ebgc.compress(to_device(x), 1e-3, coder=coder) == host_reference(x, 1e-3, "rel", coder)


@pytest.mark.cuda
@pytest.mark.parametrize("coder", ["auto", "context", "huffman"])
def test_gpu_decodes_low_rank_blobs_and_host_codes_them_alike(coder):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((200, 3)) @ rng.standard_normal((3, 300)) + 0.01 * rng.standard_normal((200, 300)))
    x = x.astype(np.float32)
    blob = ebgc.compress(x, 1e-3, coder=coder if coder != "auto" else "context")
    assert ebgc.info(blob)["predictor"] == "low-rank"
    y = ebgc.decompress(blob, device="cuda")  # on the GPU (the factors go up)
    synchronize()
    np.testing.assert_array_equal(bits(to_host(y)), bits(ebgc.decompress(blob)))
    # host-coded (the low-rank fit is a CPU stage): the CPU's blob
    assert ebgc.compress(to_device(x), 1e-3, coder=coder if coder != "auto" else "context") == blob
    assert ebgc.compress(to_device(x), 1e-3) == ebgc.compress(x, 1e-3)
    # low_rank=False keeps the matrix on the device
    assert ebgc.compress(to_device(x), 1e-3, low_rank=False) == host_reference(x, 1e-3, "rel")


@pytest.mark.cuda
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_gpu_bound_property(data):
    dtype = data.draw(st.sampled_from(DTYPES))
    x = data.draw(float_arrays(dtype))
    assert_gpu_matches_cpu(x, data.draw(error_bounds()), data.draw(modes()))


@pytest.mark.cuda
def test_gpu_non_contiguous_input_and_out_checks():
    import torch

    x = torch.randn(64, 50, device="cuda")
    view = x[:, ::2]
    blob = ebgc.compress(view, 1e-2, low_rank=False)
    assert blob == host_reference(view.cpu().numpy(), 1e-2, "rel")
    with pytest.raises(ebgc.InvalidArgumentError, match="C-contiguous"):
        ebgc.decompress(blob, out=torch.empty(50, 64, device="cuda").t())
    with pytest.raises(ebgc.InvalidArgumentError, match="dtype"):
        ebgc.decompress(blob, out=torch.empty(64, 25, device="cuda", dtype=torch.float64))
    with pytest.raises(ebgc.InvalidArgumentError, match="elements"):
        ebgc.decompress(blob, out=torch.empty(64, 26, device="cuda"))


@pytest.mark.cuda
def test_gpu_refuses_pointers_off_the_element_grid():
    base = to_device(np.zeros(17, np.float32))
    ptr = int(base.data_ptr()) if hasattr(base, "data_ptr") else int(base.data.ptr)
    with pytest.raises(ebgc.InvalidArgumentError, match="aligned"):
        ebgc.compress(FakeDeviceArray((4,), "<f4", ptr=ptr + 2), 1e-2)
    blob = ebgc.compress(np.ones(4, np.float32), 1e-2, coder="bitpack")
    with pytest.raises(ebgc.InvalidArgumentError, match="aligned"):
        ebgc.decompress(blob, out=FakeDeviceArray((4,), "<f4", ptr=ptr + 2))
    synchronize()


@pytest.mark.cuda
def test_gpu_stream_semantics():
    import torch

    x = torch.randn(1 << 20, device="cuda")
    blob = ebgc.compress(x, 1e-3)
    side = torch.cuda.Stream()
    out = torch.empty_like(x)
    with torch.cuda.stream(side):
        ebgc.decompress(blob, out=out)  # the current stream, side
    side.synchronize()
    ref = ebgc.decompress(blob)
    np.testing.assert_array_equal(out.cpu().numpy().view(np.uint32), ref.view(np.uint32))
    out2 = torch.empty_like(x)
    ebgc.decompress(blob, out=out2, stream=side)  # an explicit stream object
    ebgc.decompress(blob, out=out2, stream=side.cuda_stream)  # a raw handle
    side.synchronize()
    assert torch.equal(out, out2)


@pytest.mark.cuda
def test_gpu_hostile_blobs_are_refused_before_writing():
    import torch

    x = np.random.default_rng(5).standard_normal(10_000).astype(np.float32)
    blob = ebgc.compress(x, 1e-2, coder="bitpack")
    out = torch.full((10_000,), 7.0, device="cuda")
    for bad in (blob[:-1], blob[: len(blob) // 2], b"EBGC" + blob[4:40], b"not a blob at all"):
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(bad, out=out)
    for pos in range(0, len(blob), 97):
        flipped = bytearray(blob)
        flipped[pos] ^= 0x10
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(bytes(flipped), out=out)
    torch.cuda.synchronize()
    assert bool((out == 7.0).all())


@pytest.mark.cuda
def test_gpu_workspace_reuse_across_sizes():
    rng = np.random.default_rng(9)
    for n in (1 << 20, 100, 1 << 22, 5000, 1 << 20):
        x = rng.standard_normal(n).astype(np.float32)
        assert ebgc.compress(to_device(x), 1e-3) == host_reference(x, 1e-3, "rel")
        assert ebgc.compress(to_device(x), 1e-3, coder="bitpack") == ebgc.compress(x, 1e-3, coder="bitpack")


@pytest.mark.cuda
def test_gpu_torch_helpers_stay_on_device():
    import torch

    import ebgc.torch as et

    t = torch.randn(1000, 9, device="cuda", dtype=torch.bfloat16)
    back = et.decompress(et.compress(t, 1e-2), device="cuda")
    assert back.device.type == "cuda" and back.dtype == torch.bfloat16 and back.shape == t.shape


def test_the_plan_decides_what_runs_on_the_device():
    """The one planning point (csrc/include/ebgc/plan.hpp) the CUDA backend asks, checked without a
    GPU: a device tensor is coded on the device (context lanes, Huffman on the same lanes,
    bit-packing, raw; "auto" picks among them); a device output decodes raw, bit-packed, Huffman and
    context blobs on the device (low-rank ones too), only the serial context layout on the host."""
    from ebgc import _core
    from ebgc.vocabulary import CODERS

    for name in ("auto", "bitpack", "context", "huffman", "raw"):
        assert _core._compress_where_device(CODERS[name]) == "device", name
    # matrices the low-rank fit may predict go to the CPU codec, unless low_rank is off
    for name, where in (("auto", "host"), ("context", "host"), ("huffman", "host"), ("bitpack", "device"),
                        ("raw", "device")):
        assert _core._compress_where_device(CODERS[name], shape=[512, 512]) == where, name
        assert _core._compress_where_device(CODERS[name], shape=[512, 512], low_rank=False) == "device", name
    x = np.random.default_rng(3).standard_normal((64, 96)).astype(np.float32)
    expect = {"bitpack": "device", "raw": "device", "huffman": "device", "context": "device"}
    for coder, where in expect.items():
        blob = ebgc.compress(x, 1e-2, coder=coder, low_rank=False)
        assert _core._decompress_where_device(_core.inspect(blob)) == where, coder
    rng = np.random.default_rng(2)
    low = (rng.standard_normal((200, 3)) @ rng.standard_normal((3, 300))).astype(np.float32)
    for coder, where in (("context", "device"), ("huffman", "device")):
        blob = ebgc.compress(low, 1e-3, coder=coder)
        assert ebgc.info(blob)["predictor"] == "low-rank"
        assert _core._decompress_where_device(_core.inspect(blob)) == where, coder
    serial = (Path(__file__).parent / "fixtures" / "f32_rel_context.ebgc").read_bytes()  # an older encoder's layout
    assert _core._decompress_where_device(_core.inspect(serial)) == "host"


# ---- streams on the device ----------------------------------------------------------------------

def _rounds(n_rounds=4, shapes=((64, 32, 3, 3), (512, 300), (1000,)), seed=11):
    rng = np.random.default_rng(seed)
    w = {f"t{k}": rng.standard_normal(s).astype(np.float32) for k, s in enumerate(shapes)}
    out = []
    for _ in range(n_rounds):
        w = {k: (v + 0.01 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in w.items()}
        out.append(dict(w))
    return out


def _host_tree(d):
    return {k: to_host(v) if not isinstance(v, np.ndarray) else v for k, v in d.items()}


@pytest.mark.cuda
def test_gpu_digest_is_the_host_digest():
    from ebgc import _core

    for n in (1, 7, 4096, 4097, 1 << 20):
        x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        for seed in (0, 0xDEADBEEF):
            assert cuda.crc32c(to_device(x), seed) == _core.crc32c(x.view(np.uint8), seed)


@pytest.mark.cuda
@pytest.mark.parametrize("history", [1, 2])
def test_gpu_stream_encodes_on_the_device_and_decodes_anywhere(history):
    rounds = _rounds()
    enc = ebgc.GradientEncoder(1e-2, stream_id="gpu", history=history)
    host_dec, gpu_dec = ebgc.GradientDecoder(), ebgc.GradientDecoder(device="cuda")
    cpu_enc = ebgc.GradientEncoder(1e-2, stream_id="cpu", history=history)
    gpu_bytes = cpu_bytes = 0
    for r, w in enumerate(rounds):
        msg = enc.encode({k: to_device(v) for k, v in w.items()})
        gpu_bytes += len(msg)
        cpu_bytes += len(cpu_enc.encode(w))
        on_host = host_dec.decode(msg)
        on_gpu = _host_tree(gpu_dec.decode(msg))
        for k in w:
            np.testing.assert_array_equal(bits(on_host[k]), bits(on_gpu[k]))
            assert_within_bound(w[k], on_host[k], ebgc.info(msg)["tensors"][k])
        if r:
            assert any(t["predictor"].startswith(("scaled", "blend")) for t in ebgc.info(msg)["tensors"].values())
    # the device codes without low rank and with smaller chunks: close to the CPU stream, not above 1.15x
    assert gpu_bytes <= 1.15 * cpu_bytes


@pytest.mark.cuda
@pytest.mark.parametrize("coder", ["auto", "bitpack"])
@pytest.mark.parametrize("shape", [(300_001,), (64, 32, 3, 3), (700, 300)])
def test_gpu_stream_blobs_are_the_host_runners(coder, shape):
    """With the stream's terms on the device (the blend fitted from the GPU's own sums), every blob
    and reconstruction is the host runner's to the bit."""
    from ebgc.settings import Settings

    settings = Settings.make(1e-3, "rel", coder, False)
    rng = np.random.default_rng(14)
    x = rng.standard_normal(shape).astype(np.float32)
    host_state, device_state = [], []
    for _ in range(4):
        x = (1.02 * x + 0.01 * rng.standard_normal(shape)).astype(np.float32)
        prev = (host_state + [None, None])[:2]
        dprev = (device_state + [None, None])[:2]
        rec_h, rec_d = np.empty_like(x), to_device(np.empty_like(x))
        blob = cuda.compress(to_device(x), settings, None, dprev[0], dprev[1], rec_d)
        assert blob == host_reference(x, 1e-3, "rel", coder, prev[0], prev[1], rec_h)
        synchronize()
        np.testing.assert_array_equal(bits(to_host(rec_d)), bits(rec_h))
        host_state, device_state = [rec_h] + host_state[:1], [rec_d] + device_state[:1]


@pytest.mark.cuda
def test_gpu_stream_switches_sides_mid_way():
    rounds = _rounds(6)
    enc = ebgc.GradientEncoder(1e-3, stream_id="switch")
    host_dec, gpu_dec = ebgc.GradientDecoder(), ebgc.GradientDecoder(device="cuda")
    for r, w in enumerate(rounds):
        on_gpu = r in (2, 3, 5)
        msg = enc.encode({k: to_device(v) for k, v in w.items()} if on_gpu else w)
        a = host_dec.decode(msg)
        b = _host_tree(gpu_dec.decode(msg, device="cpu" if r == 4 else None))  # the decoder switches too
        for k in w:
            np.testing.assert_array_equal(bits(a[k]), bits(b[k]))
            assert_within_bound(w[k], a[k], ebgc.info(msg)["tensors"][k])


@pytest.mark.cuda
def test_gpu_stream_error_feedback_and_budget():
    rounds = _rounds(4)
    enc = ebgc.GradientEncoder(1e-2, stream_id="ef", error_feedback=True, budget_bytes=20_000)
    dec = ebgc.GradientDecoder(device="cuda")
    for w in rounds:
        msg = enc.encode({k: to_device(v) for k, v in w.items()})
        assert len(msg) <= 20_000 or not enc.last_report.within_budget
        dec.decode(msg)


@pytest.mark.cuda
@pytest.mark.parametrize("coder", ["context", "huffman"])
def test_gpu_decodes_corrupt_lane_coded_blobs_as_errors(coder):
    from ebgc import _core

    x = np.random.default_rng(12).standard_normal(100_000).astype(np.float32)
    blob = ebgc.compress(to_device(x), 1e-3, coder=coder)
    rng = np.random.default_rng(13)
    for at in rng.integers(len(blob) // 2, len(blob) - 4, 60):
        bad = bytearray(blob)
        bad[int(at)] ^= int(rng.integers(1, 256))
        bad[-4:] = _core.crc32c(bytes(bad[:-4])).to_bytes(4, "little")
        try:
            want = ebgc.decompress(bytes(bad))
        except ebgc.EbgcError:
            with pytest.raises(ebgc.EbgcError):
                ebgc.decompress(bytes(bad), device="cuda")
            continue
        got = ebgc.decompress(bytes(bad), device="cuda")
        synchronize()
        np.testing.assert_array_equal(bits(to_host(got)), bits(want))


# ---- whole messages (fast mode): one grid for all tensors ----------------------------------------

def _message(seed=21, dtype=np.float32):
    """A resnet-like message: tensors of every edge size of the message grid, a few outliers."""
    rng = np.random.default_rng(seed)
    sizes = [1, 3, 31, 33, 64, 1025, 8191, 8192, 8193, 65536, 65537, 147_456, 300_001, 0]
    xs = [(rng.laplace(size=n) * 10.0 ** (k % 4 - 3)).astype(dtype) for k, n in enumerate(sizes)]
    xs[6][[5, 100]] = [np.nan, np.inf]
    xs[10][::9000] = np.nan
    xs.append(rng.standard_normal((64, 32, 3, 3)).astype(dtype))
    return xs


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("mode,eb", [("rel", 1e-2), ("abs", 1e-4)])
def test_gpu_message_grid_blobs_are_the_cpu_blobs(dtype, mode, eb):
    """Every blob of the message grid is the CPU codec's bit-packed blob of that tensor alone, and
    every reconstruction the CPU's."""
    from ebgc.settings import Settings

    xs = _message(dtype=dtype)
    recs = [to_device(np.zeros_like(x)) for x in xs]
    blobs = cuda.compress_many([to_device(x) for x in xs], Settings.make(eb, mode, "bitpack"), None, recs)
    synchronize()
    for x, blob, rec in zip(xs, blobs, recs):
        rec_h = np.empty_like(x)
        from ebgc import _core
        from ebgc.vocabulary import CODERS, MODES

        def buf(a):
            return a if a.dtype != BFLOAT16 else a.view(np.uint16)

        name = "bfloat16" if x.dtype == BFLOAT16 else x.dtype.name
        ref = _core.compress(buf(x), name, eb, MODES[mode], CODERS["bitpack"], 1, low_rank=False,
                             reconstruction=buf(rec_h))
        assert blob == ref, x.shape
        np.testing.assert_array_equal(bits(to_host(rec)), bits(rec_h))


@pytest.mark.cuda
def test_gpu_compress_many_is_compress_of_each():
    xs = _message(seed=22) + [np.arange(5000, dtype=np.float64)]  # two dtypes: two grids
    devs = [to_device(x) for x in xs]
    for coder in ("bitpack", "auto", "context", "huffman", "raw"):
        for low_rank in (True, False):
            assert ebgc.compress_many(devs, 1e-3, coder=coder, low_rank=low_rank) == [
                ebgc.compress(d, 1e-3, coder=coder, low_rank=low_rank) for d in devs], (coder, low_rank)
    assert ebgc.compress_many(devs + xs, 1e-3, coder="bitpack")[len(xs):] == [ebgc.compress(x, 1e-3, coder="bitpack")
                                                                            for x in xs]


@pytest.mark.cuda
@pytest.mark.parametrize("coder", ["bitpack", "context", "huffman", "auto"])
def test_gpu_outlier_heavy_message_gives_the_same_blobs(coder):
    # fast mode falls back past its outlier capacity; the lane coders size their gather exactly
    x = np.full(400_000, np.nan, np.float32)  # every value an outlier: over the message's capacity
    x[::7] = 1.0
    xs = [x, np.ones(1000, np.float32), x[:9000].copy(), np.random.default_rng(1).standard_normal(70_000)]
    devs = [to_device(v) for v in xs]
    assert ebgc.compress_many(devs, 1e-2, coder=coder) == [ebgc.compress(d, 1e-2, coder=coder) for d in devs]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("coder", ["auto", "context", "huffman"])
def test_gpu_ratio_message_grid_blobs_are_the_host_runners(dtype, coder):
    """The ratio coders' message grid writes, for every tensor, the single-tensor host runner's blob
    and reconstruction (the host picks bit-packing or raw for some of them)."""
    from ebgc import _core
    from ebgc.settings import Settings
    from ebgc.vocabulary import CODERS, MODES

    xs = _message(seed=23, dtype=dtype) + [np.full(3000, 2.0, dtype)]
    name = "bfloat16" if dtype == BFLOAT16 else np.dtype(dtype).name

    def buf(a):
        return a if a.dtype != BFLOAT16 else a.view(np.uint16)

    for mode, eb in (("rel", 1e-2), ("abs", 1e-5)):
        recs = [to_device(np.zeros_like(x)) for x in xs]
        blobs = cuda.compress_many([to_device(x) for x in xs], Settings.make(eb, mode, coder, False), None, recs)
        synchronize()
        for x, blob, rec in zip(xs, blobs, recs):
            rec_h = np.empty_like(x)
            ref = _core._grid_compress(buf(x), name, eb, MODES[mode], CODERS[coder], reconstruction=buf(rec_h))
            assert blob == ref, (x.shape, mode)
            np.testing.assert_array_equal(bits(to_host(rec)), bits(rec_h))


@pytest.mark.cuda
def test_gpu_message_refuses_overlapping_reconstructions():
    from ebgc.settings import Settings

    d = to_device(np.ones(100, np.float32))
    with pytest.raises(ebgc.InvalidArgumentError):
        cuda.compress_many([d], Settings.make(1e-3, "rel", "bitpack"), None, [d])


@pytest.mark.cuda
def test_gpu_bitpack_stream_keyframes_use_the_message_grid_and_decode_anywhere():
    rounds = _rounds()
    enc = ebgc.GradientEncoder(1e-2, coder="bitpack", stream_id="fast", keyframe_interval=2)
    cpu = ebgc.GradientEncoder(1e-2, coder="bitpack", stream_id="fast", keyframe_interval=2, low_rank=False)
    host_dec, gpu_dec = ebgc.GradientDecoder(), ebgc.GradientDecoder(device="cuda")
    for r, w in enumerate(rounds):
        msg = enc.encode({k: to_device(v) for k, v in w.items()})
        cpu_msg = cpu.encode(w)
        on_host, on_gpu = host_dec.decode(msg), _host_tree(gpu_dec.decode(msg))
        for k in w:
            np.testing.assert_array_equal(bits(on_host[k]), bits(on_gpu[k]))
            assert_within_bound(w[k], on_host[k], ebgc.info(msg)["tensors"][k])
        if r % 2 == 0:  # keyframes: every tensor through the message grid, each blob the CPU's
            assert msg == cpu_msg


@pytest.mark.cuda
@pytest.mark.parametrize("coder", ["bitpack", "context", "auto"])
def test_gpu_stream_message_grid_is_the_host_runners(coder):
    """Stream rounds of a whole message through one grid (the blends of all tensors fitted at once):
    every blob and reconstruction is the message host runner's, and each tensor's is the one it gets
    alone."""
    from ebgc import _core
    from ebgc.settings import Settings
    from ebgc.vocabulary import CODERS, MODES

    rng = np.random.default_rng(31)
    shapes = [(64, 32, 3, 3), (1000,), (3,), (16_389,), (40_000,)]
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    settings = Settings.make(1e-3, "rel", coder, False)
    host_hist, dev_hist = [], []
    for _ in range(4):
        xs = [(1.03 * x + 0.02 * rng.standard_normal(x.shape)).astype(np.float32) for x in xs]
        p1 = host_hist[0] if host_hist else [None] * len(xs)
        p2 = host_hist[1] if len(host_hist) > 1 else [None] * len(xs)
        d1 = dev_hist[0] if dev_hist else [None] * len(xs)
        d2 = dev_hist[1] if len(dev_hist) > 1 else [None] * len(xs)
        recs_h = [np.empty_like(x) for x in xs]
        ref = _core._grid_compress_message(xs, "float32", 1e-3, MODES["rel"], CODERS[coder], reconstructions=recs_h,
                                           previous=p1, previous2=p2)
        recs_d = [to_device(np.empty_like(x)) for x in xs]
        got = cuda.compress_many([to_device(x) for x in xs], settings, None, recs_d, d1, d2)
        synchronize()
        assert got == ref
        for a, b in zip(recs_d, recs_h):
            np.testing.assert_array_equal(bits(to_host(a)), bits(b))
        host_hist, dev_hist = [recs_h] + host_hist[:1], [recs_d] + dev_hist[:1]


# ---- blobs held in device memory (NCCL payloads): decoded where they are -------------------------

def _device_bytes(blob: bytes):
    return to_device(np.frombuffer(blob, np.uint8).copy())


@pytest.mark.cuda
@pytest.mark.parametrize("coder", ["raw", "bitpack", "context", "huffman", "auto"])
def test_gpu_decodes_blobs_in_device_memory(coder):
    rng = np.random.default_rng(41)
    x = (rng.laplace(size=300_001) * 1e-2).astype(np.float32)
    x[::997] = np.nan
    for blob in (ebgc.compress(x, 1e-3, coder=coder), ebgc.compress(to_device(x), 1e-3, coder=coder)):
        expected = ebgc.decompress(blob)
        got = ebgc.decompress(_device_bytes(blob))  # on the blob's device
        synchronize()
        np.testing.assert_array_equal(bits(to_host(got)), bits(expected))
        out = to_device(np.zeros_like(x))
        ebgc.decompress(_device_bytes(blob), out=out)
        synchronize()
        np.testing.assert_array_equal(bits(to_host(out)), bits(expected))
        parsed, _ = cuda.inspect_device(_device_bytes(blob), 0)
        if coder != "raw":  # decoded on the device: only the front came over
            assert parsed.host_bytes < len(blob) / 4


@pytest.mark.cuda
def test_gpu_decodes_low_rank_and_stream_blobs_in_device_memory():
    rng = np.random.default_rng(42)
    m = (rng.standard_normal((300, 40)) @ rng.standard_normal((40, 200))).astype(np.float32)
    blob = ebgc.compress(m, 1e-3)
    np.testing.assert_array_equal(bits(to_host(ebgc.decompress(_device_bytes(blob)))), bits(ebgc.decompress(blob)))
    from ebgc.settings import Settings

    p1 = rng.standard_normal(70_000).astype(np.float32)
    x = (1.1 * p1 + 0.01 * rng.standard_normal(p1.size)).astype(np.float32)
    for coder in ("bitpack", "context"):
        blob = cuda.compress(to_device(x), Settings.make(1e-3, "rel", coder, False), None, to_device(p1))
        parsed = cuda.inspect_device(_device_bytes(blob), 0)
        out = to_device(np.zeros_like(x))
        cuda.decompress_device_blob(parsed, out, 1, None, previous=to_device(p1))
        synchronize()
        expected = np.empty_like(x)
        from ebgc import _core

        _core.decompress_into(_core.inspect(blob), expected, 1, previous=p1)
        np.testing.assert_array_equal(bits(to_host(out)), bits(expected))


@pytest.mark.cuda
def test_gpu_device_blobs_refuse_corruption_with_typed_errors():
    from blobfmt import chunk_directory, header_length, mutated, parse

    rng = np.random.default_rng(43)
    x = (rng.laplace(size=200_000) * 1e-2).astype(np.float32)
    for coder in ("bitpack", "context"):
        blob = ebgc.compress(x, 1e-3, coder=coder)
        with pytest.raises(ebgc.ChecksumError):  # a flipped stream byte, CRC not resealed
            ebgc.decompress(_device_bytes(blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:]))
        with pytest.raises(ebgc.FormatError):
            ebgc.decompress(_device_bytes(blob[: len(blob) // 2]))
        with pytest.raises(ebgc.OutputLimitError):
            ebgc.decompress(_device_bytes(blob), max_output=1000)
        _, _, streams = chunk_directory(parse(blob))
        start = header_length(blob) + streams  # the chunk streams, which stay on the device
        for at in range(start, len(blob) - 4, max(1, (len(blob) - start) // 40)):
            bad = mutated(blob, at, blob[at] ^ 0xFF)  # resealed: reaches the decoder
            try:
                got = ebgc.decompress(_device_bytes(bad))
                synchronize()
                np.testing.assert_array_equal(bits(to_host(got)), bits(ebgc.decompress(bad)))
            except ebgc.FormatError:
                with pytest.raises(ebgc.FormatError):
                    ebgc.decompress(bad)
    with pytest.raises(ebgc.ArgumentTypeError):
        ebgc.decompress(to_device(np.zeros(10, np.float32)))  # not a uint8 array


# ---- blobs assembled in device memory (the sender's side of NCCL payloads) -----------------------

def _blob_bytes(blob) -> bytes:
    return to_host(blob).tobytes()


@pytest.mark.cuda
@pytest.mark.parametrize("coder", ["raw", "bitpack", "context", "huffman", "auto"])
def test_gpu_device_blob_is_the_host_blob(coder):
    """compress(device_blob=True) gives, in device memory, the bytes compress() returns: the front
    written by the host, the streams placed on the device, the checksum computed there."""
    rng = np.random.default_rng(51)
    cases = [(rng.laplace(size=300_001) * 1e-2).astype(np.float32), rng.standard_normal((64, 32, 3, 3)),
             (rng.standard_normal((300, 40)) @ rng.standard_normal((40, 200))).astype(np.float32),
             np.zeros(0, np.float32), np.full(5000, np.nan, np.float16), rng.standard_normal(4097).astype(BFLOAT16)]
    cases[0][::997] = np.nan
    for x in cases:
        d = to_device(x)
        for low_rank in (True, False):
            blob = ebgc.compress(d, 1e-3, coder=coder, low_rank=low_rank, device_blob=True)
            assert arrays.is_device(blob) and arrays.device_blob(blob, cuda._cuda.device_of).size == len(blob)
            assert type(blob).__module__.split(".")[0] == type(d).__module__.split(".")[0]  # the input's framework
            synchronize()
            assert _blob_bytes(blob) == ebgc.compress(d, 1e-3, coder=coder, low_rank=low_rank), (x.shape, low_rank)
            np.testing.assert_array_equal(bits(to_host(ebgc.decompress(blob))),
                                          bits(ebgc.decompress(_blob_bytes(blob))))


@pytest.mark.cuda
def test_gpu_device_blobs_of_a_message_and_a_stream():
    from ebgc.settings import Settings

    xs = _message(seed=52) + [np.arange(5000, dtype=np.float64)]
    nan_heavy = np.full(400_000, np.nan, np.float32)  # over fast mode's outlier capacity
    nan_heavy[::7] = 1.0
    devs = [to_device(x) for x in xs + [nan_heavy]]
    for coder in ("bitpack", "auto", "context", "huffman", "raw"):
        got = ebgc.compress_many(devs, 1e-3, coder=coder, device_blob=True)
        synchronize()
        assert [_blob_bytes(b) for b in got] == ebgc.compress_many(devs, 1e-3, coder=coder), coder
    # stream terms: the blend fitted on the device, the reconstruction written there
    rng = np.random.default_rng(53)
    p1 = rng.standard_normal(70_000).astype(np.float32)
    x = (1.1 * p1 + 0.01 * rng.standard_normal(p1.size)).astype(np.float32)
    for coder in ("bitpack", "context", "auto"):
        s = Settings.make(1e-3, "rel", coder, False)
        rec_a, rec_b = to_device(np.zeros_like(x)), to_device(np.zeros_like(x))
        on_device = cuda.compress(to_device(x), s, None, to_device(p1), None, rec_a, device_blob=True)
        host = cuda.compress(to_device(x), s, None, to_device(p1), None, rec_b)
        synchronize()
        assert _blob_bytes(on_device) == host
        np.testing.assert_array_equal(bits(to_host(rec_a)), bits(to_host(rec_b)))


@pytest.mark.cuda
def test_gpu_device_blob_on_another_stream_and_under_a_budget():
    rng = np.random.default_rng(54)
    x = to_device((rng.laplace(size=200_000) * 1e-2).astype(np.float32))
    ref = ebgc.compress(x, 1e-3, coder="context")
    if _lib() == "torch":
        import torch

        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            blob = ebgc.compress(x, 1e-3, coder="context", device_blob=True)
        s.synchronize()
        assert _blob_bytes(blob) == ref
    fitted = ebgc.compress(x, 1e-4, budget_bytes=len(ref), device_blob=True)
    synchronize()
    assert len(fitted) <= len(ref) and ebgc.info(_blob_bytes(fitted))["error_bound"] > 1e-4


@pytest.mark.cuda
def test_gpu_seals_pieces_as_the_host_runner():
    """A container sealed in device memory from host framing and device pieces (two kernels, no
    host wait) is the host runner's seal of the same pieces: empty framing, pieces side by side,
    pieces over several checksum parts, one piece alone."""
    from ebgc import _core

    rng = np.random.default_rng(61)
    blob = lambda n: rng.integers(0, 256, n, dtype=np.uint8).tobytes()  # noqa: E731
    for layout in ([(b"", False), (blob(9000), True), (b"", False), (blob(5), True), (b"", False)],
                   [(blob(3), False), (blob(4096), True), (blob(4097), True), (blob(70_001), True), (b"end", False)],
                   [(blob(1), True)]):
        pieces = [to_device(np.frombuffer(p, np.uint8).copy()) if on_device else p for p, on_device in layout]
        sealed = cuda.seal_pieces(pieces)
        synchronize()
        assert _blob_bytes(sealed) == _core._seal_pieces_on_host(layout)


@pytest.mark.cuda
@pytest.mark.parametrize("coder", ["auto", "bitpack", "huffman"])
def test_gpu_stream_messages_in_device_memory(coder):
    """encode(device_message=True) gives, in GPU memory, the bytes the same stream's host message
    has; a GPU decoder reads it where it is (framing, fronts and checksums fetched), a host decoder
    from its bytes, both with the same values; corruption is a typed error and changes nothing."""
    rounds = _rounds(shapes=((64, 32, 3, 3), (512, 300), (300_001,), (0,)))
    on_device, to_host_bytes = ebgc.GradientEncoder(1e-3, coder=coder, stream_id="s"), \
        ebgc.GradientEncoder(1e-3, coder=coder, stream_id="s")
    gpu_dec, host_dec = ebgc.GradientDecoder(device="cuda"), ebgc.GradientDecoder()
    messages = []
    for w in rounds:
        dev = {k: to_device(v) for k, v in w.items()}
        message = on_device.encode(dev, device_message=True)
        messages.append(message)
        reference = to_host_bytes.encode(dev)
        synchronize()
        assert arrays.is_device(message) and _blob_bytes(message) == reference
        bad = to_device(np.frombuffer(reference[:-5] + bytes([reference[-5] ^ 1]) + reference[-4:], np.uint8).copy())
        saved = gpu_dec.save()
        with pytest.raises(ebgc.ChecksumError):
            gpu_dec.decode(bad)
        assert gpu_dec.save() == saved
        got, expected = _host_tree(gpu_dec.decode(message)), host_dec.decode(_blob_bytes(message))
        for k in w:
            np.testing.assert_array_equal(bits(got[k]), bits(expected[k]))
    fresh = ebgc.GradientDecoder()  # a host decoder takes device messages (each copied once)
    for message, w in zip(messages, rounds):
        assert set(fresh.decode(message)) == set(w)
