// Codec 10 (patch), static word-coded literals (method bit 6): the encoder;
// the model and the decoder are patch_wrans.cc.
#include <algorithm>
#include <bit>

#include "patch_wrans.h"

namespace tenpak::patch_detail::wrans {

void encode(const uint8_t* lit, size_t n, const uint8_t* b, uint64_t bn, std::string& out) {
  thread_local Model m(true);
  m.prime(b, bn);
  // Symbols in decoding order as (start, freq); rANS codes them backwards.
  std::vector<uint32_t> syms;
  auto put = [&](const Table& t, uint32_t s) { syms.push_back(t.sf(s)); };
  auto put_bits = [&](uint32_t v, int b) {  // b <= 8 bits, uniform
    syms.push_back((v << (kProb - b)) | (1u << (kProb - b)) << 16);
  };
  const uint32_t nv[2] = {m.voc[0].size(), m.voc[1].size()};  // primed ids (later ones are spelled here)
  const uint8_t* p = lit;
  const uint8_t* end = lit + n;
  int kind = 0;
  uint32_t prev = 0;
  while (p < end) {
    const uint32_t len = words::token_len(p, end, kind);
    words::Vocab& v = m.voc[kind];
    uint32_t id = v.find(p, len);
    const uint32_t c = prev < static_cast<uint32_t>(kCtx) ? prev : kCtx - 1;
    const uint32_t so = id && id <= nv[kind] ? m.sym_of[kind][static_cast<size_t>(id) * kCtx + c] : 0;
    if (so) {
      put(m.ctx_t[kind][c], so - 1);
    } else {
      put(m.ctx_t[kind][c], 0);
      if (id) {
        const int k = std::bit_width(id);
        put(m.fall[kind], static_cast<uint32_t>(k));  // fall's symbol k holds value k
        for (int left = k - 1; left > 0;) {
          const int bb = (left - 1) % 8 + 1;
          left -= bb;
          put_bits((id >> left) & ((1u << bb) - 1), bb);
        }
      } else {
        put(m.fall[kind], 0);
        put(m.len[kind], len);
        uint32_t pb = 256;
        for (uint32_t i = 0; i < len; ++i) { put(m.byte(kind, pb), p[i]); pb = p[i]; }
        id = v.add(p, len);
      }
    }
    if (kind == 1) prev = id;
    p += len;
    kind ^= 1;
  }
  // Symbol i (decoding order) uses state i mod 2; the bytes, written
  // backwards, are read forwards by the decoder's renormalizations.
  std::string rev;
  uint32_t xs[2] = {kLow, kLow};
  for (size_t i = syms.size(); i-- > 0;) {
    uint32_t& x = xs[i & 1];
    const uint32_t f = syms[i] >> 16, st = syms[i] & 0xffff;
    const uint32_t xmax = ((kLow >> kProb) << 8) * f;
    while (x >= xmax) {
      rev.push_back(static_cast<char>(x & 0xff));
      x >>= 8;
    }
    x = ((x / f) << kProb) + (x % f) + st;
  }
  for (int k : {1, 0}) {  // the decoder reads state 0, then state 1, big-endian
    for (int i = 0; i < 4; ++i) {
      rev.push_back(static_cast<char>(xs[k] & 0xff));
      xs[k] >>= 8;
    }
  }
  out.append(rev.rbegin(), rev.rend());
}

bool encode_words(const uint8_t* lit, size_t n, const uint8_t* b, uint64_t bn, std::string& out, int force) {
  std::string s4, s6;
  if (force != 6) words::encode(lit, n, b, bn, s4);
  if (force != 4) encode(lit, n, b, bn, s6);
  const bool st = force == 6 || (force != 4 && s6.size() * 100 <= s4.size() * (100 + kMarginPct));
  out = st ? std::move(s6) : std::move(s4);
  return st;
}

}  // namespace tenpak::patch_detail::wrans
