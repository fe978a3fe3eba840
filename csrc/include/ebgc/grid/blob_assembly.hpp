// Where the grids' coded blobs are written. Either at once into host memory (the streams in host
// memory: the CPU codec's writer), or assembled where their chunk streams are (the device's
// memory): the container writer's front (header, outliers, tables, directory) made on the host,
// copied next to the streams, and the checksum of both computed there part by part
// (crc32c_part_term), so no stream byte crosses to the host. The CUDA backend assembles on the
// device (cuda/blob_assembly.cuh); assemble_on_host runs the same steps in host memory, so the
// tests check the assembled blobs against the CPU codec's. A container framed around blobs that
// stay (a stream message in device memory) is sealed by the same two steps (SealJobs).
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "../common/hd.hpp"
#include "../format/container.hpp"
#include "crc32c_parts.hpp"

namespace ebgc {

// Called once per tensor of a message with its blob's final size; returns where to write it.
using MessageAllocator = std::function<uint8_t*(size_t tensor, size_t size)>;

constexpr uint64_t kAssemblyPartBytes = 4096;  // the checksum's part per thread

// One blob: where it goes (dst), its front (front_bytes at front_at in the call's fronts) and its
// streams (stream_bytes at streams). Plain data: the device reads the table.
struct AssemblyJob {
  uint8_t* dst;
  const uint8_t* streams;
  uint64_t front_at, front_bytes, stream_bytes;
  uint64_t first_part;  // the parts of all jobs before this one

  EBGC_HD uint64_t covered() const { return front_bytes + stream_bytes; }  // what the checksum covers
  EBGC_HD uint64_t parts() const { return (covered() + kAssemblyPartBytes - 1) / kAssemblyPartBytes; }
};

// The blobs of one grid, collected as its host part writes them.
struct BlobAssembly {
  std::vector<AssemblyJob> jobs;
  std::vector<uint8_t> fronts;  // every job's front, in job order
  uint64_t parts = 0;

  void add(ContainerWriter& w, const uint8_t* streams, const BlobAllocator& allocate) {
    const ByteWriter front = w.front();
    AssemblyJob j{};
    j.streams = streams;
    j.front_at = fronts.size();
    j.front_bytes = front.size();
    j.stream_bytes = w.stream_bytes();
    j.first_part = parts;
    j.dst = allocate(size_t(j.covered() + kChecksumSize));
    fronts.insert(fronts.end(), front.buf.begin(), front.buf.end());
    parts += j.parts();
    jobs.push_back(j);
  }
  void clear() {
    jobs.clear();
    fronts.clear();
    parts = 0;
  }
};

// Byte i of a job's blob before its checksum, as the device's copy moves it.
EBGC_HD inline uint8_t assembly_byte(const AssemblyJob& j, const uint8_t* fronts, uint64_t i) {
  return i < j.front_bytes ? fronts[j.front_at + i] : j.streams[i - j.front_bytes];
}

// The job that holds part `part` of the whole call's parts.
EBGC_HD inline uint64_t assembly_job_of(const AssemblyJob* jobs, uint64_t count, uint64_t part) {
  uint64_t lo = 0, hi = count;  // the last job with first_part <= part
  while (hi - lo > 1) {
    const uint64_t mid = (lo + hi) / 2;
    if (jobs[mid].first_part <= part) lo = mid;
    else hi = mid;
  }
  return lo;
}

// The checksum's four bytes (little-endian) after the covered bytes.
EBGC_HD inline void write_assembly_crc(const AssemblyJob& j, uint32_t crc) {
  for (unsigned k = 0; k < 4; ++k) j.dst[j.covered() + k] = uint8_t(crc >> (8 * k));
}

// The device's copy step in host memory, byte by byte.
inline void place_on_host(const std::vector<AssemblyJob>& jobs, const std::vector<uint8_t>& fronts) {
  for (const AssemblyJob& j : jobs)
    for (uint64_t i = 0; i < j.covered(); ++i) j.dst[i] = assembly_byte(j, fronts.data(), i);
}
// The device's checksum step in host memory: every part's term of its job's checksum (over the
// flat part index of `parts`), then each job's trailer.
inline void checksum_on_host(const std::vector<AssemblyJob>& jobs, uint64_t parts) {
  const auto& table = detail::crc32c_tables().t[0];
  const Crc32cShift* pow2 = Crc32cPowers::get().pow2;
  std::vector<uint32_t> terms(jobs.size(), 0);
  for (uint64_t part = 0; part < parts; ++part) {
    const uint64_t k = assembly_job_of(jobs.data(), jobs.size(), part);
    const AssemblyJob& j = jobs[k];
    terms[k] ^= crc32c_part_term(j.dst, j.covered(), part - j.first_part, kAssemblyPartBytes, table.data(), pow2);
  }
  for (size_t k = 0; k < jobs.size(); ++k) write_assembly_crc(jobs[k], crc32c_from_terms(0, terms[k], jobs[k].covered(), pow2));
}
// The device's steps in host memory: every byte placed, then every blob's checksum.
inline void assemble_on_host(const BlobAssembly& a) {
  place_on_host(a.jobs, a.fronts);
  checksum_on_host(a.jobs, a.parts);
}

// ---- a container sealed where its pieces are ----------------------------------------------------

// A container's body as pieces where they are (a stream message in device memory: host framing
// around blobs that stay on the device), in order.
struct SealPiece {
  const uint8_t* data;
  uint64_t size;
  bool stays;  // bytes where the assembly runs (a device blob), else host bytes (framing)
};

// The body sealed into `out` (body + 4 bytes) by the blob assembly's two steps: one copy job a
// staying piece, whose front is the host bytes before it (and one last job of the host bytes
// after the last), then one checksum job over the whole body, whose trailer is the container's
// CRC-32C. No byte of a staying piece is read on the host.
struct SealJobs {
  std::vector<AssemblyJob> copies;
  std::vector<uint8_t> fronts;
  AssemblyJob checksum{};

  SealJobs(const std::vector<SealPiece>& pieces, uint8_t* out) {
    AssemblyJob j{};
    j.dst = out;
    uint64_t body = 0;
    for (const SealPiece& p : pieces) {
      if (!p.stays) {
        fronts.insert(fronts.end(), p.data, p.data + p.size);
        j.front_bytes += p.size;
        continue;
      }
      j.streams = p.data, j.stream_bytes = p.size;
      copies.push_back(j);
      body += j.covered();
      j = AssemblyJob{};
      j.dst = out + body, j.front_at = fronts.size();
    }
    if (j.front_bytes) copies.push_back(j);
    body += j.front_bytes;
    checksum.dst = out, checksum.stream_bytes = body;  // read where the copies put it
  }
  uint64_t body_bytes() const { return checksum.covered(); }
};

inline void seal_on_host(const SealJobs& s) {
  place_on_host(s.copies, s.fronts);
  checksum_on_host({s.checksum}, s.checksum.parts());
}

// Where a grid puts its coded blobs. put(): the blob of `tensor` whose front is in the writer and
// whose chunk streams are at `streams` (host memory for a host sink, else where the assembly
// runs). A grid whose streams stay (streams_stay()) calls finish() before its streams' memory is
// reused or freed.
struct CodedBlobSink {
  MessageAllocator allocate;
  BlobAssembly* assembly = nullptr;                        // null: host blobs, written at once
  std::function<void(const BlobAssembly&)> assemble;       // runs the assembly's copies and checksums

  static CodedBlobSink host(MessageAllocator allocate) { return CodedBlobSink{std::move(allocate), nullptr, nullptr}; }
  bool streams_stay() const { return assembly != nullptr; }

  void put(size_t tensor, ContainerWriter& w, const uint8_t* streams) const {
    const BlobAllocator a = [this, tensor](size_t size) { return allocate(tensor, size); };
    if (assembly) return assembly->add(w, streams, a);
    w.write(a, [&](uint8_t* dst) { std::memcpy(dst, streams, size_t(w.stream_bytes())); });
  }
  void finish() const {
    if (!assembly || assembly->jobs.empty()) return;
    assemble(*assembly);
    assembly->clear();
  }
};

}  // namespace ebgc
