// Frame decoding (tenpak_codec_decode: what the mount links): decode_frame
// dispatches on the frame's codec; dtype conversion of base ranges. The
// encoders are in frame_encode.cc (tenpak_codec_encode).
#include <zstd.h>

#include <cstring>

#include "frame_internal.h"
#include "lanes_codec.h"
#include "rans_codec.h"
#include "tenpak/approx_codec.h"
#include "tenpak/frame_codec.h"
#include "tenpak/lowrank_codec.h"
#include "tenpak/patch_codec.h"
#include "tenpak/scratch.h"

namespace tenpak {
namespace {

using namespace frame_detail;

// One decompression context per thread: creating one per call costs more
// than decompressing a small frame.
ZSTD_DCtx* dctx() {
  thread_local struct D { ZSTD_DCtx* d = ZSTD_createDCtx(); ~D() { ZSTD_freeDCtx(d); } } t;
  return t.d;
}

// Decompresses exactly `n` bytes; anything else is corruption.
bool zstd_exact(const uint8_t* src, size_t sn, uint8_t* dst, size_t n) {
  size_t r = ZSTD_decompressDCtx(dctx(), dst, n, src, sn);
  return !ZSTD_isError(r) && r == n;
}

// In place: `out` holds d[i] = zigzag(ord(a) - ord(b)) and gets a[i]; each
// element reads its own difference before writing.
template <class U>
void sub_inverse(const uint8_t* base, size_t count, bool is_float, uint8_t* out) {
  for (size_t i = 0; i < count; ++i) {
    U d = load<U>(out + i * sizeof(U)), b = load<U>(base + i * sizeof(U));
    if (is_float) b = f_ord(b);
    U a = U(b + unzigzag(d));
    store<U>(out + i * sizeof(U), is_float ? f_unord(a) : a);
  }
}

// Byte planes: plane k (most significant first) holds byte (w-1-k) of every element.
void from_planes(const uint8_t* src, size_t n, size_t w, uint8_t* dst) {
  size_t count = n / w;
  if (w == 2) {
    const uint8_t* hi = src; const uint8_t* lo = src + count;
    for (size_t i = 0; i < count; ++i) { dst[2 * i] = lo[i]; dst[2 * i + 1] = hi[i]; }
    return;
  }
  for (size_t k = 0; k < w; ++k) {
    const uint8_t* pl = src + k * count;
    size_t byte = w - 1 - k;
    for (size_t i = 0; i < count; ++i) dst[i * w + byte] = pl[i];
  }
}

template <class U>
bool ctx_decode(const uint8_t* payload, size_t len, const uint8_t* base, size_t count, DType dt, uint8_t* out) {
  if (len < 1) return false;
  CtxParams prm;
  size_t header = 1;
  if (payload[0] != 0) {
    header = kCtxHeaderMax;
    if (len < header || sizeof(U) == 8) return false;
    prm.kw = payload[0];
    prm.area = payload[1];
    prm.phase = payload[2];
    if (prm.area == 0 || prm.area % prm.kw != 0 || prm.phase >= prm.area) return false;
    for (int t = 0; t < 3; ++t) {
      prm.c[t] = static_cast<int16_t>(payload[3 + 2 * t] | (payload[4 + 2 * t] << 8));
      if (prm.c[t] > kCoefMax || prm.c[t] < -kCoefMax) return false;
    }
    if ((prm.c[0] | prm.c[1] | prm.c[2]) == 0) return false;  // canonical: that is kw = 0
  }
  CtxModel<U> m(dt);
  rc::Decoder dec(payload + header, len - header);
  const bool fl = dtype_is_float(dt);
  const bool predict = (prm.c[0] | prm.c[1] | prm.c[2]) != 0;
  thread_local std::vector<int64_t> d;
  thread_local std::vector<int> xs;
  if (predict) { d.resize(count); xs.resize(count); }
  KernelPos kpos(prm);
  for (size_t i = 0; i < count; kpos.next(prm), ++i) {
    U b = load<U>(base + i * sizeof(U));
    int eb = m.bucket(b);
    rc::Prob* kp = m.ktree(eb);
    unsigned node = 1;
    for (int l = 0; l < CtxModel<U>::kLevels; ++l) node = node * 2 + dec.bit(kp[node]);
    int k = static_cast<int>(node - (1u << CtxModel<U>::kLevels));
    if (k > CtxModel<U>::kBits) return false;
    uint64_t z = 0;
    if (k > 0) {
      z = 1;
      rc::Prob* mp = &m.mp[size_t(k) * CtxModel<U>::kBits];
      for (int pos = k - 2; pos > 0; --pos) z = (z << 1) | static_cast<uint64_t>(dec.bit(mp[pos]));
      if (k >= 2) {
        int s = dec.bit(m.sp[CtxModel<U>::sign(b) * 2 + m.prev_sign]);
        m.prev_sign = s;
        z = (z << 1) | static_cast<uint64_t>(s);
      }
    }
    m.after(k, eb);
    U r = unzigzag(U(z));
    U bo = fl ? f_ord(b) : b;
    U di = r;
    if (predict) {
      xs[i] = m.scale(b);
      di = U(uint64_t(r) + uint64_t(ctx_predict(prm, d.data(), xs.data(), i, kpos.x, kpos.y)));
      d[i] = sext<U>(di);
    }
    U ao = U(bo + di);
    store<U>(out + i * sizeof(U), fl ? f_unord(ao) : ao);
  }
  return !dec.overrun();
}

bool ctx_decode_any(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out) {
  switch (dtype_size(dt)) {
    case 1: return ctx_decode<uint8_t>(payload, len, base, n, dt, out);
    case 2: return ctx_decode<uint16_t>(payload, len, base, n / 2, dt, out);
    case 4: return ctx_decode<uint32_t>(payload, len, base, n / 4, dt, out);
    default: return ctx_decode<uint64_t>(payload, len, base, n / 8, dt, out);
  }
}

}  // namespace

Status decode_frame(const Frame& f, const uint8_t* payload, const uint8_t* base_raw, uint8_t* out) {
  const size_t n = f.out_len;
  const size_t w = dtype_size(f.dtype);
  auto corrupt = [&](const char* why) { return Status{Errc::corrupt, std::string("payload does not decode: ") + why}; };
  // base_raw is B, the payload's extents concatenated (DeltaReader reads them).
  if (f.codec == Codec::patch) return decode_patch(f, payload, base_raw, out);
  if ((f.codec == Codec::approx || f.codec == Codec::lowrank_lanes) && !base_raw)
    return corrupt("approx or lowrank_lanes frame without its base range");
  // Delta codecs need the base in the output's dtype.
  thread_local Scratch<uint8_t> conv;
  const uint8_t* base = base_raw;
  if (base_raw && f.base_dtype != f.dtype) {
    if (!convert_dtype(base_raw, f.base_dtype, n / w, f.dtype, conv.get(n)))
      return {Errc::corrupt, std::string("unsupported dtype conversion ") + dtype_name(f.base_dtype) + " -> " +
                                 dtype_name(f.dtype)};
    base = conv.data();
  }
  thread_local Scratch<uint8_t> scratch_buf;
  switch (f.codec) {
    case Codec::store:
      if (f.data_len != n) return corrupt("stored length differs");
      std::memcpy(out, payload, n);
      return Status::Ok();
    case Codec::zstd:
      return zstd_exact(payload, f.data_len, out, n) ? Status::Ok() : corrupt("zstd");
    case Codec::copy_base:
      if (f.data_len != 0) return corrupt("copy_base with a payload");
      std::memcpy(out, base, n);
      return Status::Ok();
    case Codec::planes:
      if (!zstd_exact(payload, f.data_len, scratch_buf.get(n), n)) return corrupt("zstd");
      from_planes(scratch_buf.data(), n, w, out);
      return Status::Ok();
    case Codec::sub_ctx:
      return ctx_decode_any(payload, f.data_len, base, n, f.dtype, out) ? Status::Ok() : corrupt("sub_ctx");
    case Codec::sub_rans:
      return rans::decode(payload, f.data_len, base, n, f.dtype, out) ? Status::Ok() : corrupt("sub_rans");
    case Codec::sub_lanes:
      return lanes::decode(payload, f.data_len, base, n, f.dtype, out) ? Status::Ok() : corrupt("sub_lanes");
    case Codec::approx:
      return decode_approx(payload, f.data_len, base, n, f.dtype, out);
    case Codec::lowrank_lanes:
      return decode_lowrank(payload, f.data_len, base, n, f.dtype, out);
    case Codec::patch:
      break;  // decoded above, from its extents
    case Codec::xor_planes:
      if (!zstd_exact(payload, f.data_len, scratch_buf.get(n), n)) return corrupt("zstd");
      from_planes(scratch_buf.data(), n, w, out);
      for (size_t i = 0; i < n; ++i) out[i] ^= base[i];
      return Status::Ok();
    case Codec::sub_planes:
    case Codec::sub_split: {
      // Rebuild the zigzagged differences into `out`, then add the base in place.
      if (f.codec == Codec::sub_planes) {
        if (!zstd_exact(payload, f.data_len, scratch_buf.get(n), n)) return corrupt("zstd");
        from_planes(scratch_buf.data(), n, w, out);
      } else {
        if (w != 2 || f.data_len < 8) return corrupt("sub_split header");
        uint32_t ch = get_u32(payload), c0 = get_u32(payload + 4);
        if (static_cast<uint64_t>(ch) + c0 + 8 > f.data_len) return corrupt("sub_split stream lengths");
        size_t count = n / 2;
        uint8_t* hi = scratch_buf.get(count * 2);
        uint8_t* lo = hi + count;
        if (!zstd_exact(payload + 8, ch, hi, count)) return corrupt("sub_split high bytes");
        size_t zeros = 0;
        for (size_t i = 0; i < count; ++i) zeros += hi[i] == 0;
        if (!zstd_exact(payload + 8 + ch, c0, lo, zeros)) return corrupt("sub_split low bytes (small)");
        if (!zstd_exact(payload + 8 + ch + c0, f.data_len - 8 - ch - c0, lo + zeros, count - zeros))
          return corrupt("sub_split low bytes (large)");
        const uint8_t* l0 = lo;
        const uint8_t* l1 = lo + zeros;
        for (size_t i = 0; i < count; ++i) {
          uint8_t h = hi[i];
          out[2 * i] = h ? *l1++ : *l0++;
          out[2 * i + 1] = h;
        }
      }
      bool fl = dtype_is_float(f.dtype);
      size_t count = n / w;
      switch (w) {
        case 1: sub_inverse<uint8_t>(base, count, fl, out); break;
        case 2: sub_inverse<uint16_t>(base, count, fl, out); break;
        case 4: sub_inverse<uint32_t>(base, count, fl, out); break;
        default: sub_inverse<uint64_t>(base, count, fl, out); break;
      }
      return Status::Ok();
    }
  }
  return corrupt("unknown codec");
}

// ---- dtype conversion -----------------------------------------------------
namespace {
float bf16_to_f32(uint16_t h) { uint32_t u = uint32_t(h) << 16; float f; std::memcpy(&f, &u, 4); return f; }
uint16_t f32_to_bf16(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}
float f16_to_f32(uint16_t h) { _Float16 x; std::memcpy(&x, &h, 2); return static_cast<float>(x); }
uint16_t f32_to_f16(float f) { _Float16 x = static_cast<_Float16>(f); uint16_t h; std::memcpy(&h, &x, 2); return h; }
double read_as_double(const uint8_t* p, DType d) {
  switch (d) {
    case DType::F64: return load<double>(p);
    case DType::F32: return load<float>(p);
    case DType::F16: return f16_to_f32(load<uint16_t>(p));
    case DType::BF16: return bf16_to_f32(load<uint16_t>(p));
    default: return 0;
  }
}
bool is_conv(DType d) { return d == DType::F64 || d == DType::F32 || d == DType::F16 || d == DType::BF16; }
}  // namespace

bool can_convert_dtype(DType from, DType to) { return is_conv(from) && is_conv(to); }

bool convert_dtype(const uint8_t* src, DType from, size_t n, DType to, uint8_t* dst) {
  if (!can_convert_dtype(from, to)) return false;
  size_t ws = dtype_size(from), wd = dtype_size(to);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* s = src + i * ws;
    uint8_t* d = dst + i * wd;
    switch (to) {
      case DType::F64: store<double>(d, read_as_double(s, from)); break;
      // Narrowing from F64 goes through float; a double rounding that only
      // affects the delta's size, never correctness (both sides use this).
      case DType::F32: store<float>(d, static_cast<float>(read_as_double(s, from))); break;
      case DType::F16: store<uint16_t>(d, f32_to_f16(static_cast<float>(read_as_double(s, from)))); break;
      case DType::BF16: store<uint16_t>(d, f32_to_bf16(static_cast<float>(read_as_double(s, from)))); break;
      default: return false;
    }
  }
  return true;
}

}  // namespace tenpak
