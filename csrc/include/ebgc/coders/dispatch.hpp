// The one dispatch from a coder id to its code (coders/coder.hpp): every reader and decoder of the
// container reaches the coders through here. Raw has no chunk structure (format/container.hpp).
#pragma once
#include <utility>

#include "../common/errors.hpp"
#include "../format/vocabulary.hpp"
#include "../legacy/context_serial.hpp"
#include "bitpack_coder.hpp"
#include "context_coder.hpp"
#include "huffman_coder.hpp"

namespace ebgc {

// Calls f(C{}) with the coder struct C of a chunked coder.
template <class F>
decltype(auto) with_coder(Coder id, F&& f) {
  switch (id) {
    case Coder::Bitpack: return f(BitpackCoder{});
    case Coder::Huffman: return f(HuffmanCoder{});
    case Coder::ContextSerial: return f(ContextSerialCoder{});
    case Coder::Context: return f(ContextCoder{});
    case Coder::Raw: break;
  }
  throw InvalidArgument("raw blobs have no chunk coder");
}

}  // namespace ebgc
