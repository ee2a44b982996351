// Codec 11 (approx): the encoder (tenpak_codec_encode); the decoder and the
// shared approx_dequant are approx_decode.cc. Compiled with
// -ffp-contract=off as the decoder (codec/CMakeLists.txt).
#include "tenpak/approx_codec.h"

#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "approx_internal.h"
#include "element_ops.h"
#include "range_coder.h"
#include "tenpak/frame_codec.h"

namespace tenpak {
namespace {

using namespace approx_detail;

void put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void putf(std::string& s, float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  put32(s, u);
}
void put_leb(std::string& s, uint64_t v) {
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    s.push_back(static_cast<char>(b | (v ? 0x80 : 0)));
  } while (v);
}

// Quantizes m values to b bits (scale = max|x| / ((2^b - 1) / 2)); b = 0
// stores float32, b = 16 float16 (rounded to nearest even).
void put_vector(std::string& s, const float* x, size_t m, size_t stride, unsigned b) {
  if (b == 0) {
    for (size_t i = 0; i < m; ++i) putf(s, x[i * stride]);
    return;
  }
  if (b == 16) {
    for (size_t i = 0; i < m; ++i) {
      uint8_t h[2];
      convert_dtype(reinterpret_cast<const uint8_t*>(x + i * stride), DType::F32, 1, DType::F16, h);
      s.push_back(static_cast<char>(h[0]));
      s.push_back(static_cast<char>(h[1]));
    }
    return;
  }
  const float z = static_cast<float>((1u << b) - 1) / 2.0f;
  float mx = 0;
  for (size_t i = 0; i < m; ++i) mx = std::max(mx, std::fabs(x[i * stride]));
  const float sc = mx / z;
  putf(s, sc);
  const uint32_t qmax = (1u << b) - 1;
  uint64_t acc = 0;
  unsigned nb = 0;
  for (size_t i = 0; i < m; ++i) {
    uint32_t q = 0;
    if (sc > 0) {
      double r = std::nearbyint(static_cast<double>(x[i * stride]) / sc + z);
      q = static_cast<uint32_t>(r < 0 ? 0 : (r > qmax ? qmax : r));
    }
    acc |= uint64_t(q) << nb;
    nb += b;
    while (nb >= 8) {
      s.push_back(static_cast<char>(acc & 0xff));
      acc >>= 8;
      nb -= 8;
    }
  }
  if (nb) s.push_back(static_cast<char>(acc & 0xff));
}

}  // namespace

Result<std::string> encode_approx_frame(const ApproxTensor& t, uint64_t first, uint64_t count, int zstd_level) {
  if (t.cols == 0 || first + count > t.rows * t.cols || count == 0)
    return Status{Errc::invalid, "approx: frame range outside the tensor"};
  std::string body;
  switch (t.method) {
    case ApproxMethod::sparse: {
      if (t.pos.size() != t.val.size()) return Status{Errc::invalid, "approx: sparse positions and values differ in number"};
      auto lo = std::lower_bound(t.pos.begin(), t.pos.end(), first);
      auto hi = std::lower_bound(lo, t.pos.end(), first + count);
      put32(body, static_cast<uint32_t>(hi - lo));
      uint64_t prev = 0;
      bool start = true;
      for (auto it = lo; it != hi; ++it) {
        uint64_t p = *it - first;
        put_leb(body, start ? p : p - prev - 1);
        prev = p;
        start = false;
      }
      for (auto it = lo; it != hi; ++it) putf(body, t.val[it - t.pos.begin()]);
      break;
    }
    case ApproxMethod::sign: {
      if (t.negative.size() != t.rows * t.cols) return Status{Errc::invalid, "approx: sign bits do not cover the tensor"};
      putf(body, t.scale);
      std::string bits((count + 7) / 8, '\0');
      for (uint64_t i = 0; i < count; ++i)
        if (t.negative[first + i]) bits[i / 8] = static_cast<char>(bits[i / 8] | (1u << (i % 8)));
      body += bits;
      break;
    }
    case ApproxMethod::lowrank: {
      if (t.rank == 0 || t.rank > kMaxRank || t.u.size() != t.rows * t.rank || t.v.size() != uint64_t(t.rank) * t.cols ||
          t.bits.size() != t.rank)
        return Status{Errc::invalid, "approx: low-rank factors do not match rows x rank x cols"};
      for (uint8_t b : t.bits)
        if (!valid_bits(b)) return Status{Errc::invalid, "approx: factor bits must be 0 (float32), 16 (float16) or 2..8"};
      const uint64_t r0 = first / t.cols, skip = first % t.cols;
      const uint64_t rows = (skip + count + t.cols - 1) / t.cols;
      put32(body, static_cast<uint32_t>(t.cols));
      put32(body, static_cast<uint32_t>(skip));
      put32(body, t.rank);
      for (uint8_t b : t.bits) body.push_back(static_cast<char>(b));
      for (uint32_t j = 0; j < t.rank; ++j) put_vector(body, t.u.data() + r0 * t.rank + j, rows, t.rank, t.bits[j]);
      for (uint32_t j = 0; j < t.rank; ++j) put_vector(body, t.v.data() + uint64_t(j) * t.cols, t.cols, 1, t.bits[j]);
      break;
    }
    case ApproxMethod::grouped:
    case ApproxMethod::grouped_rc: {
      const bool rc = t.method == ApproxMethod::grouped_rc;
      const uint64_t n = t.rows * t.cols;
      if (t.qbits < 1 || t.qbits > 8 || t.zero2 > 2 * ((1u << t.qbits) - 1) || t.codes.size() != n ||
          t.group > t.cols)
        return Status{Errc::invalid, "approx: grouped codes, bits, zero or group do not match the tensor"};
      const uint64_t G = t.group ? (t.cols + t.group - 1) / t.group : 0;
      if (t.scales.size() != (t.group ? t.rows * G : 1))
        return Status{Errc::invalid, "approx: grouped scales do not cover the tensor"};
      const uint64_t r0 = first / t.cols, skip = first % t.cols;
      const uint64_t rows = (skip + count + t.cols - 1) / t.cols;
      if (rc) {
        put_leb(body, t.cols);
        put_leb(body, skip);
      } else {
        put32(body, static_cast<uint32_t>(t.cols));
        put32(body, static_cast<uint32_t>(skip));
      }
      body.push_back(static_cast<char>(t.qbits));
      body.push_back(static_cast<char>(t.zero2));
      if (rc) put_leb(body, t.group);
      else put32(body, t.group);
      const uint64_t ns = t.group ? rows * G : 1, s0 = t.group ? r0 * G : 0;
      for (uint64_t i = 0; i < ns; ++i) {
        const float f = t.scales[s0 + i];
        uint8_t h[2];
        convert_dtype(reinterpret_cast<const uint8_t*>(&f), DType::F32, 1, DType::F16, h);
        float back;
        convert_dtype(h, DType::F16, 1, DType::F32, reinterpret_cast<uint8_t*>(&back));
        if (!std::isfinite(f) || std::memcmp(&back, &f, 4) != 0)
          return Status{Errc::invalid, "approx: a grouped scale is not a finite float16 value"};
        body.push_back(static_cast<char>(h[0]));
        body.push_back(static_cast<char>(h[1]));
      }
      const uint32_t qmax = (1u << t.qbits) - 1;
      for (uint64_t i = 0; i < count; ++i)
        if (t.codes[first + i] > qmax) return Status{Errc::invalid, "approx: a grouped code exceeds its bits"};
      if (rc) {
        // Codes MSB first down a binary tree per context (docs/FORMAT.md, sub-method 4).
        const unsigned nodes = 1u << t.qbits;
        std::vector<rc::Prob> probs(9 * nodes);
        std::vector<uint8_t> cls(count);
        rc::Encoder enc(body);
        for (uint64_t i = 0; i < count; ++i) {
          const uint32_t q = t.codes[first + i];
          rc::Prob* pr = probs.data() + grouped_rc_context(cls.data(), i, skip + i, t.cols) * nodes;
          unsigned node = 1;
          for (int k = t.qbits - 1; k >= 0; --k) {
            const int bit = static_cast<int>((q >> k) & 1);
            enc.bit(pr[node], bit);
            node = 2 * node + static_cast<unsigned>(bit);
          }
          cls[i] = static_cast<uint8_t>(grid_class(q, t.zero2));
        }
        enc.finish();
        break;
      }
      uint64_t acc = 0;
      unsigned nb = 0;
      for (uint64_t i = 0; i < count; ++i) {
        const uint32_t q = t.codes[first + i];
        acc |= uint64_t(q) << nb;
        nb += t.qbits;
        while (nb >= 8) {
          body.push_back(static_cast<char>(acc & 0xff));
          acc >>= 8;
          nb -= 8;
        }
      }
      if (nb) body.push_back(static_cast<char>(acc & 0xff));
      break;
    }
    default:
      return Status{Errc::invalid, "approx: unknown method"};
  }
  if (body.size() > kMaxBody) return Status{Errc::invalid, "approx: frame body over 64 MiB"};
  std::string out;
  out.push_back(static_cast<char>(t.method));
  std::string z;
  if (zstd_level > 0) {
    z.resize(ZSTD_compressBound(body.size()));
    size_t r = ZSTD_compress(z.data(), z.size(), body.data(), body.size(), zstd_level);
    if (ZSTD_isError(r)) z.clear();
    else z.resize(r);
  }
  const bool use_z = !z.empty() && z.size() < body.size();
  out.push_back(use_z ? 1 : 0);
  put32(out, static_cast<uint32_t>(body.size()));
  out += use_z ? z : body;
  return out;
}

}  // namespace tenpak
