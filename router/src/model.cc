// Router inference and the router file (docs/ROUTER.md, "Router file").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <unistd.h>

#include "tenpak/hash.h"
#include "tenpak/router.h"

namespace tenpak::router {

namespace {

constexpr char kMagic[8] = {'T', 'P', 'R', 'O', 'U', 'T', 'E', 'R'};
constexpr size_t kHeader = 40;  // magic .. meta_len
constexpr uint32_t kMinHashBits = 8, kMaxHashBits = 20, kMaxHidden = 1024;

float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

void put_u32(std::vector<uint8_t>& o, uint32_t v) {
  for (int i = 0; i < 4; ++i) o.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put_f32(std::vector<uint8_t>& o, float f) {
  uint32_t v;
  std::memcpy(&v, &f, 4);
  put_u32(o, v);
}
void put_floats(std::vector<uint8_t>& o, const float* p, size_t n) {
  for (size_t i = 0; i < n; ++i) put_f32(o, p[i]);
}
uint32_t get_u32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24; }
float get_f32(const uint8_t* p) {
  uint32_t v = get_u32(p);
  float f;
  std::memcpy(&f, &v, 4);
  return f;
}

}  // namespace

std::array<float, kNumDense> RouterModel::standardise(const Features& f) const {
  std::array<float, kNumDense> z;
  for (int i = 0; i < kNumDense; ++i) z[i] = (f.dense[i] - dense_mean[i]) / dense_std[i];
  return z;
}

float RouterModel::predict(const Features& f) const {
  const uint32_t H = 1u << hash_bits, D = input_dim();
  auto z = standardise(f);
  if (hidden == 0) {
    float s = b;
    for (auto& [k, v] : f.sparse) s += w[k] * v;
    for (int i = 0; i < kNumDense; ++i) s += w[H + i] * z[i];
    return sigmoid(s);
  }
  float out = b2;
  for (uint32_t j = 0; j < hidden; ++j) {
    const float* row = w.data() + size_t(j) * D;
    float h = b1[j];
    for (auto& [k, v] : f.sparse) h += row[k] * v;
    for (int i = 0; i < kNumDense; ++i) h += row[H + i] * z[i];
    if (h > 0) out += w2[j] * h;
  }
  return sigmoid(out);
}

std::vector<std::pair<uint32_t, float>> RouterModel::top_contributions(const Features& f, size_t k) const {
  const uint32_t H = 1u << hash_bits, D = input_dim();
  auto z = standardise(f);
  std::vector<std::pair<uint32_t, float>> x(f.sparse.begin(), f.sparse.end());
  for (int i = 0; i < kNumDense; ++i) x.emplace_back(H + i, z[i]);
  std::vector<std::pair<uint32_t, float>> c;
  if (hidden == 0) {
    for (auto& [i, v] : x) c.emplace_back(i, w[i] * v);
  } else {
    std::vector<float> grad(x.size(), 0.f);
    for (uint32_t j = 0; j < hidden; ++j) {
      const float* row = w.data() + size_t(j) * D;
      float h = b1[j];
      for (auto& [i, v] : x) h += row[i] * v;
      if (h <= 0) continue;
      for (size_t q = 0; q < x.size(); ++q) grad[q] += w2[j] * row[x[q].first];
    }
    for (size_t q = 0; q < x.size(); ++q) c.emplace_back(x[q].first, grad[q] * x[q].second);
  }
  std::sort(c.begin(), c.end(), [](auto& a, auto& b) { return std::fabs(a.second) > std::fabs(b.second); });
  if (c.size() > k) c.resize(k);
  return c;
}

std::vector<uint8_t> serialize_router(const RouterModel& m) {
  std::vector<uint8_t> o(kMagic, kMagic + 8);
  put_u32(o, kFormatVersion);
  put_u32(o, kFeatureVersion);
  put_u32(o, m.hash_bits);
  put_u32(o, kNumDense);
  put_u32(o, m.hidden == 0 ? 0 : 1);
  put_u32(o, m.hidden);
  put_f32(o, m.p_ref);
  put_u32(o, static_cast<uint32_t>(m.meta.size()));
  o.insert(o.end(), m.meta.begin(), m.meta.end());
  put_floats(o, m.dense_mean.data(), kNumDense);
  put_floats(o, m.dense_std.data(), kNumDense);
  put_floats(o, m.w.data(), m.w.size());
  if (m.hidden == 0) {
    put_f32(o, m.b);
  } else {
    put_floats(o, m.b1.data(), m.b1.size());
    put_floats(o, m.w2.data(), m.w2.size());
    put_f32(o, m.b2);
  }
  Xxh128 h = xxh128(o.data(), o.size());
  o.insert(o.end(), h.begin(), h.end());
  return o;
}

Result<RouterModel> parse_router(const uint8_t* p, size_t n, const std::string& what) {
  auto bad = [&](const std::string& m) { return Status{Errc::corrupt, what + ": not a valid router file: " + m}; };
  if (n < kHeader + 16) return bad("too short (" + std::to_string(n) + " bytes)");
  if (std::memcmp(p, kMagic, 8) != 0) return bad("wrong magic (expected \"TPROUTER\")");
  uint32_t version = get_u32(p + 8), fversion = get_u32(p + 12);
  if (version == 0) return bad("format version 0");
  if (version != kFormatVersion)
    return Status{Errc::unsupported, what + ": router file format version " + std::to_string(version) +
                                         "; this tenpak reads version " + std::to_string(kFormatVersion)};
  // The checksum covers everything else: check it before trusting any size.
  Xxh128 h = xxh128(p, n - 16);
  if (std::memcmp(h.data(), p + n - 16, 16) != 0) return bad("checksum mismatch (xxh3-128 of bytes 0.." + std::to_string(n - 16) + ")");
  if (fversion != kFeatureVersion)
    return Status{Errc::unsupported, what + ": router trained on feature version " + std::to_string(fversion) +
                                         "; this tenpak computes feature version " + std::to_string(kFeatureVersion)};
  RouterModel m;
  m.hash_bits = get_u32(p + 16);
  uint32_t ndense = get_u32(p + 20), kind = get_u32(p + 24);
  m.hidden = get_u32(p + 28);
  m.p_ref = get_f32(p + 32);
  uint32_t meta_len = get_u32(p + 36);
  if (m.hash_bits < kMinHashBits || m.hash_bits > kMaxHashBits) return bad("hash_bits " + std::to_string(m.hash_bits) + " out of range 8..20");
  if (ndense != kNumDense) return bad("dense feature count " + std::to_string(ndense) + ", expected " + std::to_string(kNumDense));
  if (kind > 1 || (kind == 0) != (m.hidden == 0) || m.hidden > kMaxHidden)
    return bad("model kind " + std::to_string(kind) + " with hidden width " + std::to_string(m.hidden));
  if (!(m.p_ref > 0 && m.p_ref < 1)) return bad("reference probability not in (0, 1)");
  const size_t D = m.input_dim();
  size_t floats = 2 * size_t(kNumDense) + (m.hidden == 0 ? D + 1 : size_t(m.hidden) * D + 2 * m.hidden + 1);
  size_t want = kHeader + size_t(meta_len) + 4 * floats + 16;
  if (meta_len > n || want != n)
    return bad("size " + std::to_string(n) + " bytes, the header implies " + std::to_string(want));
  m.meta.assign(reinterpret_cast<const char*>(p + kHeader), meta_len);
  const uint8_t* q = p + kHeader + meta_len;
  auto take = [&](float* dst, size_t k) {
    for (size_t i = 0; i < k; ++i, q += 4) dst[i] = get_f32(q);
  };
  take(m.dense_mean.data(), kNumDense);
  take(m.dense_std.data(), kNumDense);
  if (m.hidden == 0) {
    m.w.resize(D);
    take(m.w.data(), D);
    take(&m.b, 1);
  } else {
    m.w.resize(size_t(m.hidden) * D);
    m.b1.resize(m.hidden);
    m.w2.resize(m.hidden);
    take(m.w.data(), m.w.size());
    take(m.b1.data(), m.hidden);
    take(m.w2.data(), m.hidden);
    take(&m.b2, 1);
  }
  auto finite = [](const std::vector<float>& v) { return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }); };
  for (int i = 0; i < kNumDense; ++i)
    if (!std::isfinite(m.dense_mean[i]) || !(m.dense_std[i] > 0) || !std::isfinite(m.dense_std[i]))
      return bad("dense feature " + std::to_string(i) + " has a non-finite mean or non-positive std");
  if (!finite(m.w) || !finite(m.b1) || !finite(m.w2) || !std::isfinite(m.b) || !std::isfinite(m.b2))
    return bad("non-finite weight");
  return m;
}

Result<RouterModel> load_router(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status{Errc::invalid, path + ": no such router file"};
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status{Errc::io, path + ": cannot open router file"};
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status{Errc::io, path + ": read error"};
  return parse_router(bytes.data(), bytes.size(), path);
}

Status save_router(const RouterModel& m, const std::string& path) {
  auto bytes = serialize_router(m);
  std::string tmp = path + ".tenpak-tmp-" + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return {Errc::io, tmp + ": cannot create: " + std::strerror(errno)};
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    return {err == ENOSPC ? Errc::no_space : Errc::io, path + ": write failed: " + std::strerror(err)};
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    return {Errc::io, path + ": rename failed: " + std::strerror(err)};
  }
  return Status::Ok();
}

}  // namespace tenpak::router
