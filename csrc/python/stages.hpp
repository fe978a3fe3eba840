// Single stages of the codec as Python functions, for the tests and experiments (ebgc._core): each
// stage round-trips alone. Not part of the library's API.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "arrays.hpp"
#include "blob.hpp"
#include "ebgc/coders/bitpack.hpp"
#include "ebgc/coders/context_lanes.hpp"
#include "ebgc/coders/context_model.hpp"
#include "ebgc/coders/huffman_code.hpp"
#include "ebgc/coders/symbolize.hpp"
#include "ebgc/common/half.hpp"
#include "ebgc/encode/chunk_passes.hpp"
#include "ebgc/quantize/quantizer.hpp"

namespace ebgc {
namespace py_stages {

namespace py = pybind11;
using py_arrays::buffer_dtype;
using py_arrays::to_bytes;
using py_arrays::vector_to_array;

namespace {  // (included by bind.cpp only)


py::bytes huffman_encode(py::array_t<uint16_t, py::array::c_style | py::array::forcecast> symbols,
                         unsigned alphabet_size) {
  if (alphabet_size < 1 || alphabet_size > kHuffMaxSymbols)
    throw InvalidArgument("alphabet_size must be in [1, 4096]");
  auto s = symbols.unchecked<1>();
  std::vector<uint64_t> counts(alphabet_size, 0);
  for (py::ssize_t i = 0; i < s.shape(0); ++i) {
    if (s(i) >= alphabet_size) throw InvalidArgument("symbol outside the alphabet");
    ++counts[s(i)];
  }
  HuffmanCode hc(huffman_lengths(counts));
  ByteWriter w;
  write_huffman_lengths(w, hc.len);
  BitWriter bits;
  for (py::ssize_t i = 0; i < s.shape(0); ++i) hc.put(bits, s(i));
  bits.flush();
  w.bytes(bits.out.data(), bits.out.size());
  return to_bytes(w.buf);
}

py::array_t<uint16_t> huffman_decode(py::buffer data, uint64_t count) {
  py::buffer_info keep;
  const auto v = py_blob::byte_view(data, keep);
  ByteReader r(v.first, v.second);
  HuffmanCode hc(read_huffman_lengths(r, kHuffMaxSymbols));
  // Every code is at least one bit: the count is bounded by the stream before allocating.
  require_format(count <= uint64_t(r.remaining()) * 8, "count larger than the stream can hold");
  BitReader bits(v.first + r.pos, r.remaining());
  std::vector<uint16_t> out(count);
  for (uint64_t i = 0; i < count; ++i) {
    bits.refill();
    out[i] = uint16_t(hc.get(bits));
  }
  require_format(!bits.overran(), "Huffman stream truncated");
  return vector_to_array(std::move(out));
}

py::bytes bitpack_encode(py::array_t<uint32_t, py::array::c_style | py::array::forcecast> values) {
  auto v = values.unchecked<1>();
  const uint64_t n = uint64_t(v.shape(0)), blocks = (n + kPackBlock - 1) / kPackBlock;
  // Layout of the codec's bit-packing streams: all widths, then the packed blocks in order.
  std::vector<uint8_t> widths(blocks), data;
  uint32_t blk[kPackBlock];
  for (uint64_t k = 0; k < blocks; ++k) {
    uint32_t acc = 0;
    for (unsigned j = 0; j < kPackBlock; ++j) {
      uint64_t i = k * kPackBlock + j;
      blk[j] = i < n ? v(py::ssize_t(i)) : 0;
      acc |= blk[j];
    }
    unsigned w = bit_width(acc);
    widths[k] = uint8_t(w);
    if (!w) continue;
    size_t at = data.size();
    data.resize(at + packed_block_bytes(w));
    pack_block(blk, w, data.data() + at);
  }
  widths.insert(widths.end(), data.begin(), data.end());
  return to_bytes(widths);
}

py::array_t<uint32_t> bitpack_decode(py::buffer data, uint64_t count) {
  py::buffer_info keep;
  const auto v = py_blob::byte_view(data, keep);
  const uint64_t blocks = (count + kPackBlock - 1) / kPackBlock;
  require_format(blocks <= v.second, "count larger than the stream can hold");
  std::vector<uint32_t> out(count);
  const uint8_t* p = v.first + blocks;
  const uint8_t* end = v.first + v.second;
  uint32_t blk[kPackBlock];
  for (uint64_t k = 0; k < blocks; ++k) {
    unsigned w = v.first[k];
    require_format(w <= 32, "bad bit-packing width");
    if (w) {
      require_format(size_t(end - p) >= packed_block_bytes(w), "bit-packed data truncated");
      unpack_block(p, w, blk);
      p += packed_block_bytes(w);
    } else {
      std::fill(blk, blk + kPackBlock, 0u);
    }
    for (unsigned j = 0; j < kPackBlock && k * kPackBlock + j < count; ++j) out[k * kPackBlock + j] = blk[j];
  }
  require_format(p == end, "bit-packed data length mismatch");
  return vector_to_array(std::move(out));
}

// The context coder on one chunk of codes: the model, the rANS lanes, then the raw bits, with
// the encoder's own symbol pass.
py::bytes context_encode(py::array_t<int32_t, py::array::c_style | py::array::forcecast> codes,
                         uint64_t sign_period) {
  if (sign_period < 1 || sign_period > kMaxSignPeriod) throw InvalidArgument("sign_period out of range");
  auto c = codes.unchecked<1>();
  const size_t n = size_t(c.shape(0));
  if (n > (size_t(1) << kMaxChunkLog2)) throw InvalidArgument("at most 2**20 codes (one chunk)");
  for (size_t i = 0; i < n; ++i)
    if (!(std::fabs(double(c(py::ssize_t(i)))) <= kMaxCode)) throw InvalidArgument("code out of range");
  std::vector<uint8_t> sym(n), ctx(n);
  ChunkOut<float> co;
  co.b.resize(n * 28 / 8 + 16);
  SymbolPass pass(0, n, sign_period, co.b.data());
  pass.run(codes.data(), 0, n, sym.data(), ctx.data(), co);
  co.b.resize(size_t(pass.raw.finish() - co.b.data()));
  ContextModel m = ContextModel::fit(co.counts, co.sign_counts, sign_period);
  ByteWriter w;
  m.write(w);
  std::vector<uint16_t> words;
  std::vector<uint8_t> a;
  RansLaneEncoder(m).encode_chunk(sym.data(), ctx.data(), n, words, a);
  w.varint(a.size());
  w.bytes(a.data(), a.size());
  w.bytes(co.b.data(), co.b.size());
  return to_bytes(w.buf);
}

py::array_t<int32_t> context_decode(py::buffer data, uint64_t count) {
  py::buffer_info keep;
  const auto v = py_blob::byte_view(data, keep);
  ByteReader r(v.first, v.second);
  ContextModel m = ContextModel::read(r);
  uint64_t la = r.varint("rANS length");
  const uint8_t* a = r.take(la, "rANS stream");
  require_format(count <= (uint64_t(1) << kMaxChunkLog2), "at most 2**20 codes (one chunk)");
  const LaneSplit lanes(count);
  std::vector<uint8_t> sym(size_t(kLanes * lanes.len));
  rans_lanes_decode_chunk(m, a, size_t(la), 0, count, sym.data());
  BitReader raw(v.first + r.pos, r.remaining());
  std::vector<int32_t> out(count);
  for (unsigned k = 0; k < kLanes; ++k)
    for (uint64_t j = 0; j < lanes.count[k]; ++j) {
      const uint32_t b = sym[kLanes * j + k], s = b & 127u;
      raw.refill();
      out[lanes.begin(k) + j] = desymbolize(s, b >> 7 | raw.get(kSymbolTable.info[s].nextra) << 1);
    }
  require_format(!raw.overran(), "raw bits truncated");
  return vector_to_array(std::move(out));
}

// Test hook: one rANS encoder step (renormalization already done) for each (x, freq, start), so
// the tests can hold its multiply-high quotient against exact integer arithmetic.
py::array_t<uint32_t> rans_encode_step(py::array_t<uint32_t, py::array::c_style | py::array::forcecast> x,
                                       py::array_t<uint32_t, py::array::c_style | py::array::forcecast> freq,
                                       py::array_t<uint32_t, py::array::c_style | py::array::forcecast> start) {
  const size_t n = size_t(x.size());
  if (size_t(freq.size()) != n || size_t(start.size()) != n) throw InvalidArgument("x, freq and start differ in size");
  std::vector<uint32_t> out(n);
  uint16_t word[2];
  for (size_t i = 0; i < n; ++i) {
    const uint32_t f = freq.data()[i], s = start.data()[i];
    if (f < 1 || f > kRansScale || s > kRansScale - f) throw InvalidArgument("freq/start outside the scale");
    if (uint64_t(x.data()[i]) >= uint64_t(f) << (32 - kRansScaleBits)) throw InvalidArgument("state not renormalized");
    uint32_t state = x.data()[i];
    uint16_t* w = word + 2;
    RansEncodeView::put(state, RansLaneEncoder::make(f, s), w);
    out[i] = state;
  }
  return vector_to_array(std::move(out));
}

template <class T>
py::tuple quantize_t(const py::buffer_info& info, double abs_bound) {
  const T* x = static_cast<const T*>(info.ptr);
  const size_t n = size_t(info.size);
  std::vector<int32_t> codes(n);
  std::vector<uint64_t> outliers;
  LinearQuantizer qz(abs_bound);
  for (size_t i = 0; i < n; ++i) {
    int32_t q;
    if (!qz.quantize(x[i], 0.0, q)) {
      outliers.push_back(i);
      q = 0;
    }
    codes[i] = q;
  }
  return py::make_tuple(vector_to_array(std::move(codes)), vector_to_array(std::move(outliers)));
}

py::tuple quantize(py::buffer x, double abs_bound) {
  if (!(abs_bound >= 0) || !std::isfinite(abs_bound)) throw InvalidArgument("abs_bound must be finite and >= 0");
  py::buffer_info info = x.request();
  if (info.ndim != 1 || (info.shape[0] > 1 && info.strides[0] != info.itemsize))
    throw InvalidArgument("quantize takes a contiguous 1-D array");
  const DType t = buffer_dtype(info, "");
  return with_storage_type(t, [&](auto tag) { return quantize_t<typename decltype(tag)::type>(info, abs_bound); });
}

// The 16-bit storage stage alone: float64 values rounded to float16/bfloat16 bits, and back.
template <class N>
py::array narrow_bits_t(py::array_t<double, py::array::c_style | py::array::forcecast> x) {
  auto v = x.unchecked<1>();
  std::vector<uint16_t> out(size_t(v.shape(0)));
  for (size_t i = 0; i < out.size(); ++i) out[i] = N(v(py::ssize_t(i))).bits;
  return vector_to_array(std::move(out));
}

template <class N>
py::array widen_bits_t(py::array_t<uint16_t, py::array::c_style | py::array::forcecast> bits) {
  auto v = bits.unchecked<1>();
  std::vector<double> out(size_t(v.shape(0)));
  for (size_t i = 0; i < out.size(); ++i) {
    N n;
    n.bits = v(py::ssize_t(i));
    out[i] = double(n);
  }
  return vector_to_array(std::move(out));
}

py::array narrow_bits(py::array x, const std::string& dtype) {
  if (dtype == "float16") return narrow_bits_t<Float16>(x);
  if (dtype == "bfloat16") return narrow_bits_t<BFloat16>(x);
  throw InvalidArgument("dtype must be 'float16' or 'bfloat16'");
}

py::array widen_bits(py::array bits, const std::string& dtype) {
  if (dtype == "float16") return widen_bits_t<Float16>(bits);
  if (dtype == "bfloat16") return widen_bits_t<BFloat16>(bits);
  throw InvalidArgument("dtype must be 'float16' or 'bfloat16'");
}

py::array dequantize(py::array_t<int32_t, py::array::c_style | py::array::forcecast> codes, double abs_bound,
                     const std::string& dtype) {
  if (!(abs_bound >= 0) || !std::isfinite(abs_bound)) throw InvalidArgument("abs_bound must be finite and >= 0");
  auto c = codes.unchecked<1>();
  LinearQuantizer qz(abs_bound);
  if (dtype == "float32") {
    std::vector<float> out(size_t(c.shape(0)));
    for (size_t i = 0; i < out.size(); ++i) out[i] = qz.reconstruct<float>(c(py::ssize_t(i)), 0.0);
    return vector_to_array(std::move(out));
  }
  if (dtype == "float64") {
    std::vector<double> out(size_t(c.shape(0)));
    for (size_t i = 0; i < out.size(); ++i) out[i] = qz.reconstruct<double>(c(py::ssize_t(i)), 0.0);
    return vector_to_array(std::move(out));
  }
  throw InvalidArgument("dtype must be 'float32' or 'float64'");
}

}  // namespace


inline void define(py::module_& m) {
  m.def("huffman_encode", &huffman_encode, py::arg("symbols"), py::arg("alphabet_size"));
  m.def("huffman_decode", &huffman_decode, py::arg("data"), py::arg("count"));
  m.def("bitpack_encode", &bitpack_encode, py::arg("values"));
  m.def("bitpack_decode", &bitpack_decode, py::arg("data"), py::arg("count"));
  m.def("context_encode", &context_encode, py::arg("codes"), py::arg("sign_period") = 1);
  m.def("context_decode", &context_decode, py::arg("data"), py::arg("count"));
  m.def(
      "_vector_paths",
      [](py::object enable) {
#ifdef EBGC_HAVE_AVX2
        const bool was = use_avx2();
        if (!enable.is_none()) use_avx2() = enable.cast<bool>() && __builtin_cpu_supports("avx2");
        return was;
#else
        (void)enable;
        return false;
#endif
      },
      py::arg("enable") = py::none(),
      "Test hook: whether the AVX2 paths run (the context decoder's lane loop, the encoder's "
      "quantizer); enable=True/False switches them (True only where the CPU has AVX2). Returns the "
      "previous setting.");
  m.def("_rans_encode_step", &rans_encode_step, py::arg("x"), py::arg("freq"), py::arg("start"),
        "Test hook: the context coder's rANS encoder step on states below freq << 20.");
  m.def("quantize", &quantize, py::arg("x"), py::arg("abs_bound"));
  m.def("dequantize", &dequantize, py::arg("codes"), py::arg("abs_bound"), py::arg("dtype"));
  m.def("narrow_bits", &narrow_bits, py::arg("x"), py::arg("dtype"),
        "float64 values rounded (to nearest even) to float16/bfloat16, as their 16 bits.");
  m.def("widen_bits", &widen_bits, py::arg("bits"), py::arg("dtype"), "float16/bfloat16 bits as float64.");
}

}  // namespace py_stages
}  // namespace ebgc
