// The words of the wire format, each defined once: dtypes, bound modes, coders and predictors with
// their codes, names and sizes, and the limits every reader and writer enforces. Python takes its
// names from these tables (ebgc._core.VOCABULARY), so no layer keeps a copy of the numbers.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/half.hpp"

namespace ebgc {

// ---- limits ---------------------------------------------------------------------------------------
constexpr unsigned kMaxDims = 16;
constexpr uint64_t kMaxElements = uint64_t(1) << 40;
constexpr unsigned kDefaultChunkLog2 = 16;
constexpr unsigned kMinChunkLog2 = 10, kMaxChunkLog2 = 20;
constexpr unsigned kMaxLowRank = 32;

// ---- dtypes -------------------------------------------------------------------------------------
enum class DType : uint8_t { Float32 = 1, Float64 = 2, Float16 = 3, BFloat16 = 4 };

struct DTypeInfo {
  DType id;
  const char* name;
  uint8_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::Float32, "float32", 4},
    {DType::Float64, "float64", 8},
    {DType::Float16, "float16", 2},
    {DType::BFloat16, "bfloat16", 2},
};
constexpr const DTypeInfo* dtype_info(uint8_t code) {
  for (const DTypeInfo& d : kDTypes)
    if (uint8_t(d.id) == code) return &d;
  return nullptr;
}
inline size_t dtype_size(DType t) { return dtype_info(uint8_t(t))->size; }
inline const char* dtype_name(DType t) { return dtype_info(uint8_t(t))->name; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<Float16>() { return DType::Float16; }
template <> constexpr DType dtype_of<BFloat16>() { return DType::BFloat16; }

template <class T>
struct TypeTag {
  using type = T;
};
// Calls f(TypeTag<T>{}) with the storage type of a dtype: the one dispatch from dtype to code.
template <class F>
decltype(auto) with_storage_type(DType t, F&& f) {
  switch (t) {
    case DType::Float32: return f(TypeTag<float>{});
    case DType::Float64: return f(TypeTag<double>{});
    case DType::Float16: return f(TypeTag<Float16>{});
    default: return f(TypeTag<BFloat16>{});
  }
}

// ---- bound modes ----------------------------------------------------------------------------------
enum class BoundMode : uint8_t { Abs = 0, Rel = 1 };
struct ModeInfo {
  BoundMode id;
  const char* name;
};
constexpr ModeInfo kModes[] = {{BoundMode::Abs, "abs"}, {BoundMode::Rel, "rel"}};

// ---- coders ---------------------------------------------------------------------------------------
// ContextSerial is the context coder's first layout: still decoded, no longer written (legacy/).
enum class Coder : uint8_t { Raw = 0, Bitpack = 1, Huffman = 2, ContextSerial = 3, Context = 4 };
constexpr uint8_t kCoderCount = 5;
constexpr int kCoderAuto = -1;  // a request: let the encoder pick the smallest

struct CoderInfo {
  Coder id;
  const char* name;
  bool written;  // what an encoder may be asked for; the others are only decoded
};
constexpr CoderInfo kCoders[] = {
    {Coder::Raw, "raw", true},
    {Coder::Bitpack, "bitpack", true},
    {Coder::Huffman, "huffman", true},
    {Coder::ContextSerial, "context", false},  // two layouts of one coder (FORMAT.md tells them apart by id)
    {Coder::Context, "context", true},
};
inline const char* coder_name(Coder c) { return kCoders[uint8_t(c)].name; }
inline bool is_written_coder(int c) { return c >= 0 && c < int(kCoderCount) && kCoders[c].written; }

// ---- predictors -----------------------------------------------------------------------------------
// LowRank (int16 factors) is still decoded but no longer written; LowRankPacked replaced it.
enum class PredictorId : uint8_t { Zero = 0, ScaledPrevious = 1, BlendTwoPrevious = 2, LowRank = 3, LowRankPacked = 4 };
constexpr uint8_t kPredictorCount = 5;
struct PredictorInfo {
  PredictorId id;
  const char* name;
  unsigned terms;  // earlier reconstructions of the stream it reads
  bool low_rank;   // factors in the header
};
constexpr PredictorInfo kPredictors[] = {
    {PredictorId::Zero, "zero", 0, false},
    {PredictorId::ScaledPrevious, "scaled-previous", 1, false},
    {PredictorId::BlendTwoPrevious, "blend-two-previous", 2, false},
    {PredictorId::LowRank, "low-rank", 0, true},
    {PredictorId::LowRankPacked, "low-rank", 0, true},
};
inline bool is_low_rank(uint8_t id) { return id < kPredictorCount && kPredictors[id].low_rank; }
inline unsigned predictor_terms(uint8_t id) { return id < kPredictorCount ? kPredictors[id].terms : 0; }
inline const char* predictor_name(uint8_t id) { return kPredictors[id].name; }

}  // namespace ebgc
