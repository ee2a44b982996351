// Hashes used by the format: sha256 for whole files (what users compare),
// xxh3-128 for frames (cheap enough to check on every read).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace tenpak {

using Sha256 = std::array<uint8_t, 32>;
using Xxh128 = std::array<uint8_t, 16>;

std::string hex(const uint8_t* p, size_t n);
template <size_t N>
std::string hex(const std::array<uint8_t, N>& a) { return hex(a.data(), N); }

Xxh128 xxh128(const void* p, size_t n);
uint64_t xxh64(const void* p, size_t n);

// Incremental sha256 (OpenSSL's SHA256_* underneath: hash.cc says why not EVP).
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  void update(const void* p, size_t n);
  Sha256 finish();

 private:
  void* ctx_;
};

Sha256 sha256(const void* p, size_t n);

}  // namespace tenpak
