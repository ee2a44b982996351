// Codec 8, sub_rans: the encoder (tenpak_codec_encode). The model is
// described in rans_decode.cc and docs/FORMAT.md ("codec 8").
#include <cstring>
#include <string>
#include <vector>

#include "freq_table.h"
#include "rans_internal.h"

namespace tenpak::rans {
namespace {

using namespace detail;

// Raw bits, least significant first: bit j of the stream is bit j%8 of byte j/8.
struct BitWriter {
  std::string bytes;
  uint64_t acc = 0;
  int nb = 0;
  void put(uint64_t v, int k) {  // k <= 32, v < 2^k
    acc |= v << nb;
    nb += k;
    while (nb >= 8) {
      bytes.push_back(static_cast<char>(acc));
      acc >>= 8;
      nb -= 8;
    }
  }
  void flush() {
    if (nb > 0) bytes.push_back(static_cast<char>(acc));
    acc = 0;
    nb = 0;
  }
};

template <class U, bool FL>
void encode_t(const uint8_t* out, const uint8_t* base, size_t count, DType dt, std::string& payload) {
  constexpr size_t w = sizeof(U);
  const int nc = num_ctx(w), ns = num_sym(w);
  const Expo ex = expo(dt);
  std::vector<uint8_t> sym(count), cx(count);
  std::vector<uint32_t> cnt(size_t(nc) * ns);
  BitWriter raw;
  raw.bytes.reserve(count * w / 2);
  int avg = 0;
  for (size_t i = 0; i < count; ++i) {
    U b = load<U>(base + i * w), a = load<U>(out + i * w);
    U z = zigzag(U((FL ? f_ord(a) : a) - (FL ? f_ord(b) : b)));
    int k = bit_length(z);
    int q = bucket(b, ex);
    int c = context(avg, q, nc);
    sym[i] = static_cast<uint8_t>(k);
    cx[i] = static_cast<uint8_t>(c);
    ++cnt[size_t(c) * ns + k];
    if (k >= 2) {
      uint64_t rest = uint64_t(z) & ((uint64_t(1) << (k - 1)) - 1);
      int nbits = k - 1;
      if (nbits > 32) { raw.put(rest & 0xffffffffu, 32); rest >>= 32; nbits -= 32; }
      raw.put(rest, nbits);
    }
    avg = next_avg(avg, k, q);
  }
  raw.flush();

  // Header: raw length, then the tables.
  put_u32(payload, static_cast<uint32_t>(raw.bytes.size()));
  std::vector<uint32_t> freq(size_t(nc) * ns), cum(size_t(nc) * ns);
  for (int c = 0; c < nc; ++c) {
    uint32_t* f = &freq[size_t(c) * ns];
    freq::normalise(&cnt[size_t(c) * ns], ns, kScale, f);
    const int n = freq::used_symbols(f, ns);
    freq::put_table(payload, f, n);
    uint32_t acc = 0;
    for (int s = 0; s < n; ++s) {
      cum[size_t(c) * ns + s] = acc;
      acc += f[s];
    }
  }

  // rANS, backwards: element i uses state i mod 4, so the decoder (forwards)
  // sees the exact reverse of this sequence of operations.
  uint32_t x[4] = {kLow, kLow, kLow, kLow};
  std::vector<uint16_t> words;
  words.reserve(count / 2 + 16);
  for (size_t i = count; i-- > 0;) {
    const size_t t = size_t(cx[i]) * ns + sym[i];
    const uint32_t f = freq[t], start = cum[t];
    uint32_t& xs = x[i & 3];
    if (uint64_t(xs) >= (uint64_t(f) << (32 - kScaleBits))) {  // would leave [kLow, 2^32) after coding
      words.push_back(static_cast<uint16_t>(xs));
      xs >>= 16;
    }
    xs = ((xs / f) << kScaleBits) + (xs % f) + start;
  }
  for (int j = 0; j < 4; ++j) put_u32(payload, x[j]);
  size_t at = payload.size();
  payload.resize(at + 2 * words.size());
  for (size_t j = 0; j < words.size(); ++j) {
    uint16_t v = words[words.size() - 1 - j];
    payload[at + 2 * j] = static_cast<char>(v & 0xff);
    payload[at + 2 * j + 1] = static_cast<char>(v >> 8);
  }
  payload += raw.bytes;
}

}  // namespace

// Unknown dtypes never get here (refused when the model is parsed); a
// width of 0 would encode nothing and fail to decode.
void encode(const uint8_t* out, const uint8_t* base, size_t n, DType dt, std::string& payload) {
  elem::with_element_type<8>(dt, false, [&]<class U, bool FL>() {
    encode_t<U, FL>(out, base, n / sizeof(U), dt, payload);
    return true;
  });
}

}  // namespace tenpak::rans
