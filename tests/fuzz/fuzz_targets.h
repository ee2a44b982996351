// Fuzz entry points for TenPak's parsers of untrusted bytes. Each returns ""
// when the input was handled correctly (accepted with every invariant
// holding, or refused with an error) and a description of the violated
// invariant otherwise. libFuzzer drivers (fuzz_main.cc) trap on a non-empty
// result; the mutation gtest reports it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/safetensors.h"

namespace tpfuzz {

// A whole torch.save zip file through read_pytorch_checkpoint + conversion.
std::string checkpoint(const uint8_t* data, size_t size);
// The bytes as data.pkl inside a valid zip (CRC fixed) with storages 0..3,
// so mutations reach the restricted unpickler and the tensor namer.
std::string pickle(const uint8_t* data, size_t size);
// A safetensors file: header length + header parser.
std::string safetensors(const uint8_t* data, size_t size);
// A tenpak.idx through parse_manifest, as given and with its checksum fixed
// so mutations reach the structural checks.
std::string manifest(const uint8_t* data, size_t size);
// A codec 9 (sub_lanes) payload: byte 0 picks the dtype (lanes_dtype), bytes
// 1-2 the element count (mod 4097), the rest is the payload; the base is
// fixed pseudo-random data (lanes_base). Decoded by the SIMD and the portable
// decoder, which must agree on validity and bytes.
std::string lanes(const uint8_t* data, size_t size);

// A codec 10 (patch) frame: bytes 0-1 give out_len (1 + value mod 8192), the
// rest is the payload; the frame's base range is all of patch_base() (the
// extents it lists are read from there, as DeltaReader does). Accepted
// payloads must decode to the same bytes twice; nothing may read out of
// bounds (ASan in the libFuzzer build).
std::string patch(const uint8_t* data, size_t size);

// A codec 12 (lowrank_lanes) payload: byte 0 picks the dtype (lowrank_dtype),
// bytes 1-2 the element count (1 + value mod 2048), the rest is the payload;
// the base is lanes_base (any bit pattern, NaN and infinities included).
// Accepted payloads must decode to the same bytes twice, and their
// prediction part must be a payload codec 11 accepts on its own. Not in the
// clang libFuzzer build: it needs frame_decode.cc (dtype conversion), which
// uses _Float16.
std::string lowrank(const uint8_t* data, size_t size);
// A codec 11 (approx, lossy frames) payload: byte 0 picks the dtype
// (lowrank_dtype), bytes 1-2 the element count (1 + value mod 2048), the
// rest is the payload; the base is lanes_base. Accepted payloads must decode
// to the same bytes twice. Not in the clang libFuzzer build (as lowrank).
std::string approx(const uint8_t* data, size_t size);
inline tenpak::DType lowrank_dtype(uint8_t sel) {
  using tenpak::DType;
  static const DType kTypes[] = {DType::F32, DType::F16, DType::BF16};
  return kTypes[sel % 3];
}
// At kSnappyA and kSnappyB it holds two snappy raw-format streams (codec 10's
// snappy pages read their extents as such): 600 bytes of literal elements, and
// 88 bytes from a literal, an overlapping 2-byte-offset copy, a 1-byte-offset
// copy and a literal (written by hand: no compressor needed).
constexpr uint32_t kSnappyA = 40000, kSnappyB = 41000;
inline const std::vector<uint8_t>& patch_base() {
  static const std::vector<uint8_t> b = [] {
    std::vector<uint8_t> v(1 << 16);
    uint64_t x = 99;
    for (auto& c : v) { x = x * 6364136223846793005ull + 1442695040888963407ull; c = static_cast<uint8_t>(x >> 56); }
    std::vector<uint8_t> a = {0xd8, 0x04};  // 600
    for (int e = 0; e < 10; ++e) {
      a.push_back(59 << 2);  // a literal of 60 bytes
      for (int i = 0; i < 60; ++i) a.push_back(static_cast<uint8_t>('a' + (e * 7 + i) % 26));
    }
    std::copy(a.begin(), a.end(), v.begin() + kSnappyA);
    const std::vector<uint8_t> s = {88, 7 << 2, '0', '1', '2', '3', '4', '5', '6', '7',  // literal "01234567"
                                    (63 << 2) | 2, 8, 0,                                  // copy 64 from 8 back
                                    ((11 - 4) << 2) | 1, 3,                               // copy 11 from 3 back
                                    4 << 2, 'x', 'y', 'z', '!', '?'};                     // literal "xyz!?"
    std::copy(s.begin(), s.end(), v.begin() + kSnappyB);
    return v;
  }();
  return b;
}
inline uint32_t snappy_a_len() { return 2 + 10 * 61; }
inline uint32_t snappy_b_len() { return 21; }

// sub_lanes fuzzing: the dtype of a selector byte, and the fixed base.
inline tenpak::DType lanes_dtype(uint8_t sel) {
  using tenpak::DType;
  static const DType kTypes[] = {DType::BF16, DType::F32, DType::F16, DType::I8,
                                 DType::U8,   DType::I16, DType::I32, DType::F8_E4M3};
  return kTypes[sel % 8];
}
inline std::vector<uint8_t> lanes_base(tenpak::DType dt, size_t count) {
  std::vector<uint8_t> b(count * tenpak::dtype_size(dt));
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (auto& v : b) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<uint8_t>(x >> 56);
  }
  return b;
}
}  // namespace tpfuzz
