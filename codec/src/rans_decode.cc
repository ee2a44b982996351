// Codec 8, sub_rans. docs/FORMAT.md ("codec 8") is the normative text; the
// names here follow it. Per element i (base b, output a, w-byte words U):
//   z_i = zigzag(ord(a) - ord(b))          the ulp difference, as sub_planes
//   k_i = bit length of z_i (0..8w)        the symbol, rANS coded
//   the k_i - 1 bits of z_i under its leading one, stored raw (LSB first)
// The symbol's model is static per frame: one frequency table (sum 2^12) per
// context, stored in the payload. The context is the bit length predicted
// from a running average of recent (k + exponent bucket), taken at this
// element's exponent bucket: fine-tuning updates are locally similar in
// absolute size, so their ulp count shrinks as the base's exponent grows.
// Why static + rANS: decoding is one table lookup, a multiply and at most
// one 16-bit read per element, ~20x faster than sub_ctx's adaptive binary
// coder, at a few percent of its size.
//
// This file: the decoder (tenpak_codec_decode); the encoder is rans_encode.cc.
#include <cstring>
#include <vector>

#include "freq_table.h"
#include "rans_internal.h"

namespace tenpak::rans {
namespace {

using namespace detail;

// Reads past the end yield zero bits; consumed() tells whether that happened.
struct BitReader {
  const uint8_t* p;
  size_t n, i = 0;  // i: bytes moved into buf (may pass n: virtual zeros)
  uint64_t buf = 0;
  int nb = 0;       // valid bits in buf (the bits above may hold the next byte's, see refill)
  BitReader(const uint8_t* p_, size_t n_) : p(p_), n(n_) {}
  // After refill, nb >= 56. The fast path loads 8 bytes and keeps whole ones:
  // bits above nb then repeat the next bytes, so OR-ing them in again is harmless.
  void refill() {
    if (i <= n && n - i >= 8) {
      buf |= load<uint64_t>(p + i) << nb;
      i += (63 - nb) >> 3;
      nb |= 56;
    } else {
      while (nb <= 56) {
        uint64_t v = i < n ? p[i] : 0;
        buf |= v << nb;
        ++i;
        nb += 8;
      }
    }
  }
  uint64_t read(int k) {  // k <= 32 after a refill
    uint64_t v = buf & ((uint64_t(1) << k) - 1);
    buf >>= k;
    nb -= k;
    return v;
  }
  uint64_t consumed_bits() const { return uint64_t(i) * 8 - uint64_t(nb); }
};

// Decode table entry per (context, slot): symbol | (freq - 1) << 8 | (slot - cum) << 20.
template <class U, bool FL>
bool decode_t(const uint8_t* p, size_t len, const uint8_t* base, size_t count, DType dt, uint8_t* out) {
  constexpr size_t w = sizeof(U);
  const int nc = num_ctx(w), ns = num_sym(w);
  const Expo ex = expo(dt);
  if (len < 4) return false;
  const uint32_t raw_len = get_u32(p);
  size_t pos = 4;
  thread_local std::vector<uint32_t> tab;
  tab.resize(size_t(kMaxCtx) << kScaleBits);
  uint8_t present[kMaxCtx] = {};
  for (int c = 0; c < nc; ++c) {
    uint32_t f[kMaxSym];
    int n = 0;
    if (!freq::get_table(p, len, pos, ns, kScale, f, n)) return false;
    if (n == 0) continue;
    uint32_t* t = &tab[size_t(c) << kScaleBits];
    uint32_t at = 0;
    for (int s = 0; s < n; ++s)
      for (uint32_t j = 0; j < f[s]; ++j) t[at++] = uint32_t(s) | ((f[s] - 1) << 8) | (j << 20);
    present[c] = 1;
  }
  if (uint64_t(len - pos) < 16 + uint64_t(raw_len)) return false;
  const size_t wbytes = len - pos - 16 - raw_len;
  if (wbytes % 2) return false;
  uint32_t x[4];
  for (int j = 0; j < 4; ++j) {
    x[j] = get_u32(p + pos + 4 * j);
    if (x[j] < kLow) return false;
  }
  const uint8_t* wp = p + pos + 16;
  size_t wi = 0;  // bytes of words read; reads past wbytes yield 0 and fail the final check
  BitReader br(p + len - raw_len, raw_len);
  const uint32_t* T = tab.data();
  uint32_t bad = 0;
  int avg = 0;
  for (size_t i = 0; i < count; ++i) {
    const U b = load<U>(base + i * w);
    const int q = bucket(b, ex);
    const int c = context(avg, q, nc);
    bad |= present[c] ^ 1u;
    uint32_t& xs = x[i & 3];
    const uint32_t e = T[(size_t(c) << kScaleBits) | (xs & (kScale - 1))];
    const int k = static_cast<int>(e & 0xff);
    xs = (((e >> 8) & 0xfff) + 1) * (xs >> kScaleBits) + (e >> 20);
    if (xs < kLow) {
      uint32_t v = wi + 2 <= wbytes ? uint32_t(wp[wi] | (wp[wi + 1] << 8)) : 0;
      wi += 2;
      xs = (xs << 16) | v;
    }
    br.refill();
    const int nbits = k - (k != 0);
    uint64_t bits;
    if constexpr (w == 8) {
      int lo = nbits > 32 ? 32 : nbits;
      bits = br.read(lo);
      br.refill();
      bits |= br.read(nbits - lo) << lo;
    } else {
      bits = br.read(nbits);
    }
    const uint64_t z = (uint64_t(k != 0) << ((k - 1) & 63)) | bits;
    avg = next_avg(avg, k, q);
    const U bo = FL ? f_ord(b) : b;
    const U ao = U(bo + unzigzag(U(z)));
    store<U>(out + i * w, FL ? f_unord(ao) : ao);
  }
  if (bad || wi != wbytes) return false;
  for (int j = 0; j < 4; ++j)
    if (x[j] != kLow) return false;
  // Every raw byte used, none invented.
  const uint64_t used = br.consumed_bits();
  return used <= uint64_t(raw_len) * 8 && (used + 7) / 8 == raw_len;
}

}  // namespace

bool decode(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out) {
  return elem::with_element_type<8>(dt, false, [&]<class U, bool FL>() {
    return decode_t<U, FL>(payload, len, base, n / sizeof(U), dt, out);
  });
}

}  // namespace tenpak::rans
