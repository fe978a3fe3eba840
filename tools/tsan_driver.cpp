// Drives every multithreaded path of the C++ core on 2 threads, for ThreadSanitizer (run by
// tools/sanitize.sh; Python itself cannot be run under TSan without being built for it): the
// range, each coder's chunk passes, the low-rank fit, stream-predicted tensors, the stream check of
// a blob that expands far, and decoding. Small chunks make several per tensor. Each decode must
// equal the encoder's own reconstruction, bit for bit. Prints "ok" and exits 0, or says what differed and exits 1.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "ebgc/ebgc.hpp"

namespace {

bool round_trip(const char* what, const std::vector<float>& x, const std::vector<uint64_t>& shape, int coder,
                unsigned chunk_log2, const float* const* previous, std::vector<float>& rec) {
  ebgc::TensorView view;
  view.data = const_cast<float*>(x.data());
  view.shape = shape;
  ebgc::Params p;
  p.coder = coder, p.chunk_log2 = chunk_log2;
  ebgc::Execution e;
  e.threads = 2;
  ebgc::StreamTerms stream;
  rec.assign(x.size(), 0.f);
  stream.previous[0] = previous ? previous[0] : nullptr;
  stream.previous[1] = previous ? previous[1] : nullptr;
  stream.reconstruction = rec.data();
  const std::vector<uint8_t> blob = ebgc::compress(view, p, e, stream);
  ebgc::InspectOptions o;
  o.threads = 2;
  const ebgc::ParsedBlob pb = ebgc::inspect(blob.data(), blob.size(), o);
  std::vector<float> out(x.size());
  ebgc::TensorView out_view = view;
  out_view.data = out.data();
  const void* prev[2] = {stream.previous[0], stream.previous[1]};
  ebgc::decompress(pb, out_view, e, prev);
  if (std::memcmp(out.data(), rec.data(), 4 * out.size())) {
    std::printf("%s (coder %d, chunks of 2^%u): decoded values differ from the encoder's\n", what, coder, chunk_log2);
    return false;
  }
  return true;
}

}  // namespace

int main() {
  std::mt19937 g(1);
  std::normal_distribution<float> normal;
  const int coders[] = {ebgc::kCoderAuto, int(ebgc::Coder::Huffman), int(ebgc::Coder::Context),
                        int(ebgc::Coder::Bitpack)};
  bool ok = true;
  std::vector<float> rec, rec1, rec2;

  // A vector with outliers (NaN, a huge value) and mixed scales: the zero predictor.
  std::vector<float> v(300001);
  for (auto& e : v) e = normal(g) * (g() % 7 ? 1.f : 100.f);
  v[5] = NAN, v[77777] = 3e38f;
  for (int coder : coders)
    for (unsigned chunk_log2 : {12u, 16u}) ok = round_trip("vector", v, {v.size()}, coder, chunk_log2, nullptr, rec) && ok;

  // Zeros: a blob hundreds of times smaller than its output, whose streams inspect() decodes once
  // (on both threads) before its output may be allocated.
  std::vector<float> zeros(400000, 0.f);
  zeros[123] = 1.f;
  ok = round_trip("zeros", zeros, {zeros.size()}, int(ebgc::Coder::Context), 12, nullptr, rec) && ok;

  // A 512 x 384 matrix of rank 4 plus noise: the low-rank predictor's fit and scoring.
  const uint64_t rows = 512, cols = 384;
  std::vector<float> m(rows * cols);
  std::vector<float> u(rows * 4), w(cols * 4);
  for (auto& e : u) e = normal(g);
  for (auto& e : w) e = normal(g);
  for (uint64_t i = 0; i < rows; ++i)
    for (uint64_t j = 0; j < cols; ++j) {
      float s = 0.01f * normal(g);
      for (int k = 0; k < 4; ++k) s += u[i * 4 + k] * w[j * 4 + k];
      m[i * cols + j] = s;
    }
  for (int coder : coders) ok = round_trip("low-rank matrix", m, {rows, cols}, coder, 12, nullptr, rec) && ok;

  // Three messages of a stream: the later ones predicted from the earlier reconstructions.
  std::vector<float> s0(200000), s1(s0.size()), s2(s0.size());
  for (size_t i = 0; i < s0.size(); ++i) {
    s0[i] = normal(g);
    s1[i] = 0.9f * s0[i] + 0.1f * normal(g);
    s2[i] = 0.9f * s1[i] + 0.1f * normal(g);
  }
  for (int coder : coders) {
    ok = round_trip("stream message 0", s0, {s0.size()}, coder, 13, nullptr, rec1) && ok;
    const float* one[2] = {rec1.data(), nullptr};
    ok = round_trip("stream message 1", s1, {s1.size()}, coder, 13, one, rec2) && ok;
    const float* two[2] = {rec2.data(), rec1.data()};
    ok = round_trip("stream message 2", s2, {s2.size()}, coder, 13, two, rec) && ok;
  }
  std::printf(ok ? "ok\n" : "FAILED\n");
  return ok ? 0 : 1;
}
