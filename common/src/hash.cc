#include "tenpak/hash.h"

// OpenSSL's SHA256_* (deprecated in 3.0 in favour of EVP, still shipped) and
// not EVP: the first EVP digest of a process sets up OpenSSL's library
// context and its default provider, about 1 ms of CPU (measured: 300 runs of
// a program hashing 0 bytes, EVP 3.3 ms vs SHA256_Init 2.2 ms per process),
// 3% of what a 16 MiB data set rebuild may spend (docs/BENCHMARKS.md,
// "Dataset deltas"). Same code underneath (SHA-NI: 1.79 GB/s both ways here),
// same digests.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <xxhash.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#endif

#include <stdexcept>

namespace tenpak {

std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = d[p[i] >> 4];
    s[2 * i + 1] = d[p[i] & 15];
  }
  return s;
}

#if defined(__x86_64__)
namespace {
__attribute__((target("avx"))) void zero_upper() { _mm256_zeroupper(); }
}  // namespace
#endif

// Computed through xxHash's CPU dispatcher: Debian's libxxhash is built for
// baseline x86-64 (SSE2), and its AVX-512 / AVX2 code measured 2.5-3x faster
// on 1 MiB frames on the VM of docs/BENCHMARKS.md ("Mount": xxh3 was 7-10% of
// the daemon's CPU on a cold read). Same value on every path (xxHash's
// contract). The dispatched code returns with the upper halves of the vector
// registers dirty; legacy-SSE code after it (the rest of TenPak is built for
// baseline x86-64) would then pay a merge on every vector instruction (the
// library's own SSE2 hash measured 13.5 -> 4 GB/s after one dispatched call),
// hence the vzeroupper.
Xxh128 xxh128(const void* p, size_t n) {
#if defined(__x86_64__)
  static const bool avx = __builtin_cpu_supports("avx");
  XXH128_hash_t h = XXH3_128bits_dispatch(p, n);
  if (avx) zero_upper();
#else
  XXH128_hash_t h = XXH3_128bits(p, n);
#endif
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  Xxh128 out;
  for (int i = 0; i < 16; ++i) out[i] = c.digest[i];
  return out;
}

uint64_t xxh64(const void* p, size_t n) { return XXH3_64bits(p, n); }

Sha256Hasher::Sha256Hasher() {
  auto* c = new SHA256_CTX;
  if (SHA256_Init(c) != 1) {
    delete c;
    throw std::runtime_error("sha256 init failed");
  }
  ctx_ = c;
}
Sha256Hasher::~Sha256Hasher() { delete static_cast<SHA256_CTX*>(ctx_); }
void Sha256Hasher::update(const void* p, size_t n) { SHA256_Update(static_cast<SHA256_CTX*>(ctx_), p, n); }
Sha256 Sha256Hasher::finish() {
  Sha256 out;
  SHA256_Final(out.data(), static_cast<SHA256_CTX*>(ctx_));
  return out;
}
Sha256 sha256(const void* p, size_t n) {
  Sha256Hasher h;
  h.update(p, n);
  return h.finish();
}

}  // namespace tenpak
