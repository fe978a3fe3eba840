// What both native modules (_core, _cuda) show Python of the format: the vocabulary tables, and an
// inspected blob (ebgc::inspect) as a Python object that a decode takes instead of the bytes, so
// no decode parses a blob twice.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "ebgc/ebgc.hpp"

namespace ebgc {
namespace py_blob {

namespace py = pybind11;

// Any contiguous bytes-like object (bytes, bytearray, memoryview, uint8 arrays); `keep` holds the
// export (and so the bytes) alive.
inline std::pair<const uint8_t*, size_t> byte_view(const py::buffer& b, py::buffer_info& keep) {
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

// An inspected blob: the parse result and the bytes it points into.
struct Blob {
  std::unique_ptr<py::buffer_info> bytes;
  ParsedBlob parsed;
};

inline std::shared_ptr<Blob> inspect(const py::buffer& data, bool verify_checksum, uint64_t max_output,
                                     bool for_decoding, unsigned threads) {
  auto blob = std::make_shared<Blob>();
  blob->bytes.reset(new py::buffer_info());
  const auto view = byte_view(data, *blob->bytes);
  InspectOptions o;
  o.verify_checksum = verify_checksum;
  o.max_output = max_output;
  o.for_decoding = for_decoding;
  o.threads = std::max(1u, threads);
  py::gil_scoped_release nogil;
  blob->parsed = ebgc::inspect(view.first, view.second, o);
  return blob;
}

inline py::tuple shape_of(const Header& h) {
  py::tuple shape(h.shape.size());
  for (size_t i = 0; i < h.shape.size(); ++i) shape[i] = py::int_(h.shape[i]);
  return shape;
}

inline py::dict info(const Blob& b) {
  const ParsedBlob& pb = b.parsed;
  const Header& h = pb.header;
  py::dict d;
  d["format_version"] = int(h.version);
  d["dtype"] = dtype_name(h.dtype);
  d["shape"] = shape_of(h);
  d["mode"] = kModes[uint8_t(h.mode)].name;
  d["error_bound"] = h.error_bound;
  d["abs_bound"] = h.abs_bound;
  d["coder"] = coder_name(h.coder);
  d["predictor"] = predictor_name(h.predictor);
  d["predictor_rank"] = is_low_rank(h.predictor) ? unsigned(h.predictor_data[0]) : 0u;
  py::list coef;
  for (unsigned k = 0; k < predictor_terms(h.predictor); ++k) coef.append(h.predictor_coef[k]);
  d["predictor_coefficients"] = coef;
  d["chunk_elements"] = h.chunk_elems();
  d["n_outliers"] = uint64_t(pb.outlier_index.size());
  d["nbytes"] = uint64_t(pb.size);
  d["payload_nbytes"] = h.payload_size;
  d["raw_nbytes"] = pb.output_bytes();
  return d;
}

// The vocabulary of the format (format/vocabulary.hpp) for Python's names and messages.
inline py::dict vocabulary() {
  py::dict dtypes, modes, coders, decoded_coders, predictors, limits;
  for (const DTypeInfo& d : kDTypes) {
    py::dict e;
    e["code"] = int(d.id);
    e["itemsize"] = int(d.size);
    dtypes[d.name] = e;
  }
  for (const ModeInfo& m : kModes) modes[m.name] = int(m.id);
  coders["auto"] = kCoderAuto;
  for (const CoderInfo& c : kCoders) {
    if (c.written) coders[c.name] = int(c.id);
    decoded_coders[py::int_(int(c.id))] = c.name;
  }
  for (const PredictorInfo& p : kPredictors) predictors[py::int_(int(p.id))] = p.name;
  limits["max_dims"] = kMaxDims;
  limits["max_elements"] = kMaxElements;
  limits["default_chunk_log2"] = kDefaultChunkLog2;
  limits["min_chunk_log2"] = kMinChunkLog2;
  limits["max_chunk_log2"] = kMaxChunkLog2;
  py::dict v;
  v["format_version"] = int(kFormatVersion);
  v["dtypes"] = dtypes;
  v["modes"] = modes;
  v["coders"] = coders;
  v["decoded_coders"] = decoded_coders;
  v["predictors"] = predictors;
  v["limits"] = limits;
  return v;
}

// Registers the Blob class (module-local: each native module has its own) and inspect().
inline void define(py::module_& m) {
  py::class_<Blob, std::shared_ptr<Blob>>(m, "Blob", py::module_local(),
                                          "A blob parsed and validated by inspect(); decoders take it instead of bytes.")
      .def_property_readonly("shape", [](const Blob& b) { return shape_of(b.parsed.header); })
      .def_property_readonly("dtype", [](const Blob& b) { return std::string(dtype_name(b.parsed.header.dtype)); })
      .def_property_readonly("size", [](const Blob& b) { return b.parsed.header.elements(); })
      .def_property_readonly("output_nbytes", [](const Blob& b) { return b.parsed.output_bytes(); })
      .def_property_readonly("predictor_terms", [](const Blob& b) { return predictor_terms(b.parsed.header.predictor); })
      .def("info", &info, "The header and sizes as a dict.");
  m.def("inspect", &inspect, py::arg("blob"), py::arg("verify_checksum") = true, py::arg("max_output") = 0,
        py::arg("for_decoding") = true, py::arg("threads") = 1,
        "Parse and validate a blob once (checksum, header, payload structure; and, for_decoding, the\n"
        "streams of a blob that expands far before its output may be allocated). max_output: refuse\n"
        "a blob that decodes to more bytes (0: no limit).");
}

}  // namespace py_blob
}  // namespace ebgc
