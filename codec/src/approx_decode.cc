// Codec 11 (approx). docs/FORMAT.md ("Codec 11") is the normative text; the
// float operations below are in exactly its order. This file is compiled
// with -ffp-contract=off (codec/CMakeLists.txt): a fused multiply-add would
// round once where the specification rounds twice.
// This file: the decoder (tenpak_codec_decode, what the mount links); the
// encoder is approx_encode.cc.
#include "tenpak/approx_codec.h"

#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "approx_internal.h"
#include "element_ops.h"
#include "range_coder.h"
#include "tenpak/frame_codec.h"

namespace tenpak {
namespace {

using namespace approx_detail;

// A cursor over the body that refuses to read past its end.
struct Body {
  const uint8_t* p;
  size_t n, i = 0;
  bool u32(uint32_t& v) {
    if (n - i < 4) return false;
    v = uint32_t(p[i]) | uint32_t(p[i + 1]) << 8 | uint32_t(p[i + 2]) << 16 | uint32_t(p[i + 3]) << 24;
    i += 4;
    return true;
  }
  bool f32(float& f) {
    uint32_t u;
    if (!u32(u)) return false;
    std::memcpy(&f, &u, 4);
    return true;
  }
  // LEB128 of at most 5 bytes with a value < 2^32.
  bool leb(uint32_t& v) {
    uint64_t x = 0;
    for (int k = 0; k < 5; ++k) {
      if (i >= n) return false;
      uint8_t b = p[i++];
      x |= uint64_t(b & 0x7f) << (7 * k);
      if (!(b & 0x80)) {
        if (x >> 32) return false;
        v = static_cast<uint32_t>(x);
        return true;
      }
    }
    return false;
  }
};

bool get_vector(Body& r, size_t m, unsigned b, float* dst, size_t stride) {
  if (b == 0) {
    for (size_t i = 0; i < m; ++i)
      if (!r.f32(dst[i * stride])) return false;
    return true;
  }
  if (b == 16) {
    if (r.n - r.i < 2 * m) return false;
    for (size_t i = 0; i < m; ++i) convert_dtype(r.p + r.i + 2 * i, DType::F16, 1, DType::F32, reinterpret_cast<uint8_t*>(dst + i * stride));
    r.i += 2 * m;
    return true;
  }
  float sc;
  if (!r.f32(sc)) return false;
  const size_t bytes = (m * b + 7) / 8;
  if (r.n - r.i < bytes) return false;
  const uint8_t* p = r.p + r.i;
  for (size_t i = 0; i < m; ++i) {
    const size_t bit = i * b;
    uint32_t w = p[bit / 8] | (bit / 8 + 1 < bytes ? uint32_t(p[bit / 8 + 1]) << 8 : 0u);
    uint32_t q = (w >> (bit % 8)) & ((1u << b) - 1);
    dst[i * stride] = approx_dequant(sc, q, b);
  }
  // Padding bits of the last byte are zero.
  const unsigned used = static_cast<unsigned>((m * b) % 8);
  if (used && (p[bytes - 1] >> used)) return false;
  r.i += bytes;
  return true;
}

}  // namespace

float approx_dequant(float s, uint32_t q, unsigned b) {
  const float z = static_cast<float>((1u << b) - 1) / 2.0f;  // exact: a half-integer below 2^8
  const float c = static_cast<float>(q) - z;                 // exact
  return s * c;                                              // one rounding
}

float approx_grid_value(float s, uint32_t q, unsigned zero2) {
  const float z = static_cast<float>(zero2) / 2.0f;  // exact: a half-integer below 2^9
  const float c = static_cast<float>(q) - z;         // exact
  return s * c;                                      // one rounding
}

Status decode_approx(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out) {
  auto corrupt = [](const std::string& why) { return Status{Errc::corrupt, "payload does not decode: approx: " + why}; };
  if (dt != DType::F32 && dt != DType::F16 && dt != DType::BF16) return corrupt("output dtype is not F32, F16 or BF16");
  const size_t w = dtype_size(dt), count = n / w;
  if (len < kHead) return corrupt("payload shorter than its header");
  const uint8_t method = payload[0], flags = payload[1];
  const uint32_t raw = uint32_t(payload[2]) | uint32_t(payload[3]) << 8 | uint32_t(payload[4]) << 16 |
                       uint32_t(payload[5]) << 24;
  if (method > 4) return corrupt("unknown method " + std::to_string(method));
  if (flags & ~1u) return corrupt("unknown flag bits");
  if (raw > kMaxBody) return corrupt("body length over 64 MiB");
  std::vector<uint8_t> zbuf;
  const uint8_t* bp = payload + kHead;
  if (flags & 1) {
    zbuf.resize(raw);
    size_t r = ZSTD_decompress(zbuf.data(), raw, payload + kHead, len - kHead);
    if (ZSTD_isError(r) || r != raw) return corrupt("zstd body does not decompress to its stated length");
    bp = zbuf.data();
  } else if (len - kHead != raw) {
    return corrupt("raw body length differs from its stated length");
  }
  Body r{bp, raw};
  std::vector<float> d(count, 0.0f);
  switch (static_cast<ApproxMethod>(method)) {
    case ApproxMethod::sparse: {
      uint32_t k;
      if (!r.u32(k) || k > count) return corrupt("sparse count");
      std::vector<uint32_t> pos(k);
      uint64_t p = 0;
      for (uint32_t i = 0; i < k; ++i) {
        uint32_t g;
        if (!r.leb(g)) return corrupt("sparse position");
        p = i == 0 ? g : p + 1 + g;
        if (p >= count) return corrupt("sparse position past the frame");
        pos[i] = static_cast<uint32_t>(p);
      }
      for (uint32_t i = 0; i < k; ++i)
        if (!r.f32(d[pos[i]])) return corrupt("sparse values truncated");
      break;
    }
    case ApproxMethod::sign: {
      float s;
      if (!r.f32(s)) return corrupt("sign scale");
      const size_t bytes = (count + 7) / 8;
      if (r.n - r.i < bytes) return corrupt("sign bits truncated");
      const uint8_t* bits = r.p + r.i;
      const float neg = -s;
      for (size_t i = 0; i < count; ++i) d[i] = (bits[i / 8] >> (i % 8)) & 1 ? neg : s;
      if (count % 8 && (bits[bytes - 1] >> (count % 8))) return corrupt("sign padding bits set");
      r.i += bytes;
      break;
    }
    case ApproxMethod::lowrank: {
      uint32_t cols, skip, rank;
      if (!r.u32(cols) || !r.u32(skip) || !r.u32(rank)) return corrupt("low-rank header truncated");
      if (cols == 0 || skip >= cols) return corrupt("low-rank cols/skip");
      if (rank == 0 || rank > kMaxRank) return corrupt("low-rank rank");
      if (r.n - r.i < rank) return corrupt("low-rank bits truncated");
      std::vector<uint8_t> bits(r.p + r.i, r.p + r.i + rank);
      r.i += rank;
      for (uint8_t b : bits)
        if (!valid_bits(b)) return corrupt("low-rank factor bits not 0, 16 or 2..8");
      const uint64_t rows = (uint64_t(skip) + count + cols - 1) / cols;
      // Each stored value takes at least a quarter byte: bound the factors by the body before allocating.
      if ((rows + cols) * rank > uint64_t(raw) * 4 + 8) return corrupt("low-rank factors larger than the body");
      std::vector<float> u(rows * rank), v(uint64_t(rank) * cols);
      for (uint32_t j = 0; j < rank; ++j)
        if (!get_vector(r, rows, bits[j], u.data() + j, rank)) return corrupt("low-rank U truncated or bad padding");
      for (uint32_t j = 0; j < rank; ++j)
        if (!get_vector(r, cols, bits[j], v.data() + uint64_t(j) * cols, 1))
          return corrupt("low-rank V truncated or bad padding");
      // d[e] = sum over j = 0..rank-1, in that order, of u[row][j] * v[j][col],
      // each product rounded to float32, then added (rounded), from 0.
      for (size_t i = 0; i < count; ++i) {
        const uint64_t t = skip + i, row = t / cols, col = t % cols;
        const float* ur = u.data() + row * rank;
        float acc = 0.0f;
        for (uint32_t j = 0; j < rank; ++j) {
          const float prod = ur[j] * v[uint64_t(j) * cols + col];
          acc = acc + prod;
        }
        d[i] = acc;
      }
      break;
    }
    case ApproxMethod::grouped:
    case ApproxMethod::grouped_rc: {
      const bool rc = static_cast<ApproxMethod>(method) == ApproxMethod::grouped_rc;
      uint32_t cols, skip, group;
      if (!(rc ? r.leb(cols) && r.leb(skip) : r.u32(cols) && r.u32(skip)) || r.n - r.i < 2)
        return corrupt("grouped header truncated");
      const unsigned qb = r.p[r.i], zero2 = r.p[r.i + 1];
      r.i += 2;
      if (!(rc ? r.leb(group) : r.u32(group))) return corrupt("grouped header truncated");
      if (cols == 0 || skip >= cols) return corrupt("grouped cols/skip");
      if (qb < 1 || qb > 8) return corrupt("grouped bits not 1..8");
      if (zero2 > 2 * ((1u << qb) - 1)) return corrupt("grouped zero above the grid");
      if (group > cols) return corrupt("grouped group wider than a row");
      const uint64_t rows = (uint64_t(skip) + count + cols - 1) / cols;
      const uint64_t G = group ? (uint64_t(cols) + group - 1) / group : 0;
      const uint64_t ns = group ? rows * G : 1;
      if (ns > (r.n - r.i) / 2) return corrupt("grouped scales truncated");
      std::vector<float> sc(ns);
      for (uint64_t i = 0; i < ns; ++i) {
        convert_dtype(r.p + r.i + 2 * i, DType::F16, 1, DType::F32, reinterpret_cast<uint8_t*>(&sc[i]));
        if (!std::isfinite(sc[i])) return corrupt("grouped scale not finite");
      }
      r.i += 2 * ns;
      if (rc) {
        // The rest of the body is the range-coded codes, read exactly (docs/FORMAT.md).
        const unsigned nodes = 1u << qb;
        std::vector<rc::Prob> probs(9 * nodes);
        std::vector<uint8_t> cls(count);
        rc::Decoder dec(r.p + r.i, r.n - r.i);
        for (size_t i = 0; i < count; ++i) {
          const uint64_t t = skip + i, row = t / cols, col = t % cols;
          rc::Prob* pr = probs.data() + grouped_rc_context(cls.data(), i, t, cols) * nodes;
          unsigned node = 1;
          for (unsigned k = 0; k < qb; ++k) node = 2 * node + static_cast<unsigned>(dec.bit(pr[node]));
          const uint32_t q = node - nodes;
          cls[i] = static_cast<uint8_t>(grid_class(q, zero2));
          const float s = group ? sc[row * G + col / group] : sc[0];
          d[i] = approx_grid_value(s, q, zero2);
        }
        if (!dec.exact_end()) return corrupt("grouped range-coded codes truncated or padded");
        r.i = r.n;
        break;
      }
      const size_t bytes = (count * qb + 7) / 8;
      if (r.n - r.i < bytes) return corrupt("grouped codes truncated");
      const uint8_t* p = r.p + r.i;
      for (size_t i = 0; i < count; ++i) {
        const size_t bit = i * qb;
        const uint32_t w = p[bit / 8] | (bit / 8 + 1 < bytes ? uint32_t(p[bit / 8 + 1]) << 8 : 0u);
        const uint32_t q = (w >> (bit % 8)) & ((1u << qb) - 1);
        const uint64_t t = skip + i, row = t / cols, col = t % cols;
        const float s = group ? sc[row * G + col / group] : sc[0];
        d[i] = approx_grid_value(s, q, zero2);
      }
      const unsigned used = static_cast<unsigned>((count * qb) % 8);
      if (used && (p[bytes - 1] >> used)) return corrupt("grouped padding bits set");
      r.i += bytes;
      break;
    }
  }
  if (r.i != r.n) return corrupt("body longer than its content");
  // out = round_to_dtype(float32(base) + d): the base widened exactly, one
  // float32 addition, then F16/BF16 rounded to nearest even by convert_dtype.
  std::vector<float> sum(count);
  for (size_t i = 0; i < count; ++i) {
    float b;
    switch (dt) {
      case DType::F32: b = elem::load<float>(base + 4 * i); break;
      default: convert_dtype(base + 2 * i, dt, 1, DType::F32, reinterpret_cast<uint8_t*>(&b)); break;
    }
    sum[i] = b + d[i];
  }
  if (dt == DType::F32) std::memcpy(out, sum.data(), n);
  else convert_dtype(reinterpret_cast<const uint8_t*>(sum.data()), DType::F32, count, dt, out);
  (void)w;
  return Status::Ok();
}

}  // namespace tenpak
