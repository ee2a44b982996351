#include "tenpak/hash.h"

#include <openssl/evp.h>
#include <xxhash.h>

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

Xxh128 xxh128(const void* p, size_t n) {
  XXH128_hash_t h = XXH3_128bits(p, n);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  Xxh128 out;
  for (int i = 0; i < 16; ++i) out[i] = c.digest[i];
  return out;
}

uint64_t xxh64(const void* p, size_t n) { return XXH3_64bits(p, n); }

Sha256Hasher::Sha256Hasher() {
  auto* c = EVP_MD_CTX_new();
  if (!c || EVP_DigestInit_ex(c, EVP_sha256(), nullptr) != 1) throw std::runtime_error("sha256 init failed");
  ctx_ = c;
}
Sha256Hasher::~Sha256Hasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }
void Sha256Hasher::update(const void* p, size_t n) { EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), p, n); }
Sha256 Sha256Hasher::finish() {
  Sha256 out;
  unsigned len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out.data(), &len);
  return out;
}
Sha256 sha256(const void* p, size_t n) {
  Sha256Hasher h;
  h.update(p, n);
  return h.finish();
}

}  // namespace tenpak
