// The only pybind11 file: ebgc._core. Thin wrappers over the header-only stages; the GIL is
// released around native work, and core exceptions become the classes of ebgc.errors.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ebgc/codec.hpp"
#include "ebgc/predictor_choice.hpp"
#include "py_errors.hpp"

namespace py = pybind11;
using namespace ebgc;

namespace {

struct ByteView {
  const uint8_t* data;
  size_t size;
};

// Any contiguous bytes-like object (bytes, bytearray, memoryview, uint8 arrays).
ByteView byte_view(const py::buffer& b, py::buffer_info& keep) {
  keep = b.request();
  if (keep.ndim > 1) {
    for (py::ssize_t i = keep.ndim - 1, stride = keep.itemsize; i >= 0; --i) {
      if (keep.strides[i] != stride) throw py::type_error("blob must be a contiguous bytes-like object");
      stride *= keep.shape[i];
    }
  } else if (keep.ndim == 1 && keep.shape[0] > 1 && keep.strides[0] != keep.itemsize) {
    throw py::type_error("blob must be a contiguous bytes-like object");
  }
  return {static_cast<const uint8_t*>(keep.ptr), size_t(keep.size * keep.itemsize)};
}

template <class T>
py::array_t<T> vector_to_array(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({py::ssize_t(heap->size())}, {py::ssize_t(sizeof(T))}, heap->data(), owner);
}

py::bytes to_bytes(const std::vector<uint8_t>& v) {
  return py::bytes(reinterpret_cast<const char*>(v.data()), v.size());
}

// 'f' float32, 'd' float64, 'h' float16, 'b' bfloat16 (which has no buffer format of its own:
// numpy and torch hand it over as a 16-bit integer view, with as_dtype = "bfloat16"), 0 otherwise.
char dtype_kind(const py::buffer_info& info, const std::string& as_dtype) {
  if (as_dtype == "bfloat16")
    return info.itemsize == 2 && (info.format == "H" || info.format == "h") ? 'b' : 0;
  if (!as_dtype.empty()) throw InvalidArgument("as_dtype must be '' or 'bfloat16'");
  if (info.format == py::format_descriptor<float>::format() && info.itemsize == 4) return 'f';
  if (info.format == py::format_descriptor<double>::format() && info.itemsize == 8) return 'd';
  if (info.format == "e" && info.itemsize == 2) return 'h';
  return 0;
}

// Calls f(TypeTag<T>{}) with the storage type of a dtype kind.
template <class F>
decltype(auto) with_dtype(char kind, F&& f) {
  const DType t = kind == 'f' ? DType::Float32 : kind == 'd' ? DType::Float64 : kind == 'h' ? DType::Float16 : DType::BFloat16;
  return with_storage_type(t, std::forward<F>(f));
}

// A C-contiguous float buffer of the same kind and size as `like` (a previous reconstruction,
// or the one compress hands back), or null for None.
void* companion_buffer(const py::object& obj, const py::buffer_info& like, char kind, const std::string& as_dtype,
                       bool writable, const char* what, py::buffer_info& keep) {
  if (obj.is_none()) return nullptr;
  keep = py::reinterpret_borrow<py::buffer>(obj).request(writable);
  if (dtype_kind(keep, as_dtype) != kind || keep.size != like.size)
    throw InvalidArgument(std::string(what) + " must have the dtype and size of the data");
  for (py::ssize_t i = keep.ndim - 1, stride = keep.itemsize; i >= 0; --i) {
    if (keep.shape[i] > 1 && keep.strides[i] != stride)
      throw InvalidArgument(std::string(what) + " must be C-contiguous");
    stride *= keep.shape[i];
  }
  return keep.ptr;
}

template <class T>
std::vector<uint8_t> compress_typed(const py::buffer_info& info, const void* const* previous,
                                    void* reconstruction, const std::vector<uint64_t>& shape,
                                    const CompressOptions& opt) {
  const T* prev[2] = {static_cast<const T*>(previous[0]), static_cast<const T*>(previous[1])};
  return compress_with_best_predictor(static_cast<const T*>(info.ptr), shape, opt, prev, static_cast<T*>(reconstruction));
}

py::bytes compress_array(py::buffer arr, std::vector<uint64_t> shape, double error_bound, int mode,
                   int coder, unsigned threads, unsigned chunk_log2, py::object previous,
                   py::object reconstruction, py::object previous2, const std::string& as_dtype, bool low_rank) {
  py::buffer_info info = arr.request();
  char kind = dtype_kind(info, as_dtype);
  if (!kind) throw py::type_error("ebgc compresses float32, float64, float16 or bfloat16 data");
  py::buffer_info prev_keep, prev2_keep;
  const void* prev[2] = {companion_buffer(previous, info, kind, as_dtype, false, "previous", prev_keep),
                         companion_buffer(previous2, info, kind, as_dtype, false, "previous2", prev2_keep)};
  if (!prev[0] && prev[1]) throw InvalidArgument("previous2 needs previous");
  py::buffer_info rec_keep;
  void* rec = companion_buffer(reconstruction, info, kind, as_dtype, true, "reconstruction", rec_keep);
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  if (n != uint64_t(info.size)) throw InvalidArgument("shape does not match the buffer");
  if (mode != 0 && mode != 1) throw InvalidArgument("mode must be abs or rel");
  if (coder < kCoderAuto || coder >= int(kCoderCount)) throw InvalidArgument("unknown coder");
  CompressOptions opt;
  opt.mode = BoundMode(mode);
  opt.error_bound = error_bound;
  opt.coder = coder;
  opt.threads = threads;
  opt.chunk_log2 = chunk_log2;
  opt.low_rank = low_rank;
  std::vector<uint8_t> blob;
  {
    py::gil_scoped_release nogil;
    blob = with_dtype(kind, [&](auto tag) {
      return compress_typed<typename decltype(tag)::type>(info, prev, rec, shape, opt);
    });
  }
  return to_bytes(blob);
}

void decompress_into(py::buffer blob, py::buffer out, unsigned threads, py::object previous,
                     py::object previous2, const std::string& as_dtype, bool verify_checksum) {
  py::buffer_info keep;
  ByteView v = byte_view(blob, keep);
  py::buffer_info o = out.request(true);
  char kind = dtype_kind(o, as_dtype);
  if (!kind) throw InvalidArgument("out must be a float32, float64, float16 or bfloat16 array");
  py::buffer_info prev_keep, prev2_keep;
  const void* prev[2] = {companion_buffer(previous, o, kind, as_dtype, false, "previous", prev_keep),
                         companion_buffer(previous2, o, kind, as_dtype, false, "previous2", prev2_keep)};
  py::gil_scoped_release nogil;
  ParsedBlob pb = parse_blob(v.data, v.size, verify_checksum);
  with_dtype(kind, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p[2] = {static_cast<const T*>(prev[0]), static_cast<const T*>(prev[1])};
    ebgc::decompress(pb, static_cast<T*>(o.ptr), uint64_t(o.size), threads, p);
  });
}

py::dict header(py::buffer blob, bool verify_checksum) {
  py::buffer_info keep;
  ByteView v = byte_view(blob, keep);
  ParsedBlob pb = parse_blob(v.data, v.size, verify_checksum);
  const Header& h = pb.header;
  const uint64_t n_outliers = pb.outlier_index.size();
  py::dict d;
  d["format_version"] = int(h.version);
  d["dtype"] = dtype_name(h.dtype);
  py::tuple shape(h.shape.size());
  for (size_t i = 0; i < h.shape.size(); ++i) shape[i] = py::int_(h.shape[i]);
  d["shape"] = shape;
  d["mode"] = h.mode == BoundMode::Abs ? "abs" : "rel";
  d["error_bound"] = h.error_bound;
  d["abs_bound"] = h.abs_bound;
  d["coder"] = coder_name(h.coder);
  static const char* predictor_names[] = {"zero", "scaled-previous", "blend-two-previous", "low-rank", "low-rank"};
  d["predictor"] = predictor_names[h.predictor];
  d["predictor_rank"] = is_low_rank(h.predictor) ? unsigned(h.predictor_data[0]) : 0u;
  py::list coef;
  for (unsigned k = 0; k < predictor_terms(h.predictor); ++k) coef.append(h.predictor_coef[k]);
  d["predictor_coefficients"] = coef;
  d["chunk_elements"] = h.chunk_elems();
  d["n_outliers"] = n_outliers;
  d["nbytes"] = v.size;
  d["payload_nbytes"] = h.payload_size;
  d["raw_nbytes"] = h.elements() * dtype_size(h.dtype);
  return d;
}

// ---- single stages, for tests and experiments ------------------------------------------------

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
  ByteView v = byte_view(data, keep);
  ByteReader r(v.data, v.size);
  HuffmanCode hc(read_huffman_lengths(r, kHuffMaxSymbols));
  // Every code is at least one bit: the count is bounded by the stream before allocating.
  require_format(count <= uint64_t(r.remaining()) * 8, "count larger than the stream can hold");
  BitReader bits(v.data + r.pos, r.remaining());
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
  ByteView v = byte_view(data, keep);
  const uint64_t blocks = (count + kPackBlock - 1) / kPackBlock;
  require_format(blocks <= v.size, "count larger than the stream can hold");
  std::vector<uint32_t> out(count);
  const uint8_t* p = v.data + blocks;
  const uint8_t* end = v.data + v.size;
  uint32_t blk[kPackBlock];
  for (uint64_t k = 0; k < blocks; ++k) {
    unsigned w = v.data[k];
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
  ByteView v = byte_view(data, keep);
  ByteReader r(v.data, v.size);
  ContextModel m = ContextModel::read(r);
  uint64_t la = r.varint("rANS length");
  const uint8_t* a = r.take(la, "rANS stream");
  require_format(count <= (uint64_t(1) << kMaxChunkLog2), "at most 2**20 codes (one chunk)");
  const LaneSplit lanes(count);
  std::vector<uint8_t> sym(size_t(kLanes * lanes.len));
  rans_lanes_decode_chunk(m, a, size_t(la), 0, count, sym.data());
  BitReader raw(v.data + r.pos, r.remaining());
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
    RansLaneEncoder::put(state, RansLaneEncoder::make(f, s), w);
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
  const char kind = dtype_kind(info, "");
  if (!kind) throw py::type_error("quantize takes float32, float64 or float16 data");
  return with_dtype(kind, [&](auto tag) { return quantize_t<typename decltype(tag)::type>(info, abs_bound); });
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

PYBIND11_MODULE(_core, m) {
  m.doc() = "ebgc native core: one-shot codec and its stages";
  register_error_translator();

  m.attr("FORMAT_VERSION") = int(kFormatVersion);
  m.attr("DEFAULT_CHUNK_LOG2") = kDefaultChunkLog2;
  m.def("default_threads", &default_threads, "Number of hardware threads.");
  m.def("compress", &compress_array, py::arg("data"), py::arg("shape"), py::arg("error_bound"), py::arg("mode"),
        py::arg("coder"), py::arg("threads"), py::arg("chunk_log2") = kDefaultChunkLog2,
        py::arg("previous") = py::none(), py::arg("reconstruction") = py::none(),
        py::arg("previous2") = py::none(), py::arg("as_dtype") = "", py::arg("low_rank") = true,
        "Compress a C-contiguous float32/float64/float16 buffer (bfloat16: a 16-bit integer view\n"
        "with as_dtype='bfloat16'); mode 0=abs 1=rel; coder -1=auto. With\n"
        "previous (the stream's last reconstruction; previous2, the one before), predict from a\n"
        "least-squares blend of them where that shrinks the residual. low_rank: let a matrix be\n"
        "predicted by a low-rank approximation (factors in the header) where that pays.\n"
        "reconstruction: a writable buffer that receives what decompression will return.");
  m.def("decompress_into", &decompress_into, py::arg("blob"), py::arg("out"), py::arg("threads"),
        py::arg("previous") = py::none(), py::arg("previous2") = py::none(), py::arg("as_dtype") = "",
        py::arg("verify_checksum") = true,
        "Decode a blob into a C-contiguous writable float buffer of the right size and dtype;\n"
        "previous may be out itself (decoding in place over the last reconstruction). "
        "verify_checksum=False: the caller has just checked this buffer's CRC (header()); every "
        "structural check still runs.");
  m.def("crc32c", [](py::buffer data, uint32_t seed) {
          py::buffer_info keep;
          ByteView v = byte_view(data, keep);
          return crc32c(v.data, v.size, seed);
        }, py::arg("data"), py::arg("seed") = 0, "CRC-32C (Castagnoli) of a bytes-like object.");
  m.def("header", &header, py::arg("blob"), py::arg("verify_checksum") = true,
        "Validate a blob (checksum included, unless a later full read will check it) and return its header.");
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
