// tenpak delta build BASE FT -o DIR --lossy METHOD: a LOSSY delta whose
// quality is measured before it is kept (docs/LOSSY.md). `tenpak` hands the
// command here (tools/cmd_delta.cc) because choosing the approximation (SVD)
// and measuring it (the runtime) need libtorch; decoding it does not (codec
// 11, codec/src/approx_codec.cc), so the mount, apply and verify serve the
// result like any other delta.
//
// How a lossy delta is made: the ordinary lossless delta of the pair is
// built first (the template: every file, frame cuts, base ranges); then the
// frames of every approximated tensor (the 2-D weights of the transformer
// blocks; embeddings with --lossy-embeddings) are re-encoded with codec 11,
// each frame's hash is that of its rebuilt bytes and each file's sha256 that
// of the rebuilt file. A tensor whose approximation is not smaller than its
// lossless frames stays lossless. The rebuilt model is then written by
// apply_delta (exactly what the mount serves), loaded by the runtime and
// compared with the true fine-tune on held-out text; the numbers go into
// the index's lossy record (docs/FORMAT.md, "Lossy deltas"), which the
// delta's size counts; the per-tensor detail goes to --report / --json.
#include <torch/torch.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>

#include "cli_util.h"
#include "ml_commands.h"
#include "text_file.h"
#include "train_forward.h"
#include "tenpak/approx_codec.h"
#include "tenpak/delta.h"
#include "tenpak/eval.h"
#include "tenpak/hash.h"
#include "tenpak/llama.h"
#include "tenpak/out_file.h"
#include "tenpak/quantizers.h"
#include "tenpak/safetensors.h"
#include "tenpak/tokenizer.h"

namespace tenpak::ml {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

constexpr int kTargetNotMet = cli::kTargetNotMet;

struct LossyOptions {
  std::string base, ft, out, lossy, eval_text, data_dir, calib_text, report;
  double max_kld = -1, max_ppl_delta = -1;
  bool embeddings = false, json = false, fast = false, as_safetensors = false;
  // BitDelta scale distillation (tune_bitdelta): off with --no-tune.
  bool no_tune = false;
  int tune_steps = 200, tune_batch = 4, tune_ctx = 128;
  double tune_lr = 1e-2;
  std::string tune_loss = "mse";  // "mse": logits (BitDelta's); "kl": KL(P_ft || P) of the next-token distributions
  int realloc = 0;  // gptqmix: rounds of allocating again around the tuned result, then tuning again
  // gptqdelta/gptqmix: steps of quantization-aware distillation of the codes
  // after the scale tuning (qat_codes); 0: off (the default: with the
  // default --tune-loss mse it raised `hub`'s perplexity ratio at 1/16 of
  // fp16 from x1.0080 to x1.0121 while halving its KL; docs/LOSSY.md).
  int qat_steps = 0, qat_batch = 8;
  double qat_lr = 1e-2;
  // --qat-steps' loss: (1 − w)·KL + w·cross-entropy of the calibration text's
  // next tokens (distillation with hard labels); 0: KL (or MSE) alone.
  double qat_label_weight = 0;
  int level = 3;
  unsigned threads = 0;
  int64_t eval_ctx = 256, eval_chunks = 0;
  std::vector<std::string> base_locations;
};

struct Method {
  std::string kind;  // sparse, dare, bitdelta, qdelta, lowrank, gptqdelta, gptqmix
  double p = 0;
  bool rows = false;  // gptqdelta:BITS:row: one scale per row (else one per tensor)
  std::string spelled() const {
    if (kind == "bitdelta") return kind;
    std::ostringstream s;
    s << kind << ":" << p << (rows ? ":row" : "");
    return s.str();
  }
};

Status bad_method(const std::string& s, const std::string& why) {
  return {Errc::invalid, "--lossy '" + s + "': " + why +
                             " (methods: sparse:THRESHOLD, dare:P, bitdelta, qdelta:BITS, lowrank:R, gptqdelta:1|1.58|2|3[:row], "
                             "gptqmix:FRACTION; with --max-kld or "
                             "--max-ppl-delta also auto or a method name alone, to sweep its setting)"};
}

// A number that is all of `s`.
bool parse_number(const std::string& s, double& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  v = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(v);
}

// One method with its setting. `sweep` accepts a bare family name.
Result<Method> parse_method(const std::string& s, bool sweep) {
  const size_t colon = s.find(':');
  Method m;
  m.kind = s.substr(0, colon);
  std::string arg = colon == std::string::npos ? "" : s.substr(colon + 1);
  static const std::set<std::string> kinds = {"sparse", "dare", "bitdelta", "qdelta", "lowrank", "gptqdelta", "gptqmix"};
  if (m.kind == "gptqdelta" && arg.size() > 4 && arg.substr(arg.size() - 4) == ":row") {
    m.rows = true;
    arg = arg.substr(0, arg.size() - 4);
  }
  if (!kinds.count(m.kind)) return bad_method(s, "unknown method '" + m.kind + "'");
  if (m.kind == "bitdelta") {
    if (colon != std::string::npos) return bad_method(s, "bitdelta takes no setting");
    return m;
  }
  if (colon == std::string::npos) {
    if (sweep) return m;
    return bad_method(s, m.kind + " needs a setting after ':'");
  }
  if (!parse_number(arg, m.p)) return bad_method(s, "setting '" + arg + "' is not a number");
  if (m.kind == "sparse" && !(m.p > 0)) return bad_method(s, "THRESHOLD must be > 0");
  if (m.kind == "dare" && !(m.p > 0 && m.p < 1)) return bad_method(s, "P (the fraction dropped) must be in (0, 1)");
  if (m.kind == "qdelta" && !(m.p > 0 && m.p <= 8))
    return bad_method(s, "BITS must be in (0, 8] (average bits per delta element; below 1 keeps fewer directions)");
  if (m.kind == "lowrank" && !(m.p == std::floor(m.p) && m.p >= 1 && m.p <= 4096))
    return bad_method(s, "R must be an integer 1..4096");
  if (m.kind == "gptqdelta" && m.p != 1 && m.p != 1.58 && m.p != 2 && m.p != 3)
    return bad_method(s, "BITS must be 1, 1.58 (ternary: -s, 0, +s), 2 or 3, optionally followed by :row");
  if (m.kind == "gptqmix" && !(m.p > 0 && m.p <= 1))
    return bad_method(s, "FRACTION (of the fine-tune's fp16 size) must be in (0, 1]");
  return m;
}

bool approximable(const std::string& name, const rt::LlamaConfig& cfg, bool embeddings) {
  if (embeddings && (name == "model.embed_tokens.weight" || name == "lm_head.weight")) return true;
  for (int l = 0; l < cfg.num_layers; ++l)
    for (const auto& n : rt::linear_names(cfg, l))
      if (n == name) return true;
  return false;
}

// The change to approximate, float32 [rows, cols].
struct Change {
  std::string name;
  torch::Tensor d;
};

void put_lowrank(ApproxTensor& a, const torch::Tensor& U, const torch::Tensor& V, std::vector<uint8_t> bits) {
  a.method = ApproxMethod::lowrank;
  a.rank = static_cast<uint32_t>(U.size(1));
  auto u = U.to(torch::kFloat32).contiguous(), v = V.to(torch::kFloat32).contiguous();
  a.u.assign(u.data_ptr<float>(), u.data_ptr<float>() + u.numel());
  a.v.assign(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
  a.bits = std::move(bits);
}

// The approximation of one change by `m`; `detail` says what was kept.
// `scales`: BitDelta's tuned scale per tensor name (tune_bitdelta); absent: mean |Δ|.
ApproxTensor approximate(const Change& c, const Method& m, uint64_t seed, json& detail,
                         const std::map<std::string, float>& scales) {
  ApproxTensor a;
  const auto d = c.d.contiguous();
  a.rows = static_cast<uint64_t>(d.size(0));
  a.cols = static_cast<uint64_t>(d.size(1));
  const float* dp = d.data_ptr<float>();
  const uint64_t n = a.rows * a.cols;
  if (m.kind == "sparse" || m.kind == "dare") {
    a.method = ApproxMethod::sparse;
    // DARE: drop each entry with probability p, rescale the kept by 1/(1-p);
    // a fixed seed per tensor makes the build repeatable.
    std::mt19937_64 rng(0x44415245ull ^ seed);
    std::uniform_real_distribution<double> uni(0.0, 1.0);
    const float scale = m.kind == "dare" ? static_cast<float>(1.0 / (1.0 - m.p)) : 1.0f;
    for (uint64_t e = 0; e < n; ++e) {
      const bool keep = m.kind == "sparse" ? std::fabs(dp[e]) > m.p : (uni(rng) >= m.p && dp[e] != 0.0f);
      if (keep) {
        a.pos.push_back(e);
        a.val.push_back(dp[e] * scale);
      }
    }
    detail["kept"] = a.pos.size();
    detail["kept_fraction"] = n ? static_cast<double>(a.pos.size()) / n : 0.0;
  } else if (m.kind == "bitdelta") {
    a.method = ApproxMethod::sign;
    double s = 0;
    for (uint64_t e = 0; e < n; ++e) s += std::fabs(dp[e]);
    a.scale = static_cast<float>(s / static_cast<double>(n));
    detail["scale_mean_abs"] = a.scale;
    if (auto it = scales.find(c.name); it != scales.end()) a.scale = it->second;
    a.negative.resize(n);
    for (uint64_t e = 0; e < n; ++e) a.negative[e] = dp[e] < 0;
    detail["scale"] = a.scale;
  } else {
    // Truncated SVD in float64; each factor carries sqrt(S) so U's columns
    // and V's rows have like magnitudes (one quantization scale each).
    auto [U, S, Vh] = torch::linalg_svd(d.to(torch::kFloat64), false);
    const int64_t k = S.size(0);
    std::vector<uint8_t> bits;
    int64_t r = 0;
    if (m.kind == "lowrank") {
      r = std::min<int64_t>(k, static_cast<int64_t>(m.p));
      bits.assign(r, 16);  // float16 factors
    } else {
      // qdelta:BITS, mixed precision over singular directions as Delta-CoMe:
      // 8 bits for the top directions, 3 for the next, 2 for the rest, until
      // the budget of BITS bits per delta element is spent.
      const double budget = m.p * static_cast<double>(n);
      double used = 0;
      const int64_t r8 = std::max<int64_t>(1, k / 32), r3 = std::max<int64_t>(r8 + 1, k / 4);
      for (int64_t j = 0; j < k; ++j) {
        const unsigned b = j < r8 ? 8 : (j < r3 ? 3 : 2);
        const double cost = static_cast<double>(a.rows + a.cols) * b + 64;
        if (used + cost > budget) break;
        used += cost;
        bits.push_back(static_cast<uint8_t>(b));
      }
      r = static_cast<int64_t>(bits.size());
      if (r == 0) {
        bits.push_back(2);
        r = 1;
      }
    }
    auto sq = S.slice(0, 0, r).sqrt();
    auto Uf = U.slice(1, 0, r) * sq.unsqueeze(0);
    auto Vf = Vh.slice(0, 0, r) * sq.unsqueeze(1);
    put_lowrank(a, Uf, Vf, bits);
    detail["rank"] = r;
    detail["bits"] = bits;
    const double tot = S.pow(2).sum().item<double>();
    detail["energy_kept"] = tot > 0 ? S.slice(0, 0, r).pow(2).sum().item<double>() / tot : 1.0;
  }
  return a;
}

// The lossless delta of the pair and what the lossy writer needs of it.
struct Template {
  std::string dir, base_dir;
  Manifest m;
  std::string dat;
  uint64_t bytes = 0;  // index + data
  // Per output file: its safetensors header (files that are not safetensors: absent).
  std::map<uint32_t, SafetensorsHeader> headers;
};

Result<std::string> read_range(const std::string& path, uint64_t off, uint64_t len) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status{Errc::io, path + ": cannot open"};
  std::string s(len, '\0');
  f.seekg(static_cast<std::streamoff>(off));
  f.read(s.data(), static_cast<std::streamsize>(len));
  if (!f) return Status{Errc::io, path + ": short read"};
  return s;
}

// The frames of tensor `ti` of output file `of` that codec 11 may replace:
// all inside the tensor, of its dtype, each with a base range. Empty when
// the tensor cannot be approximated (unchanged, other dtype, no base).
struct TensorFrames {
  std::vector<uint32_t> frames;
  uint64_t lossless = 0;  // their lossless payload bytes
  size_t w = 0;           // element size
};
TensorFrames tensor_frames(const Template& t, const OutFile& of, const TensorInfo& ti) {
  TensorFrames r;
  const DType dt = ti.dtype;
  r.w = dtype_size(dt);
  bool ok = dt == DType::F32 || dt == DType::F16 || dt == DType::BF16;
  for (uint32_t k = of.first_frame; ok && k < of.first_frame + of.frame_count; ++k) {
    const Frame& f = t.m.frames[k];
    if (f.out_offset + f.out_len <= ti.begin || f.out_offset >= ti.end) continue;
    if (f.out_offset < ti.begin || f.out_offset + f.out_len > ti.end || f.dtype != dt) ok = false;
    if (f.codec == Codec::copy_base) ok = false;  // unchanged: nothing to approximate
    if (!codec_needs_base(f.codec) || f.base_file == kNoBase) ok = false;
    r.frames.push_back(k);
    r.lossless += f.data_len;
  }
  if (!ok) r.frames.clear();
  return r;
}

// zstd level of a codec-11 frame: grouped codes get the strongest (their
// entropy coding is the point; frames are small), the rest the build's.
int approx_level(const ApproxTensor& a, int level) { return a.method == ApproxMethod::grouped ? 19 : level; }

// One codec-11 frame of `a`; grouped codes are written both as sub-method 3
// (packed, zstd) and 4 (range-coded, docs/FORMAT.md) and the smaller kept:
// on small tensors zstd's frame and Huffman table are a large part of the
// payload, on large ones the adaptive coder is still closer to the codes'
// entropy (ternary and 3-bit codes do not fill whole bytes).
Result<std::string> encode_approx_best(const ApproxTensor& a, uint64_t first, uint64_t count, int level) {
  auto p = encode_approx_frame(a, first, count, approx_level(a, level));
  if (!p.ok() || a.method != ApproxMethod::grouped) return p;
  ApproxTensor rc = a;
  rc.method = ApproxMethod::grouped_rc;
  auto q = encode_approx_frame(rc, first, count, 0);
  if (!q.ok()) return q;
  return q->size() < p->size() ? q : p;
}

// Bytes of `a`'s codec-11 frames over the tensor's frames.
Result<uint64_t> approx_bytes(const Template& t, const TensorFrames& tf, const TensorInfo& ti, const ApproxTensor& a,
                              int level) {
  uint64_t n = 0;
  for (uint32_t k : tf.frames) {
    const Frame& f = t.m.frames[k];
    auto p = encode_approx_best(a, (f.out_offset - ti.begin) / tf.w, f.out_len / tf.w, level);
    if (!p.ok()) return p.status();
    n += p->size();
  }
  return n;
}

struct Candidate {
  Method m;
  // gptqdelta / gptqmix: each tensor's payload, chosen before writing, and what was chosen.
  std::map<std::string, ApproxTensor> pre;
  std::map<std::string, json> pre_detail;
  std::map<std::string, torch::Tensor> deq;  // their d (for the scale tuning)
  json gptq;
  std::string stage;     // its delta directory (temporary name until chosen)
  std::string record;    // the index's lossy record (provisional numbers until measured)
  double slack = 0;      // gptqmix: bytes the allocation keeps below the budget (after an overshoot)
  uint64_t bytes = 0;    // index (with its record) + data
  json tensors = json::array();
  json quality;          // filled when measured
  std::map<std::string, float> scales;  // bitdelta: tuned scales (empty: mean |Δ|)
  bool measured = false;
  double kl = 0, ppl_delta_pct = 0;
};

// A lossy delta's index is written compact (docs/FORMAT.md, "Compact
// index"): at a budget of 1/16 of fp16 the 64-byte frame records of a small
// model are a tenth of the delta. Readers from before the compact index
// refuse it by its flags, as they refuse codec 11 frames they do not know.
Result<std::string> lossy_index(const Manifest& m) { return serialize_manifest_compact(m, true); }

// Writes `cand.stage` (tenpak.idx + tenpak.dat) from the template with the
// approximated tensors re-encoded as codec 11.
Status write_candidate(const Template& t, const std::vector<Change>& changes, Candidate& cand, int level) {
  const std::string base_dir = t.base_dir;
  Manifest nm = t.m;
  nm.lossy_record = cand.record;
  std::map<uint32_t, std::string> repl;  // frame index -> codec-11 payload
  std::set<uint32_t> changed_files;
  std::map<std::string, const Change*> by_name;
  for (auto& c : changes) by_name[c.name] = &c;
  uint64_t seed = 0;
  for (auto& [fi, h] : t.headers) {
    const OutFile& of = t.m.out_files[fi];
    for (const auto& ti : h.tensors) {
      auto it = by_name.find(ti.name);
      if (it == by_name.end()) continue;
      ++seed;
      json detail = {{"name", ti.name}, {"file", of.name}};
      const TensorFrames tf = tensor_frames(t, of, ti);
      const size_t w = tf.w;
      const auto& frames = tf.frames;
      const uint64_t lossless = tf.lossless;
      if (frames.empty()) continue;
      ApproxTensor a;
      if (auto pt = cand.pre.find(ti.name); pt != cand.pre.end()) {
        a = pt->second;
        if (auto dt2 = cand.pre_detail.find(ti.name); dt2 != cand.pre_detail.end())
          for (auto& [k2, v2] : dt2->second.items()) detail[k2] = v2;
      } else {
        a = approximate(*it->second, cand.m, seed, detail, cand.scales);
      }
      std::map<uint32_t, std::string> mine;
      uint64_t lossy = 0;
      for (uint32_t k : frames) {
        const Frame& f = t.m.frames[k];
        auto p = encode_approx_best(a, (f.out_offset - ti.begin) / w, f.out_len / w, level);
        if (!p.ok()) return p.status();
        if (p->size() > kMaxFramePayload)
          return {Errc::unsupported, ti.name + ": a codec-11 frame payload exceeds " + std::to_string(kMaxFramePayload) +
                                         " bytes (low-rank V repeated per frame; use a smaller rank)"};
        lossy += p->size();
        mine[k] = std::move(*p);
      }
      detail["lossless_bytes"] = lossless;
      detail["lossy_bytes"] = lossy;
      if (lossy >= lossless) {
        detail["stored"] = "lossless";  // the approximation is not smaller: keep it exact
      } else {
        detail["stored"] = "approx";
        for (auto& [k, p] : mine) repl[k] = std::move(p);
        changed_files.insert(fi);
      }
      cand.tensors.push_back(detail);
    }
  }
  // New data file, frame by frame; replaced frames decoded for their hash.
  std::string dat;
  std::map<uint32_t, std::string> base_cache;
  for (uint32_t k = 0; k < nm.frames.size(); ++k) {
    Frame& f = nm.frames[k];
    auto it = repl.find(k);
    if (it == repl.end()) {
      const uint64_t off = f.data_offset;
      f.data_offset = dat.size();
      dat.append(t.dat, off, f.data_len);
      continue;
    }
    f.codec = Codec::approx;
    f.data_offset = dat.size();
    f.data_len = static_cast<uint32_t>(it->second.size());
    dat += it->second;
    const std::string bpath = (fs::path(base_dir) / t.m.base_files[f.base_file].name).string();
    auto braw = read_range(bpath, f.base_offset, f.base_len);
    if (!braw.ok()) return braw.status();
    std::vector<uint8_t> out(f.out_len);
    Status st = decode_frame(f, reinterpret_cast<const uint8_t*>(it->second.data()),
                             reinterpret_cast<const uint8_t*>(braw->data()), out.data());
    if (!st.ok()) return {Errc::corrupt, "codec 11 frame " + std::to_string(k) + " does not decode back: " + st.message()};
    f.hash = xxh128(out.data(), out.size());
  }
  std::error_code ec;
  fs::create_directories(cand.stage, ec);
  if (ec) return {Errc::io, cand.stage + ": cannot create: " + ec.message()};
  TP_RETURN_IF_ERROR(write_file_atomic((fs::path(cand.stage) / kDataFile).string(), {{dat.data(), dat.size()}}));
  // Rebuilt files' sha256: read through a reader of the new delta.
  auto idx = lossy_index(nm);
  if (!idx.ok()) return idx.status();
  TP_RETURN_IF_ERROR(write_file_atomic((fs::path(cand.stage) / kIndexFile).string(), {{idx->data(), idx->size()}}));
  {
    auto r = open_delta_dir(cand.stage);
    if (!r.ok()) return r.status();
    TP_RETURN_IF_ERROR(attach_local_base(**r, base_dir, false));
    for (uint32_t fi : changed_files) {
      const OutFile& of = nm.out_files[fi];
      Sha256Hasher h;
      for (uint32_t k = of.first_frame; k < of.first_frame + of.frame_count; ++k) {
        std::vector<uint8_t> buf(nm.frames[k].out_len);
        TP_RETURN_IF_ERROR((*r)->read_frame(k, buf.data()));
        h.update(buf.data(), buf.size());
      }
      nm.out_files[fi].sha256 = h.finish();
    }
  }
  idx = lossy_index(nm);
  if (!idx.ok()) return idx.status();
  TP_RETURN_IF_ERROR(write_file_atomic((fs::path(cand.stage) / kIndexFile).string(), {{idx->data(), idx->size()}}));
  cand.bytes = idx->size() + dat.size();
  return Status::Ok();
}

// Frames coded without a base whose bytes equal the same range of the base
// file of the same name become copy_base (no payload). The lossless builder
// codes bytes outside tensors (a safetensors header) without a base; a
// fine-tune's header is often the base's byte for byte (same names, shapes
// and offsets): 739 bytes of zstd on stories260K, 2% of a 1/16-of-fp16
// budget. The rebuilt bytes and their hash are the same; the reported
// lossless delta (t.bytes) stays the one `delta build` writes.
Status copy_identical_ranges(Template& t, const std::string& ft_dir) {
  std::map<std::string, uint32_t> base_of;
  for (uint32_t i = 0; i < t.m.base_files.size(); ++i) base_of[t.m.base_files[i].name] = i;
  bool changed = false;
  for (Frame& f : t.m.frames) {
    if (f.base_file != kNoBase || f.codec == Codec::copy_base || f.dtype != DType::U8 || f.data_len == 0) continue;
    const OutFile& of = t.m.out_files[f.file];
    auto it = base_of.find(of.name);
    if (it == base_of.end() || t.m.base_files[it->second].size < f.out_offset + f.out_len) continue;
    auto b = read_range((fs::path(t.base_dir) / of.name).string(), f.out_offset, f.out_len);
    auto o = read_range((fs::path(ft_dir) / of.name).string(), f.out_offset, f.out_len);
    if (!b.ok()) return b.status();
    if (!o.ok()) return o.status();
    if (*b != *o || xxh128(o->data(), o->size()) != f.hash) continue;
    f.codec = Codec::copy_base;
    f.base_dtype = DType::U8;
    f.base_file = it->second;
    f.base_offset = f.out_offset;
    f.base_len = f.out_len;
    f.data_len = 0;
    changed = true;
  }
  if (!changed) return Status::Ok();
  std::string dat;
  for (Frame& f : t.m.frames) {
    const uint64_t off = f.data_offset;
    f.data_offset = dat.size();
    dat.append(t.dat, off, f.data_len);
  }
  t.dat = std::move(dat);
  return Status::Ok();
}

struct EvalSet {
  std::vector<int64_t> ids;
  std::string path;  // as given: read from, named in messages
  std::string file, sha256, part;  // as recorded: file is recorded_name(path)
  std::string text;  // eval_set's only: calib_set refuses a calibration text overlapping it
};

// Rebuilds the candidate with apply_delta (what the mount serves), loads it
// with the runtime and compares it with the true fine-tune.
Status measure(const Template& t, Candidate& c, const rt::Model& ft, const rt::Model& base, const EvalSet& ev,
               const LossyOptions& o) {
  const std::string rebuilt = c.stage + ".rebuilt";
  std::error_code ec;
  fs::remove_all(rebuilt, ec);
  auto r = open_delta_dir(c.stage);
  if (!r.ok()) return r.status();
  TP_RETURN_IF_ERROR(attach_local_base(**r, t.base_dir, true));
  ApplyOptions ao;
  ao.threads = 1;
  auto n = apply_delta(**r, rebuilt, ao);
  if (!n.ok()) return n.status();
  auto model = rt::load_model_dir(rebuilt);
  fs::remove_all(rebuilt, ec);
  if (!model.ok()) return {model.status().code(), "the rebuilt model does not load: " + model.status().message()};
  rt::EvalOptions eo;
  eo.ctx = o.eval_ctx;
  eo.chunks = o.eval_chunks;
  auto q = rt::evaluate_quality(*model, ev.ids, eo, &ft);
  if (!q.ok()) return q.status();
  // Relative error of the approximated weights: ||rebuilt - ft|| / ||ft - base||.
  double num = 0, den = 0;
  for (auto& jt : c.tensors) {
    const std::string name = jt["name"];
    auto diff = (model->w.at(name) - ft.w.at(name)).to(torch::kFloat64);
    auto chg = (ft.w.at(name) - base.w.at(name)).to(torch::kFloat64);
    const double a = diff.pow(2).sum().item<double>(), b = chg.pow(2).sum().item<double>();
    jt["rel_error"] = b > 0 ? std::sqrt(a / b) : 0.0;
    num += a;
    den += b;
  }
  c.kl = q->kl_mean;
  c.ppl_delta_pct = (q->perplexity / q->ref_perplexity - 1.0) * 100.0;
  c.quality = {{"eval_text", ev.file},
               {"eval_part", ev.part},
               {"eval_text_sha256", ev.sha256},
               {"ctx", q->ctx},
               {"windows", q->windows},
               {"scored_tokens", q->scored_tokens},
               {"ppl_finetune", q->ref_perplexity},
               {"ppl_rebuilt", q->perplexity},
               {"ppl_ratio", q->perplexity / q->ref_perplexity},
               {"ppl_delta_pct", c.ppl_delta_pct},
               {"kl_mean", q->kl_mean},
               {"kl_p99", q->kl_p99},
               {"kl_max", q->kl_max},
               {"top1_agreement", q->top1_agreement},
               {"weights_rel_error", den > 0 ? std::sqrt(num / den) : 0.0}};
  c.measured = true;
  return Status::Ok();
}

bool meets(const Candidate& c, const LossyOptions& o) {
  if (o.max_kld >= 0 && !(c.kl <= o.max_kld)) return false;
  if (o.max_ppl_delta >= 0 && !(c.ppl_delta_pct <= o.max_ppl_delta)) return false;
  return true;
}

// The settings tried for a family, smallest delta first (sparse: thresholds
// keeping 0.5% .. 30% of the changed entries, from the changes' magnitudes).
std::vector<Method> sweep(const std::string& kind, const std::vector<Change>& changes) {
  std::vector<Method> v;
  if (kind == "lowrank")
    for (double r : {1, 2, 4, 8, 16, 32}) v.push_back({kind, r});
  if (kind == "qdelta")
    for (double b : {0.25, 0.5, 1.0, 2.0, 3.0, 4.0}) v.push_back({kind, b});
  if (kind == "bitdelta") v.push_back({kind, 0});
  if (kind == "gptqdelta")
    for (double b : {1.0, 1.58, 2.0, 3.0}) v.push_back({kind, b});
  if (kind == "gptqmix")
    for (double f : {0.03125, 0.0625, 0.125}) v.push_back({kind, f});
  if (kind == "dare")
    for (double p : {0.99, 0.95, 0.9, 0.7}) v.push_back({kind, p});
  if (kind == "sparse" && !changes.empty()) {
    std::vector<torch::Tensor> all;
    for (auto& c : changes) all.push_back(c.d.abs().flatten());
    auto a = std::get<0>(torch::cat(all).sort(0, true));
    for (double keep : {0.005, 0.01, 0.03, 0.1, 0.3}) {
      const int64_t i = std::min<int64_t>(a.numel() - 1, static_cast<int64_t>(keep * a.numel()));
      const double thr = a[i].item<double>();
      if (thr > 0) v.push_back({kind, thr});
    }
  }
  return v;
}

// The name a text is recorded under (lossy record, report): its file name
// alone; its sha256 beside it says which text it was. So one file gives the
// same record wherever it lies and however it was named (--eval-text,
// --data-dir, $TENPAK_SHARED, the working directory), and a published delta
// carries no directory of the machine that built it. gptqmix counts the
// record in its budget, so a path of another length ("/work/main/../shared"
// against "/work/shared") moved its allocation and gave a different delta
// from the same inputs (issue 20: 32,396 against 32,459 B). Refused when not
// UTF-8 (the record is JSON text).
Result<std::string> recorded_name(const std::string& p) {
  std::string s = fs::path(p).lexically_normal().filename().string();
  try {
    (void)json(s).dump();
  } catch (const json::type_error&) {
    return Status{Errc::invalid, p + ": this file name is not valid UTF-8, and the delta's lossy record stores it as "
                                     "JSON text; rename the file"};
  }
  return s;
}

Result<EvalSet> eval_set(const LossyOptions& o) {
  EvalSet ev;
  std::string text;
  if (!o.eval_text.empty()) {
    auto t = read_text_file(o.eval_text);
    if (!t.ok()) return t.status();
    ev.path = o.eval_text;
    ev.part = "whole file";
    text = *t;
  } else {
    std::string dd = o.data_dir;
    if (dd.empty()) {
      const char* env = std::getenv("TENPAK_SHARED");
      dd = env && *env ? (fs::path(env) / "data").string() : "../shared/data";
    }
    ev.path = (fs::path(dd) / "text/tinyshakespeare.txt").string();
    auto t = read_text_file(ev.path);
    if (!t.ok())
      return Status{Errc::invalid, ev.path + ": the default held-out text is not there (" + t.status().message() +
                                       "); give --eval-text FILE or --data-dir"};
    // As tenpak fixture stories-ft: the held-out last 10%.
    const size_t cut = held_out_cut(*t);
    text = t->substr(cut);
    ev.part = "bytes " + std::to_string(cut) + ".." + std::to_string(t->size()) + " (held-out last 10%)";
  }
  auto rp = recorded_name(ev.path);
  if (!rp.ok()) return rp.status();
  ev.file = *rp;
  ev.sha256 = hex(sha256(text.data(), text.size()));
  auto tok = rt::Tokenizer::load(o.ft);
  if (!tok.ok())
    return Status{tok.status().code(), o.ft + ": no tokenizer the runtime reads (" + tok.status().message() +
                                           "); lossy deltas are measured on text"};
  ev.ids = tok->encode(text, true);
  ev.text = std::move(text);
  return ev;
}

// The calibration text of BitDelta's scale tuning: --calib-text FILE whole,
// else the part of TinyShakespeare `tenpak fixture stories-ft` trains on
// (before the held-out cut), when the default held-out text is the one
// measured on. Never the text the quality is measured on: a calibration
// text equal to it is refused. ids empty: none available (no tuning).
Result<EvalSet> calib_set(const LossyOptions& o, const EvalSet& ev) {
  EvalSet cs;
  std::string text;
  if (!o.calib_text.empty()) {
    auto t = read_text_file(o.calib_text);
    if (!t.ok()) return t.status();
    cs.path = o.calib_text;
    auto rp = recorded_name(cs.path);
    if (!rp.ok()) return rp.status();
    cs.file = *rp;
    cs.part = "whole file";
    text = *t;
  } else if (o.eval_text.empty()) {
    cs.path = ev.path;
    cs.file = ev.file;
    auto t = read_text_file(ev.path);
    if (!t.ok()) return t.status();
    const size_t cut = held_out_cut(*t);
    text = t->substr(0, cut);
    cs.part = "bytes 0.." + std::to_string(cut) + " (the first 90%, before the held-out part)";
  } else {
    return cs;  // --eval-text without --calib-text: nothing known to be disjoint from it
  }
  cs.sha256 = hex(sha256(text.data(), text.size()));
  if (cs.sha256 == ev.sha256)
    return Status{Errc::invalid, cs.path + ": the calibration text is the text the quality is measured on; give "
                                           "another --calib-text (or --no-tune)"};
  // A text holding the evaluation text (the whole of TinyShakespeare against
  // its held-out 10%), or held in it, would train the scales and the codes
  // (--qat-label-weight: on its very next tokens) on what is measured.
  auto holds = [](const std::string& hay, const std::string& needle) {
    return !needle.empty() && hay.size() >= needle.size() &&
           std::search(hay.begin(), hay.end(), std::boyer_moore_horspool_searcher(needle.begin(), needle.end())) !=
               hay.end();
  };
  if (holds(text, ev.text) || holds(ev.text, text))
    return Status{Errc::invalid, cs.path + ": the calibration text " +
                                     (text.size() >= ev.text.size() ? "contains" : "is part of") +
                                     " the text the quality is measured on (" + ev.path + ", " + ev.part +
                                     "); give a calibration text disjoint from it (or --no-tune)"};
  auto tok = rt::Tokenizer::load(o.ft);
  if (!tok.ok()) return tok.status();
  cs.ids = tok->encode(text, true);
  return cs;
}

// What the scale tuning and the QAT (--qat-steps) train against: the
// fine-tune's logits (the teacher) on windows of `ctx` tokens of the
// calibration text, drawn by an rng seeded by the caller (each step its own
// seed, so that what one draws does not depend on the other). begin() checks
// that the training forward still matches rt::forward, then draws the probe:
// windows fixed for the whole run, drawn first, on which the fit is measured.
// The text must hold at least ctx + 2 tokens (tune_scales refuses shorter;
// qat_codes runs only after it). With labels, begin(n, true) keeps the probe
// windows' next tokens too and windows_next(n) draws ctx + 1 tokens per
// window: the rng draws the same starts either way.
struct Distill {
  Distill(const rt::Model& ft, const EvalSet& cs, int64_t ctx, uint64_t seed)
      : ft(ft), ctx(ctx), ids(torch::tensor(cs.ids, torch::kInt64)), rng(seed),
        start(0, static_cast<int64_t>(cs.ids.size()) - ctx - 1) {}
  Status begin(int probe_n, bool labels = false) {
    const double diff = train_forward_difference(teacher, ft, ids.slice(0, 0, ctx).unsqueeze(0));
    if (!(diff <= 1e-4))
      return {Errc::mismatch, "the tuning forward differs from rt::forward by " + std::to_string(diff) +
                                  " (max |logit|); the runtime's model changed"};
    if (labels) {
      const auto w = windows_next(probe_n);
      probe = w.slice(1, 0, ctx);
      probe_labels = w.slice(1, 1, ctx + 1);
    } else {
      probe = windows(probe_n);
    }
    probe_teacher = target(probe);
    return Status::Ok();
  }
  torch::Tensor windows(int n) { return draw(n, ctx); }
  // [n, ctx + 1]: a window and the token after it (start <= size - ctx - 1).
  torch::Tensor windows_next(int n) { return draw(n, ctx + 1); }
  torch::Tensor draw(int n, int64_t len) {
    std::vector<torch::Tensor> rows;
    for (int b = 0; b < n; ++b) rows.push_back(ids.slice(0, start(rng)).slice(0, 0, len));
    return torch::stack(rows);
  }
  torch::Tensor target(const torch::Tensor& x) {
    torch::NoGradGuard ng;
    return teacher(x);
  }

  const rt::Model& ft;
  const int64_t ctx;
  TrainForward teacher{ft.cfg, [m = &ft](const std::string& n) { return m->w.at(n); }};
  torch::Tensor ids;
  std::mt19937_64 rng;
  std::uniform_int_distribution<int64_t> start;
  torch::Tensor probe, probe_teacher, probe_labels;
};

// --tune-loss: mean KL(P_ft || P) per token (what the quality is measured
// by), or the logits' mean squared error.
torch::Tensor distill_loss(bool kl, const torch::Tensor& logits, const torch::Tensor& target) {
  if (!kl) return torch::mse_loss(logits, target);
  const auto lp = torch::log_softmax(target, -1);
  return (lp.exp() * (lp - torch::log_softmax(logits, -1))).sum(-1).mean();
}

// BitDelta's scale distillation (Liu et al. 2024, step 2): with every sign
// and every other weight frozen (approximated matrices = base + α·sign(Δ),
// the rest the fine-tune's), train one scale α per matrix so that the
// model's logits match the fine-tune's (mean squared error) on windows of
// the calibration text, Adam. The scales start at mean |Δ| and are trained
// as multipliers of it. Deterministic: one torch thread, seeded windows.
// `report` gets the text, steps and the logit MSE on fixed calibration
// windows before and after. The same step tunes the GPTQ methods' scales
// (tune_scales: matrix = base + α·D with D the dequantized codes at their
// first scales, α starting at 1, every scale of the matrix multiplied by α).
Status tune_scales(const rt::Model& base, const rt::Model& ft, const std::vector<Change>& changes,
                   const std::vector<torch::Tensor>& sign, const std::vector<double>& init, const EvalSet& cs,
                   const LossyOptions& o, const char* what, std::vector<double>& scales, json& report);

Status tune_bitdelta(const rt::Model& base, const rt::Model& ft, const std::vector<Change>& changes, const EvalSet& cs,
                     const LossyOptions& o, std::map<std::string, float>& scales, json& report) {
  std::vector<torch::Tensor> sign;
  std::vector<double> init, out;
  for (size_t i = 0; i < changes.size(); ++i) {
    sign.push_back(torch::where(changes[i].d < 0, -1.0f, 1.0f).to(torch::kFloat32));
    init.push_back(changes[i].d.abs().mean().item<double>());
  }
  TP_RETURN_IF_ERROR(tune_scales(base, ft, changes, sign, init, cs, o, "bitdelta", out, report));
  for (size_t i = 0; i < changes.size(); ++i) scales[changes[i].name] = static_cast<float>(out[i]);
  return Status::Ok();
}

Status tune_scales(const rt::Model& base, const rt::Model& ft, const std::vector<Change>& changes,
                   const std::vector<torch::Tensor>& sign, const std::vector<double>& init, const EvalSet& cs,
                   const LossyOptions& o, const char* what, std::vector<double>& scales, json& report) {
  const int64_t ctx = o.tune_ctx;
  if (static_cast<int64_t>(cs.ids.size()) < ctx + 2)
    return {Errc::invalid, cs.path + ": the calibration text is too short for windows of " + std::to_string(ctx)};
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < changes.size(); ++i) index[changes[i].name] = i;
  auto init_t = torch::tensor(init, torch::kFloat64).to(torch::kFloat32);
  auto mult = torch::ones({static_cast<int64_t>(changes.size())}, torch::kFloat32);
  mult.set_requires_grad(true);
  auto student_w = [&](const std::string& n) -> torch::Tensor {
    auto it = index.find(n);
    if (it == index.end()) return ft.w.at(n);
    const int64_t i = static_cast<int64_t>(it->second);
    return base.w.at(n) + (mult[i] * init_t[i]) * sign[it->second];
  };
  TrainForward student{ft.cfg, student_w};
  Distill d(ft, cs, ctx, 0x42495444ull);
  TP_RETURN_IF_ERROR(d.begin(8));
  auto probe_mse = [&] {
    torch::NoGradGuard ng;
    return torch::mse_loss(student(d.probe), d.probe_teacher).item<double>();
  };
  const double before = probe_mse();
  torch::optim::Adam opt({mult}, torch::optim::AdamOptions(o.tune_lr));
  cli::ProgressBar bar(std::string("tune ") + what);
  for (int step = 0; step < o.tune_steps; ++step) {
    auto x = d.windows(o.tune_batch);
    const auto target = d.target(x);
    auto loss = distill_loss(o.tune_loss == "kl", student(x), target);
    opt.zero_grad();
    loss.backward();
    opt.step();
    {
      torch::NoGradGuard ng;
      mult.clamp_(0.0, 8.0);  // a scale stays a magnitude
    }
    bar.update(step + 1, o.tune_steps);
  }
  bar.finish();
  const double after = probe_mse();
  auto m = mult.detach();
  scales.assign(changes.size(), 0.0);
  for (size_t i = 0; i < changes.size(); ++i) scales[i] = m[static_cast<int64_t>(i)].item<double>() * init[i];
  report = {{"calib_text", cs.file},        {"calib_part", cs.part},  {"calib_text_sha256", cs.sha256},
            {"steps", o.tune_steps},        {"batch", o.tune_batch},  {"ctx", ctx},
            {"lr", o.tune_lr},
            {"objective", o.tune_loss == "kl" ? "mean KL(P_finetune || P) per token" : "logit MSE against the fine-tune"},
            {"logit_mse_before", before},   {"logit_mse_after", after},
            {"scale_multiplier_min", m.min().item<double>()}, {"scale_multiplier_max", m.max().item<double>()}};
  if (!o.json)
    std::fprintf(stderr, "  %s scales tuned on %s (%s): logit MSE %.4g -> %.4g (%d steps)\n", what, cs.path.c_str(),
                 cs.part.c_str(), before, after, o.tune_steps);
  return Status::Ok();
}

// ---- GPTQ on the change: gptqdelta:BITS[:row] and gptqmix:FRACTION ----
//
// Δ = W_ft − W_base of every approximated matrix is quantized by quant/'s
// gptq_quantize on a fixed grid (GptqOptions::zero2, fixed_scale): codes on
// scale × (q − zero2/2), the scale mult × rms(Δ) of the tensor (or of each
// row with :row), rounded to float16 as codec 11's grouped sub-method stores
// it. H = X^T X of the linear's inputs in the FINE-TUNED model on
// calibration windows (never the evaluation text), so each column's rounding
// error is carried to the columns not yet quantized where the inputs make it
// cheapest (GPTQ). Per tensor the multiplier is chosen from a few candidates
// by GPTQ's objective tr((Δ − Q) H (Δ − Q)^T), and round-to-nearest on the
// same grid (GPTQ with H = I) is a candidate too, so the kept result's
// objective is never above round-to-nearest's.

struct DeltaGrid {
  std::string name;  // as the method spells its bits: 1, 1.58, 2, 3
  int bits = 1, zero2 = 1;
  std::vector<double> mults;  // scale candidates, multiples of rms(Δ)
};

// The grids: 1 bit ±s/2; ternary {−s, 0, +s} (2-bit codes, 3 unused, zstd
// takes them to their entropy); 2 and 3 bits without a zero level. The
// multipliers bracket the Gaussian's Lloyd-Max levels (1 bit: ±0.80σ;
// ternary: ±1.22σ; 2 bits: ±0.45σ, ±1.51σ; 3 bits: step 0.59σ).
DeltaGrid delta_grid(double b) {
  if (b == 1) return {"1", 1, 1, {1.2, 1.4, 1.6, 1.8, 2.0}};
  if (b == 1.58) return {"1.58", 2, 2, {0.9, 1.05, 1.2, 1.35, 1.5}};
  if (b == 2) return {"2", 2, 3, {0.7, 0.85, 1.0, 1.15, 1.3}};
  return {"3", 3, 7, {0.4, 0.5, 0.6, 0.7, 0.8}};
}

struct DeltaQuant {
  ApproxTensor a;      // the grouped payload
  torch::Tensor deq;   // float32 [rows, cols]: exactly the decoder's d
  double objective = 0, rtn_objective = 0, mult = 0;
  bool gptq = true;    // false: round to nearest had the lower objective
};

// Smallest normal float16: a scale stays a normal number.
constexpr double kMinScale = 6.103515625e-05;

DeltaQuant quantize_delta(const torch::Tensor& d0, const torch::Tensor& H, const DeltaGrid& g, bool rows) {
  const auto d = d0.to(torch::kFloat).contiguous();
  const auto rms = rows ? d.pow(2).mean(1, true).sqrt() : d.pow(2).mean().sqrt().reshape({1, 1});
  const auto eye = torch::eye(d.size(1), torch::kFloat);
  DeltaQuant best;
  bool have = false, have_rtn = false;
  for (double mult : g.mults) {
    auto sc = (rms * mult).clamp_min(kMinScale).to(torch::kHalf).to(torch::kFloat);
    quant::GptqOptions o;
    o.bits = g.bits;
    o.zero2 = g.zero2;
    o.fixed_scale = sc;
    for (bool gptq : {true, false}) {
      auto q = quant::gptq_quantize(d, gptq ? H : eye, o);
      const double obj = quant::gptq_objective(d, q.deq, H);
      if (!gptq && (!have_rtn || obj < best.rtn_objective)) {
        have_rtn = true;
        best.rtn_objective = obj;
      }
      if (have && !(obj < best.objective)) continue;
      have = true;
      best.objective = obj;
      best.mult = mult;
      best.gptq = gptq;
      best.deq = q.deq;
      ApproxTensor& a = best.a;
      a = ApproxTensor{};
      a.method = ApproxMethod::grouped;
      a.rows = static_cast<uint64_t>(d.size(0));
      a.cols = static_cast<uint64_t>(d.size(1));
      a.qbits = static_cast<uint8_t>(g.bits);
      a.zero2 = static_cast<uint8_t>(g.zero2);
      a.group = rows ? static_cast<uint32_t>(a.cols) : 0;
      auto c = q.codes.to(torch::kUInt8).contiguous();
      a.codes.assign(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
      auto s = sc.reshape({-1}).contiguous();
      a.scales.assign(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
    }
  }
  return best;
}

// A grouped payload with every scale multiplied by `k` (float16-rounded);
// returns its new d.
torch::Tensor rescale(ApproxTensor& a, double k) {
  for (auto& s : a.scales)
    s = torch::tensor(std::max(kMinScale, static_cast<double>(s) * k), torch::kDouble)
            .to(torch::kHalf)
            .to(torch::kFloat)
            .item<float>();
  const auto sc = torch::tensor(a.scales, torch::kFloat).reshape({-1, 1});
  const auto codes = torch::tensor(std::vector<int64_t>(a.codes.begin(), a.codes.end()), torch::kInt64)
                         .reshape({static_cast<int64_t>(a.rows), static_cast<int64_t>(a.cols)})
                         .to(torch::kFloat);
  return sc * (codes - static_cast<float>(a.zero2) / 2.0f);
}

// Quantization-aware distillation of a GPTQ candidate's codes (--qat-steps;
// after the scale tuning and --realloc's rounds). Every grouped matrix's
// codes become float latents u on the grid's own coordinates (d = s·q with
// q = code − zero2/2; u starts at the GPTQ result's q), the forward uses the
// rounded codes (clamped to the levels below) and the gradient passes the
// rounding unchanged (straight-through estimator, Bengio et al. 2013); Adam trains the latents (lr --qat-lr, in
// grid steps, decaying linearly to 0) and one multiplier per matrix on its scales (lr --tune-lr/10)
// on the scale tuning's loss (--tune-loss) against the fine-tune, on
// calibration windows only (calib_set refuses the evaluation text). The
// grid, the scales' layout, the dropped and the lossless matrices stay as
// they were: the result is written as before (codec 11 sub-methods 3/4, no
// format change). The allocation paid for the GPTQ codes' coded size, so
// the step must not raise it: on a grid with a zero level a zero code stays
// zero (under the range coder a zero turning ±1 costs ~2-3 bits: without
// this rule 6,936 of `hub`'s 259,328 codes changed and the delta was written
// 2,194 B over 1/16 of fp16), a non-zero code may become zero (keeping every
// non-zero code non-zero, sign flips only, wrote `hub` 688 B over it and
// reached a higher KL), and no code leaves the levels the matrix already
// uses. The same loss on 16 fixed calibration windows, with the
// codes and float16 scales exactly as they would be stored, is measured at
// the start, every 25 steps and at the end, and the best of those is kept:
// the step never raises that loss. gptqmix's budget check after writing
// catches what remains of a change in the coded size.
Status qat_codes(const rt::Model& base, const rt::Model& ft, const std::vector<Change>& changes, const EvalSet& cs,
                 const LossyOptions& o, Candidate& c, json& report) {
  const int64_t ctx = o.tune_ctx;
  struct Mat {
    std::string name;
    ApproxTensor* a = nullptr;
    torch::Tensor u, s, u0, keep;  // keep: 0 where a zero code stays zero
    double z = 0, maxq = 0;
  };
  std::vector<Mat> mats;
  std::map<std::string, size_t> index;
  std::map<std::string, torch::Tensor> fixed;  // approximated matrices not trained: base + their d
  for (const auto& ch : changes) {
    auto it = c.pre.find(ch.name);
    if (it == c.pre.end()) continue;
    ApproxTensor& a = it->second;
    if (a.method != ApproxMethod::grouped || (a.group != 0 && a.group != a.cols)) {
      auto d = c.deq.find(ch.name);
      if (d != c.deq.end()) fixed[ch.name] = base.w.at(ch.name) + d->second;
      continue;
    }
    Mat m;
    m.name = ch.name;
    m.a = &a;
    m.z = a.zero2 / 2.0;
    // The symmetric grid's codes 0 .. zero2, and any code above them the
    // GPTQ result already uses (ternary's fourth code, +2s): no new level.
    const uint8_t top = a.codes.empty() ? 0 : *std::max_element(a.codes.begin(), a.codes.end());
    m.maxq = std::min(static_cast<double>((1 << a.qbits) - 1), std::max<double>(a.zero2, top));
    m.u0 = torch::tensor(std::vector<int64_t>(a.codes.begin(), a.codes.end()), torch::kInt64)
               .reshape({static_cast<int64_t>(a.rows), static_cast<int64_t>(a.cols)})
               .to(torch::kFloat) -
           static_cast<float>(m.z);
    m.keep = (a.zero2 % 2 == 0) ? (m.u0 != 0).to(torch::kFloat) : torch::ones_like(m.u0);
    m.u = m.u0.clone().set_requires_grad(true);
    m.s = torch::tensor(a.scales, torch::kFloat).reshape({-1, 1});
    index[ch.name] = mats.size();
    mats.push_back(std::move(m));
  }
  if (mats.empty()) {
    report = {{"trained", false}, {"why", "no matrix with grouped codes"}};
    return Status::Ok();
  }
  const int64_t n = static_cast<int64_t>(mats.size());
  auto mult = torch::ones({n}, torch::kFloat);
  mult.set_requires_grad(true);
  auto hard = [](const Mat& m, const torch::Tensor& u) {
    return torch::round(u + m.z).clamp(0, m.maxq) - m.z;
  };
  auto other = [&](const std::string& nm) -> torch::Tensor {
    auto f = fixed.find(nm);
    return f != fixed.end() ? f->second : ft.w.at(nm);
  };
  TrainForward student{ft.cfg, [&](const std::string& nm) -> torch::Tensor {
                         auto it = index.find(nm);
                         if (it == index.end()) return other(nm);
                         const Mat& m = mats[it->second];
                         auto q = (m.u + (hard(m, m.u) - m.u).detach()) * m.keep;
                         return base.w.at(nm) + (mult[static_cast<int64_t>(it->second)] * m.s) * q;
                       }};
  // The stored form: codes as rounded, scales multiplied and float16-rounded.
  auto stored_scales = [&](size_t j) {
    const double k = mult[static_cast<int64_t>(j)].item<double>();
    return (mats[j].s.to(torch::kDouble) * k).clamp_min(kMinScale).to(torch::kHalf).to(torch::kFloat);
  };
  std::map<std::string, torch::Tensor> stored_w;
  auto snapshot = [&] {
    torch::NoGradGuard ng;
    for (size_t j = 0; j < mats.size(); ++j)
      stored_w[mats[j].name] = base.w.at(mats[j].name) + stored_scales(j) * hard(mats[j], mats[j].u.detach()) * mats[j].keep;
  };
  TrainForward stored{ft.cfg, [&](const std::string& nm) -> torch::Tensor {
                        auto it = stored_w.find(nm);
                        return it != stored_w.end() ? it->second : other(nm);
                      }};
  const bool kl = o.tune_loss == "kl";
  // --qat-label-weight a > 0 (with --tune-loss kl only): (1 − a)·KL + a·the
  // cross-entropy of the calibration text's next tokens, i.e. distillation
  // with hard labels. It pulls the codes towards the text, not only towards
  // the fine-tune, so the report keeps the KL part of the probe apart.
  const double a = o.qat_label_weight;
  const bool labels = a > 0;
  Distill d(ft, cs, ctx, 0x51415444ull);
  TP_RETURN_IF_ERROR(d.begin(16, labels));
  auto loss_of = [&](const torch::Tensor& logits, const torch::Tensor& teacher, const torch::Tensor& next) {
    auto l = distill_loss(kl, logits, teacher);
    if (!labels) return l;
    return (1 - a) * l + a * torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), next.reshape({-1}));
  };
  double probe_kl = 0, probe_ce = 0;  // with labels: the parts of the last probe
  auto probe_loss = [&] {
    snapshot();
    torch::NoGradGuard ng;
    const auto logits = stored(d.probe);
    if (labels) {
      probe_kl = distill_loss(true, logits, d.probe_teacher).item<double>();
      probe_ce = torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), d.probe_labels.reshape({-1}))
                     .item<double>();
    }
    return loss_of(logits, d.probe_teacher, d.probe_labels).item<double>();
  };
  const std::clock_t cpu0 = std::clock();
  const double before = probe_loss();
  const double kl_before = probe_kl, ce_before = probe_ce;
  double best = before;
  int best_step = 0;
  std::vector<torch::Tensor> best_u;
  torch::Tensor best_mult = mult.detach().clone();
  for (auto& m : mats) best_u.push_back(m.u.detach().clone());
  std::vector<torch::Tensor> lat;
  for (auto& m : mats) lat.push_back(m.u);
  torch::optim::Adam opt_u(lat, torch::optim::AdamOptions(o.qat_lr));
  torch::optim::Adam opt_s({mult}, torch::optim::AdamOptions(o.tune_lr / 10));
  json trace = json::array();
  cli::ProgressBar bar(std::string("qat ") + c.m.kind);
  for (int step = 1; step <= o.qat_steps; ++step) {
    torch::Tensor x, next;
    if (labels) {
      const auto w = d.windows_next(o.qat_batch);
      x = w.slice(1, 0, ctx);
      next = w.slice(1, 1, ctx + 1);
    } else {
      x = d.windows(o.qat_batch);
    }
    const auto target = d.target(x);
    auto loss = loss_of(student(x), target, next);
    // The latents' learning rate decays linearly to 0 (on `full`, 600 steps:
    // KL 0.062 -> 0.052 on held-out text against a constant rate).
    for (auto& g : opt_u.param_groups())
      static_cast<torch::optim::AdamOptions&>(g.options()).lr(o.qat_lr * (1.0 - (step - 1.0) / o.qat_steps));
    opt_u.zero_grad();
    opt_s.zero_grad();
    loss.backward();
    opt_u.step();
    opt_s.step();
    {
      torch::NoGradGuard ng;
      // Latents stay within half a step of the grid's ends, so that a code
      // clamped there comes back with the first gradient towards the grid.
      for (auto& m : mats) m.u.clamp_(-m.z - 0.5, m.maxq - m.z + 0.5);
      mult.clamp_(0.0, 8.0);
    }
    if (step % 25 == 0 || step == o.qat_steps) {
      const double pl = probe_loss();
      trace.push_back({{"step", step}, {"probe_loss", pl}});
      if (pl < best) {
        best = pl;
        best_step = step;
        best_mult = mult.detach().clone();
        for (size_t j = 0; j < mats.size(); ++j) best_u[j] = mats[j].u.detach().clone();
      }
    }
    bar.update(step, o.qat_steps);
  }
  bar.finish();
  {
    torch::NoGradGuard ng;
    mult.copy_(best_mult);
    for (size_t j = 0; j < mats.size(); ++j) mats[j].u.copy_(best_u[j]);
  }
  const double after = probe_loss();
  int64_t changed = 0, total = 0;
  for (size_t j = 0; j < mats.size(); ++j) {
    Mat& m = mats[j];
    torch::NoGradGuard ng;
    const auto q = hard(m, m.u.detach()) * m.keep;
    const auto sc = stored_scales(j);
    const int64_t ch = (q != m.u0).sum().item<int64_t>();  // u0: the GPTQ codes, on the grid already
    changed += ch;
    total += q.numel();
    auto codes = (q + m.z).round().to(torch::kUInt8).contiguous();
    m.a->codes.assign(codes.data_ptr<uint8_t>(), codes.data_ptr<uint8_t>() + codes.numel());
    auto s = sc.reshape({-1}).contiguous();
    m.a->scales.assign(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
    c.deq[m.name] = sc * q;
    c.pre_detail[m.name]["qat_codes_changed"] = ch;
    c.pre_detail[m.name]["qat_multiplier"] = best_mult[static_cast<int64_t>(j)].item<double>();
  }
  report = {{"trained", true},
            {"steps", o.qat_steps},
            {"batch", o.qat_batch},
            {"ctx", ctx},
            {"lr_latents", o.qat_lr},
            {"lr_scales", o.tune_lr / 10},
            {"loss", labels ? "(1 - label_weight) * mean KL(P_finetune || P) per token + label_weight * "
                              "cross-entropy of the calibration text's next tokens"
                     : kl ? "mean KL(P_finetune || P) per token" : "logit MSE against the fine-tune"},
            {"calib_text", cs.file},
            {"calib_part", cs.part},
            {"calib_text_sha256", cs.sha256},
            {"probe_windows", 16},
            {"probe_loss_before", before},
            {"probe_loss_after", after},
            {"kept_step", best_step},
            {"probe_trace", trace},
            {"matrices", n},
            {"codes", total},
            {"codes_changed", changed},
            {"cpu_seconds", static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC}};
  if (labels) {
    report["label_weight"] = a;
    report["probe_kl_before"] = kl_before;
    report["probe_kl_after"] = probe_kl;
    report["probe_ce_before"] = ce_before;
    report["probe_ce_after"] = probe_ce;
  }
  if (!o.json)
    std::fprintf(stderr, "  %s codes trained (QAT, %d steps): calibration %s %.4g -> %.4g (step %d kept), %lld of %lld codes changed\n",
                 c.m.kind.c_str(), o.qat_steps, labels ? "KL+labels" : kl ? "KL" : "logit MSE", before, after,
                 best_step, static_cast<long long>(changed), static_cast<long long>(total));
  if (labels && !o.json)
    std::fprintf(stderr, "  of which calibration KL %.4g -> %.4g, next-token cross-entropy %.4g -> %.4g\n", kl_before,
                 probe_kl, ce_before, probe_ce);
  return Status::Ok();
}

std::vector<torch::Tensor> calib_windows(const EvalSet& cs, int n, int64_t ctx, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> start(0, static_cast<int64_t>(cs.ids.size()) - ctx - 1);
  auto ids = torch::tensor(cs.ids, torch::kInt64);
  std::vector<torch::Tensor> v;
  for (int i = 0; i < n; ++i) v.push_back(ids.slice(0, start(rng)).slice(0, 0, ctx));
  return v;
}

// H of every linear's input in the fine-tune, over `n` calibration windows;
// the embedding (tied head) gets the final normed hidden states' H plus
// mean(diag H)·I for its other use, the lookup whose row error enters the
// residual stream as it is (an untied embedding: that identity part alone).
std::map<std::string, torch::Tensor> delta_hessians(const rt::Model& ft, const EvalSet& cs, int n, int64_t ctx) {
  torch::NoGradGuard ng;
  std::map<std::string, quant::Hessian> H;
  rt::ForwardHooks hooks;
  hooks.on_linear_input = [&](const std::string& name, const torch::Tensor& x) {
    auto it = H.find(name);
    if (it == H.end()) it = H.emplace(name, quant::Hessian(x.size(-1))).first;
    it->second.add(x);
  };
  quant::Hessian head(ft.cfg.hidden_size);
  const auto win = calib_windows(cs, n, ctx, 0x47505451ull);
  for (size_t i = 0; i < win.size(); i += 8) {
    auto tok = torch::stack(std::vector<torch::Tensor>(win.begin() + i, win.begin() + std::min(win.size(), i + 8)));
    auto h = rt::embed(ft, tok);
    for (int l = 0; l < ft.cfg.num_layers; ++l) h = rt::block_forward(ft, l, h, &hooks);
    auto x = h * torch::rsqrt(h.pow(2).mean(-1, true) + ft.cfg.rms_eps) * ft.w.at("model.norm.weight");
    head.add(x);
  }
  std::map<std::string, torch::Tensor> r;
  for (auto& [name, h] : H) r[name] = h.matrix();
  auto hh = head.matrix();
  auto lookup = torch::eye(hh.size(0)) * hh.diagonal().mean();
  const bool tied = !ft.w.count("lm_head.weight");
  r["lm_head.weight"] = hh;
  r["model.embed_tokens.weight"] = tied ? hh + lookup : lookup;
  return r;
}

// Mean KL(P_ft || P) per token on `tok` with the weights in `repl` replaced.
double calib_kl(const rt::Model& ft, const std::map<std::string, torch::Tensor>& repl, const torch::Tensor& tok,
                const torch::Tensor& ref_logp) {
  rt::Model m{ft.cfg, ft.w};
  for (auto& [n, w] : repl) m.w[n] = w;
  auto lp = torch::log_softmax(rt::forward(m, tok), -1);
  return (ref_logp.exp() * (ref_logp - lp)).sum(-1).mean().item<double>();
}

// One option of a tensor in gptqmix: its payload, bytes, measured KL.
struct MixOption {
  std::string label;  // "0" (the base: Δ dropped), or grid[@mult]
  DeltaQuant q;
  uint64_t bytes = 0;
  double kl = 0;
};

// Fills `c.pre` for a gptqdelta / gptqmix candidate. gptqmix: per tensor
// the options 0 (Δ dropped: an empty sparse frame), ternary at four scales
// (four rates; the widest, 3.4 × rms, mostly zeros: between dropping a
// matrix and 1 bit, which range-coded costs well under a bit per weight),
// 1, 2 and 3 bits; each option's bytes are its codec-11
// frames' and its cost the KL on calibration windows with that tensor alone
// quantized (the rest the fine-tune's); then, from every tensor at 0, the
// upgrade with the most KL removed per byte that keeps the whole delta within
// FRACTION × the fine-tune's fp16 size is taken until none fits.
// `around`: gptqmix only; the approximated changes (tuned) of an earlier
// allocation, the context each option's cost is measured in instead of
// every tensor at 1 bit (--realloc: allocation after the scale tuning).
Status prepare_gptq(const Template& t, const rt::Model& base, const rt::Model& ft, const std::vector<Change>& changes,
                    const std::map<std::string, torch::Tensor>& H, const EvalSet& cs, const LossyOptions& o,
                    Candidate& c, const std::map<std::string, torch::Tensor>* around = nullptr) {
  json rep = json::object();
  std::map<std::string, std::pair<const OutFile*, const TensorInfo*>> where;
  for (auto& [fi, h] : t.headers)
    for (const auto& ti : h.tensors) where[ti.name] = {&t.m.out_files[fi], &ti};
  auto hess = [&](const std::string& n) {
    auto it = H.find(n);
    return it != H.end() ? it->second : torch::eye(ft.w.at(n).size(1));
  };
  if (c.m.kind == "gptqdelta") {
    const DeltaGrid g = delta_grid(c.m.p);
    json per = json::array();
    for (auto& ch : changes) {
      DeltaQuant q = quantize_delta(ch.d, hess(ch.name), g, c.m.rows);
      c.pre[ch.name] = q.a;
      // H's eigenvalues and Δ's mean square: what docs/LOSSY.md's rate-distortion bound needs.
      auto eig = torch::linalg_eigvalsh(hess(ch.name).to(torch::kDouble)).clamp_min(0);
      std::vector<double> ev(eig.data_ptr<double>(), eig.data_ptr<double>() + eig.numel());
      c.pre_detail[ch.name] = {{"grid", g.name},           {"scale_multiplier", q.mult},
                               {"gptq", q.gptq},           {"objective", q.objective},
                               {"rtn_objective", q.rtn_objective},
                               {"delta_mean_square", ch.d.pow(2).mean().item<double>()},
                               {"rows", ch.d.size(0)},     {"hessian_eigenvalues", ev}};
      c.deq[ch.name] = q.deq;
    }
    c.gptq = {{"grid", g.name}, {"bits", g.bits}, {"zero2", g.zero2}, {"scales", c.m.rows ? "per row" : "per tensor"}};
    return Status::Ok();
  }
  // gptqmix
  torch::NoGradGuard ng;
  const auto win = calib_windows(cs, 16, 128, 0x4d495831ull);
  const auto tok = torch::stack(win);
  const auto ref_logp = torch::log_softmax(rt::forward(ft, tok), -1);
  uint64_t params = 0;
  for (auto& [n, w] : ft.w) params += static_cast<uint64_t>(w.numel());
  const double budget = c.m.p * 2.0 * static_cast<double>(params);
  const double alloc_budget = budget - c.slack;
  // What the delta costs besides the approximated tensors: its compact index
  // (as written; the index of the chosen delta differs only in the frames'
  // codecs, lengths and hashes) and every lossless frame.
  Manifest tm = t.m;
  tm.lossy_record = c.record;  // provisional numbers: the written record differs by a few bytes
  auto tidx = lossy_index(tm);
  if (!tidx.ok()) return tidx.status();
  uint64_t fixed = t.dat.size() + tidx->size();
  std::vector<std::vector<MixOption>> opts(changes.size());
  std::vector<DeltaGrid> grids;
  for (double m : {1.2, 1.8, 2.6, 3.4}) grids.push_back({"1.58@" + std::to_string(m).substr(0, 3), 2, 2, {m}});
  for (double b : {1.0, 2.0, 3.0}) grids.push_back(delta_grid(b));
  cli::ProgressBar bar("gptqmix options");
  for (size_t i = 0; i < changes.size(); ++i) {
    const auto& ch = changes[i];
    auto wt = where.find(ch.name);
    if (wt == where.end()) continue;
    const TensorFrames tf = tensor_frames(t, *wt->second.first, *wt->second.second);
    if (tf.frames.empty()) continue;
    fixed -= tf.lossless;
    MixOption zero;
    zero.label = "0";
    zero.q.a.method = ApproxMethod::sparse;
    zero.q.a.rows = static_cast<uint64_t>(ch.d.size(0));
    zero.q.a.cols = static_cast<uint64_t>(ch.d.size(1));
    zero.q.deq = torch::zeros_like(ch.d);
    for (auto* op : {&zero}) opts[i].push_back(*op);
    for (auto& g : grids) {
      MixOption mo;
      mo.label = g.name;
      mo.q = quantize_delta(ch.d, hess(ch.name), g, false);
      opts[i].push_back(std::move(mo));
    }
    for (auto& mo : opts[i]) {
      auto b = approx_bytes(t, tf, *wt->second.second, mo.q.a, o.level);
      if (!b.ok()) return b.status();
      mo.bytes = *b;
    }
    bar.update(i + 1, changes.size());
  }
  bar.finish();
  // Each option's cost in context: the KL with every tensor at 1 bit (the
  // operating point of a budget near 1 bit per weight) and this one tensor
  // at the option. Measured alone (the rest exact) the costs add up to a
  // sixth of the joint KL on the stories260K fine-tunes and rank the tensors
  // wrongly.
  const size_t one = 1 + grids.size() - 3;  // the index of grid "1" in every option list
  std::map<std::string, torch::Tensor> ctx_w;
  for (size_t i = 0; i < changes.size(); ++i)
    if (!opts[i].empty())
      ctx_w[changes[i].name] = base.w.at(changes[i].name) + (around ? around->at(changes[i].name) : opts[i][one].q.deq);
  const double ctx_kl = calib_kl(ft, ctx_w, tok, ref_logp);
  cli::ProgressBar bar2("gptqmix costs");
  for (size_t i = 0; i < changes.size(); ++i) {
    for (size_t k = 0; k < opts[i].size(); ++k) {
      if (k == one && !around) {
        opts[i][k].kl = ctx_kl;
        continue;
      }
      auto w = ctx_w;
      w[changes[i].name] = base.w.at(changes[i].name) + opts[i][k].q.deq;
      opts[i][k].kl = calib_kl(ft, w, tok, ref_logp);
    }
    bar2.update(i + 1, changes.size());
  }
  bar2.finish();
  // Greedy allocation: from every tensor at 1 bit, the step down that costs
  // least KL per byte saved until the delta fits; then the step up that
  // removes most KL per byte added while it still fits.
  std::vector<size_t> pick(changes.size(), one);
  double total = static_cast<double>(fixed);
  for (size_t i = 0; i < changes.size(); ++i)
    if (!opts[i].empty()) total += static_cast<double>(opts[i][one].bytes);
    else pick[i] = 0;
  const double start_total = total;
  while (total > alloc_budget) {
    double best = 1e300;
    size_t bi = changes.size(), bo = 0;
    for (size_t i = 0; i < changes.size(); ++i)
      for (size_t k = 0; k < opts[i].size(); ++k) {
        const auto& cur = opts[i][pick[i]];
        const auto& op = opts[i][k];
        const double saved = static_cast<double>(cur.bytes) - static_cast<double>(op.bytes);
        if (saved <= 0) continue;
        const double cost = (op.kl - cur.kl) / saved;
        if (cost < best) {
          best = cost;
          bi = i;
          bo = k;
        }
      }
    if (bi == changes.size()) break;  // everything at its smallest
    total -= static_cast<double>(opts[bi][pick[bi]].bytes) - static_cast<double>(opts[bi][bo].bytes);
    pick[bi] = bo;
  }
  for (;;) {
    double best_ratio = 0;
    size_t bi = 0, bo = 0;
    for (size_t i = 0; i < changes.size(); ++i)
      for (size_t k = 0; k < opts[i].size(); ++k) {
        const auto& cur = opts[i][pick[i]];
        const auto& op = opts[i][k];
        const double db = static_cast<double>(op.bytes) - static_cast<double>(cur.bytes);
        const double dk = cur.kl - op.kl;
        if (dk <= 0 || total + db > alloc_budget) continue;
        const double ratio = db <= 0 ? 1e300 : dk / db;
        if (ratio > best_ratio) {
          best_ratio = ratio;
          bi = i;
          bo = k;
        }
      }
    if (best_ratio <= 0) break;
    total += static_cast<double>(opts[bi][bo].bytes) - static_cast<double>(opts[bi][pick[bi]].bytes);
    pick[bi] = bo;
  }
  json per = json::array();
  double sum_kl = 0;
  for (size_t i = 0; i < changes.size(); ++i) {
    if (opts[i].empty()) continue;
    const auto& op = opts[i][pick[i]];
    c.pre[changes[i].name] = op.q.a;
    c.deq[changes[i].name] = op.q.deq;
    json optj = json::array();
    for (auto& x : opts[i]) optj.push_back({{"option", x.label}, {"bytes", x.bytes}, {"calib_kl", x.kl}});
    c.pre_detail[changes[i].name] = {{"option", op.label}, {"calib_kl_in_context", op.kl}, {"options", optj}};
    if (op.label != "0")
      c.pre_detail[changes[i].name].update({{"scale_multiplier", op.q.mult}, {"gptq", op.q.gptq},
                                            {"objective", op.q.objective}, {"rtn_objective", op.q.rtn_objective}});
    sum_kl += op.kl;
  }
  c.gptq = {{"budget_bytes", budget},
            {"allocation_slack_bytes", c.slack},
            {"fraction_of_fp16", c.m.p},
            {"fp16_bytes", 2 * params},
            {"fixed_bytes", fixed},
            {"all_dropped_bytes", start_total},
            {"predicted_bytes", total},
            {"calib_windows", 16},
            {"calib_ctx", 128},
            {"calib_kl_all_at_1_bit", ctx_kl},
            {"allocation", "from every tensor at 1 bit: cheapest KL per byte down until within budget, then best up"}};
  (void)sum_kl;
  return Status::Ok();
}

// A measured number as the record stores it: 6 significant digits (the
// measurement's own spread is far larger), since the record counts in the
// delta's size.
double sig6(double x) {
  if (x == 0 || !std::isfinite(x)) return x;
  char b[40];
  std::snprintf(b, sizeof b, "%.6g", x);
  return std::strtod(b, nullptr);
}

// The index's lossy record (docs/FORMAT.md, "Lossy deltas"): what a reader
// shows and checks, nothing per tensor. `quality` null: provisional numbers
// of the same width, so that a candidate's size (and gptqmix's budget)
// counts a record of nearly the written size before it is measured.
std::string lossy_record(const LossyOptions& o, const Candidate& c, const json& target, uint64_t lossless_bytes,
                         uint64_t ft_bytes, const EvalSet& ev, const EvalSet* calib, const json& quality) {
  json q = json::object();
  if (quality.is_null()) {
    // Numbers at least as long as any measured one ("%.6g" of a double:
    // at most 13 characters), with digits that differ, so that zstd does
    // not code them smaller than measured ones.
    q = {{"eval_text", ev.file}, {"eval_part", ev.part}, {"eval_text_sha256", ev.sha256}, {"ctx", o.eval_ctx},
         {"windows", 9876543210ull}, {"scored_tokens", 8765432109ull}};
    uint32_t x = 12345;
    for (const char* k : {"ppl_finetune", "ppl_rebuilt", "ppl_ratio", "ppl_delta_pct", "kl_mean", "kl_p99", "kl_max",
                          "top1_agreement", "weights_rel_error"}) {
      x = x * 1103515245u + 12345u;
      q[k] = sig6(-(1.0 + (x >> 8) % 99999 / 100000.0) * 1e-100 * std::pow(10.0, -static_cast<int>(x % 9)));
    }
  } else {
    for (auto& [k, v] : quality.items()) q[k] = v.is_number_float() ? json(sig6(v.get<double>())) : v;
  }
  json r = {{"format", "tenpak.lossy"}, {"version", 1},         {"lossy", true},
            {"method", c.m.spelled()},  {"embeddings", o.embeddings}};
  if (!target.empty()) r["target"] = target;
  r["lossless_delta_bytes"] = lossless_bytes;
  r["finetune_bytes"] = ft_bytes;
  r["quality"] = q;
  if (calib) r["calib"] = {{"calib_text", calib->file}, {"calib_part", calib->part}, {"calib_text_sha256", calib->sha256}};
  // Trained on the calibration text's labels, the delta is not a copy of the
  // fine-tune (docs/LOSSY.md), and readers say so. Only then: a record
  // without it is byte for byte what it was before the field existed (the
  // record counts in gptqmix's budget, so the deltas trained on the KL alone
  // stay the same). --tune-loss and --qat-steps stay in the build report:
  // whatever their values the delta is trained towards the fine-tune.
  if (o.qat_label_weight > 0 && o.qat_steps > 0 && (c.m.kind == "gptqdelta" || c.m.kind == "gptqmix"))
    r["qat_label_weight"] = sig6(o.qat_label_weight);
  return r.dump();
}

json true_files(const Template& t, const std::string& ft_dir) {
  json a = json::array();
  for (auto& of : t.m.out_files) a.push_back({{"name", of.name}, {"size", of.size}, {"sha256", hex(of.sha256)}});
  (void)ft_dir;
  return a;
}

int run_lossy(LossyOptions o) {
  using cli::fail;
  const auto t0 = std::chrono::steady_clock::now();
  torch::set_num_threads(1);
  const bool target = o.max_kld >= 0 || o.max_ppl_delta >= 0;
  // Methods to try.
  std::vector<std::string> families;
  Method single;
  bool is_single = false;
  if (o.lossy == "auto") {
    if (!target) return fail(bad_method(o.lossy, "auto needs --max-kld or --max-ppl-delta"));
    families = {"lowrank", "qdelta", "bitdelta", "sparse", "dare"};
  } else {
    auto m = parse_method(o.lossy, target);
    if (!m.ok()) return fail(m.status());
    if (m->kind != "bitdelta" && o.lossy.find(':') == std::string::npos) families = {m->kind};
    else { single = *m; is_single = true; }
  }
  if (o.qat_steps > 0 && o.no_tune)
    return fail({Errc::invalid, "--qat-steps trains the codes on calibration text after the scale tuning; it does not "
                                "go with --no-tune"});
  // CLI::Range passes NaN (each comparison with it is false), and a NaN
  // weight would train on the KL alone with the option given: refused here.
  if (!(o.qat_label_weight >= 0 && o.qat_label_weight <= 1))
    return fail({Errc::invalid, "--qat-label-weight " + std::to_string(o.qat_label_weight) +
                                    ": the weight of the next tokens must be a number in [0, 1]"});
  if (o.qat_label_weight > 0 && (o.qat_steps == 0 || o.tune_loss != "kl"))
    return fail({Errc::invalid, "--qat-label-weight weighs the calibration text's next tokens against the KL of "
                                "--qat-steps' training: it needs --qat-steps N and --tune-loss kl"});
  if (fs::exists(o.out) && !fs::is_empty(o.out))
    return fail({Errc::exists, o.out + ": already exists and is not empty; choose a new output directory"});
  // The report is not part of the delta (docs/FORMAT.md, "Lossy deltas"):
  // inside the output directory it would count in the delta's bytes, and it
  // is written before the staged delta is renamed onto that directory, which
  // must then be empty. Refused before any work, not after the build.
  if (!o.report.empty()) {
    const fs::path outp = fs::weakly_canonical(fs::absolute(o.out));
    const fs::path rep = fs::weakly_canonical(fs::absolute(o.report));
    const auto rel = rep.lexically_relative(outp);
    if (rep == outp || (!rel.empty() && *rel.begin() != ".."))
      return fail({Errc::invalid, o.report + ": the build report is not part of the delta; write it outside the output "
                                             "directory " + o.out});
  }
  // The lossy record and the report store the texts' paths as JSON strings
  // (docs/FORMAT.md, "Lossy deltas": UTF-8), which nlohmann's dump refuses
  // by throwing: checked here, before any work, not at the end of the build.
  for (const std::string* p : {&o.eval_text, &o.calib_text, &o.data_dir}) {
    try {
      (void)json(*p).dump();
    } catch (const json::type_error&) {
      return fail({Errc::invalid, *p + ": this path is not valid UTF-8, and the delta's lossy record stores it as "
                                       "JSON text; rename the file or its directory"});
    }
  }
  if (!fs::is_directory(o.base) || !fs::is_directory(o.ft))
    return fail({Errc::unsupported, "lossy deltas need model directories the runtime loads (config.json + "
                                    "safetensors); got " + o.base + " and " + o.ft +
                                    ". A lossless delta (without --lossy) works for any pair"});
  auto refuse_load = [&](const std::string& which, const Status& st) {
    return fail({Errc::unsupported, which + ": the model runtime cannot load it (" + st.message() +
                                        "), so a lossy delta's quality cannot be measured: refused. A lossless "
                                        "delta of the same pair still works (tenpak delta build without --lossy)"});
  };
  auto base = rt::load_model_dir(o.base);
  if (!base.ok()) return refuse_load(o.base, base.status());
  auto ft = rt::load_model_dir(o.ft);
  if (!ft.ok()) return refuse_load(o.ft, ft.status());
  auto ev = eval_set(o);
  if (!ev.ok()) return fail(ev.status());

  std::vector<Change> changes;
  for (auto& [name, w] : ft->w) {
    if (w.dim() != 2 || !approximable(name, ft->cfg, o.embeddings)) continue;
    auto it = base->w.find(name);
    if (it == base->w.end() || !it->second.sizes().equals(w.sizes())) continue;
    auto d = (w - it->second).contiguous();
    if (d.abs().max().item<float>() == 0) continue;
    changes.push_back({name, d});
  }

  // The lossless template.
  const fs::path out(o.out);
  const std::string tag = "." + out.filename().string() + ".tenpak-tmp-" + std::to_string(::getpid());
  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  Template t;
  t.dir = (parent / (tag + "-lossless")).string();
  t.base_dir = o.base;
  std::vector<std::string> cleanup{t.dir};
  auto done = [&](int rc) {
    std::error_code e;
    for (auto& p : cleanup) fs::remove_all(p, e);
    return rc;
  };
  {
    BuildOptions bo;
    bo.zstd_level = o.level;
    bo.allow_ctx = !o.fast;
    bo.threads = o.threads ? o.threads : 1;
    bo.base_locations = o.base_locations;
    auto r = build_delta(o.base, o.ft, t.dir, bo);
    if (!r.ok()) return done(fail(r.status()));
    auto rd = open_delta_dir(t.dir);
    if (!rd.ok()) return done(fail(rd.status()));
    t.m = (*rd)->manifest();
    auto dat = read_text_file((fs::path(t.dir) / kDataFile).string());
    if (!dat.ok()) return done(fail(dat.status()));
    t.dat = *dat;
    t.bytes = t.dat.size() + serialize_manifest(t.m).size();
    if (Status st = copy_identical_ranges(t, o.ft); !st.ok()) return done(fail(st));
    for (uint32_t fi = 0; fi < t.m.out_files.size(); ++fi) {
      const auto& name = t.m.out_files[fi].name;
      if (name.size() < 12 || name.substr(name.size() - 12) != ".safetensors") continue;
      auto h = read_safetensors_header((fs::path(o.ft) / name).string());
      if (!h.ok()) return done(fail(h.status()));
      t.headers[fi] = *h;
    }
  }

  std::vector<Candidate> cands;
  json tuning;
  auto add = [&](const Method& m) {
    cands.emplace_back();
    cands.back().m = m;
  };
  if (is_single) add(single);
  for (auto& f : families)
    for (auto& m : sweep(f, changes)) add(m);
  uint64_t ft_bytes = 0;
  for (auto& of : t.m.out_files) ft_bytes += of.size;
  json tj = json::object();
  if (o.max_kld >= 0) tj["max_kld"] = o.max_kld;
  if (o.max_ppl_delta >= 0) tj["max_ppl_delta_pct"] = o.max_ppl_delta;
  // The calibration text the chosen delta's scales or Hessians came from
  // (its identity goes into the record); set below when one is used.
  std::optional<EvalSet> calib;
  auto uses_calib = [&](const Candidate& c) {
    return calib && (c.m.kind == "gptqdelta" || c.m.kind == "gptqmix" ||
                     (c.m.kind == "bitdelta" && tuning.is_object() && tuning.value("tuned", false)));
  };
  // BitDelta: scales distilled on calibration text unless --no-tune.
  bool any_bitdelta = false;
  for (auto& c : cands) any_bitdelta |= c.m.kind == "bitdelta";
  if (any_bitdelta && !o.no_tune) {
    auto cs = calib_set(o, *ev);
    if (!cs.ok()) return done(fail(cs.status()));
    if (cs->ids.empty()) {
      tuning = {{"tuned", false}, {"why", "no calibration text (--eval-text without --calib-text)"}};
      if (!o.json) std::fprintf(stderr, "  bitdelta: scales = mean |delta| (no --calib-text given with --eval-text)\n");
    } else {
      std::map<std::string, float> scales;
      Status st = tune_bitdelta(*base, *ft, changes, *cs, o, scales, tuning);
      if (!st.ok()) return done(fail(st));
      tuning["tuned"] = true;
      calib = *cs;
      for (auto& c : cands)
        if (c.m.kind == "bitdelta") c.scales = scales;
    }
  } else if (any_bitdelta) {
    tuning = {{"tuned", false}, {"why", "--no-tune"}};
  }
  // GPTQ on the change: Hessians of the fine-tune on calibration text, each
  // candidate's payloads, then (unless --no-tune) its scales distilled as BitDelta's.
  bool any_gptq = false;
  for (auto& c : cands) any_gptq |= c.m.kind == "gptqdelta" || c.m.kind == "gptqmix";
  std::map<std::string, torch::Tensor> H;
  EvalSet gcs;
  // One GPTQ candidate: its payloads (gptqmix: allocated within its budget
  // less c.slack), then its scales tuned, then --realloc's rounds.
  auto prep = [&](Candidate& c) -> Status {
    const EvalSet& cs = gcs;
    c.pre.clear();
    c.pre_detail.clear();
    c.deq.clear();
    c.record = lossy_record(o, c, tj, t.bytes, ft_bytes, *ev, &*calib, json());
    TP_RETURN_IF_ERROR(prepare_gptq(t, *base, *ft, changes, H, cs, o, c));
    c.gptq["hessian"] = {{"calib_text", cs.file}, {"calib_part", cs.part}, {"calib_text_sha256", cs.sha256},
                         {"windows", 64}, {"ctx", 128}, {"model", "fine-tune"}};
    if (o.no_tune) {
      c.gptq["scale_tuning"] = {{"tuned", false}, {"why", "--no-tune"}};
      return Status::Ok();
    }
    auto tune = [&]() -> Status {
      std::vector<torch::Tensor> dirs;
      std::vector<double> init, mult;
      for (auto& ch : changes) {
        auto it = c.deq.find(ch.name);
        dirs.push_back(it != c.deq.end() ? it->second : ch.d);
        init.push_back(1.0);
      }
      json rep;
      TP_RETURN_IF_ERROR(tune_scales(*base, *ft, changes, dirs, init, cs, o, c.m.kind.c_str(), mult, rep));
      for (size_t i = 0; i < changes.size(); ++i) {
        auto it = c.pre.find(changes[i].name);
        if (it == c.pre.end() || it->second.method != ApproxMethod::grouped) continue;
        c.deq[changes[i].name] = rescale(it->second, mult[i]);
        c.pre_detail[changes[i].name]["tuned_multiplier"] = mult[i];
      }
      rep["tuned"] = true;
      c.gptq["scale_tuning"] = rep;
      return Status::Ok();
    };
    TP_RETURN_IF_ERROR(tune());
    for (int round = 1; round <= o.realloc && c.m.kind == "gptqmix"; ++round) {
      // The costs again, each option in the context of the tuned
      // allocation; allocated again and tuned again.
      const auto around = c.deq;
      const json first = c.gptq;
      c.pre.clear();
      c.pre_detail.clear();
      c.deq.clear();
      TP_RETURN_IF_ERROR(prepare_gptq(t, *base, *ft, changes, H, cs, o, c, &around));
      c.gptq["hessian"] = first["hessian"];
      c.gptq["previous_allocation"] = first;
      c.gptq["allocation"] = "as the first allocation, each option's cost measured around the previous allocation "
                             "with tuned scales (--realloc round " + std::to_string(round) + "); then tuned again";
      TP_RETURN_IF_ERROR(tune());
    }
    // The codes trained once, after the last allocation and tuning (training
    // them after each round, --realloc's costs then measured around trained
    // codes, measured worse on `full`: x1.082 against x1.068).
    if (o.qat_steps > 0) {
      json rep;
      TP_RETURN_IF_ERROR(qat_codes(*base, *ft, changes, cs, o, c, rep));
      c.gptq["qat"] = rep;
    }
    return Status::Ok();
  };
  if (any_gptq) {
    auto cs = calib_set(o, *ev);
    if (!cs.ok()) return done(fail(cs.status()));
    if (cs->ids.empty())
      return done(fail({Errc::invalid, "gptqdelta/gptqmix need calibration text disjoint from the evaluation text "
                                       "(their Hessians and choices come from it): give --calib-text FILE"}));
    if (static_cast<int64_t>(cs->ids.size()) < 130)
      return done(fail({Errc::invalid, cs->file + ": the calibration text is too short (fewer than 130 tokens)"}));
    H = delta_hessians(*ft, *cs, 64, 128);
    calib = *cs;
    gcs = *cs;
    for (auto& c : cands) {
      if (c.m.kind != "gptqdelta" && c.m.kind != "gptqmix") continue;
      Status st = prep(c);
      if (!st.ok()) return done(fail(st));
    }
  }
  for (size_t i = 0; i < cands.size(); ++i) {
    cands[i].stage = (parent / (tag + "-" + std::to_string(i))).string();
    cleanup.push_back(cands[i].stage);
    cleanup.push_back(cands[i].stage + ".rebuilt");
    cands[i].record = lossy_record(o, cands[i], tj, t.bytes, ft_bytes, *ev, uses_calib(cands[i]) ? &*calib : nullptr, json());
    Status st = write_candidate(t, changes, cands[i], o.level);
    if (!st.ok()) return done(fail(st));
    // gptqmix predicts the written size from the template's index and a
    // provisional record; the final index can differ by some bytes. Over
    // its budget, it is allocated again with that much (and 16 B) less.
    // (Under it after --qat-steps, which turns some non-zero codes to zero:
    // allocating again with the bytes left given back was tried on `hub`,
    // 600 steps: 31,052 -> 32,267 B, KL 0.00236 -> 0.00220, ppl x1.0054 ->
    // x1.0100, 2.7x the build time; not kept.)
    for (int retry = 0; cands[i].m.kind == "gptqmix" && retry < 2; ++retry) {
      const double over = static_cast<double>(cands[i].bytes) - cands[i].gptq["budget_bytes"].get<double>();
      if (over <= 0) break;
      cands[i].slack += over + 16;
      if (!o.json)
        std::fprintf(stderr, "  %s: %llu bytes written, %.0f over its budget: allocated again with %.0f bytes less\n",
                     cands[i].m.spelled().c_str(), static_cast<unsigned long long>(cands[i].bytes), over, cands[i].slack);
      st = prep(cands[i]);
      if (!st.ok()) return done(fail(st));
      std::error_code e3;
      fs::remove_all(cands[i].stage, e3);
      cands[i].tensors = json::array();
      cands[i].record = lossy_record(o, cands[i], tj, t.bytes, ft_bytes, *ev, &*calib, json());
      st = write_candidate(t, changes, cands[i], o.level);
      if (!st.ok()) return done(fail(st));
    }
    if (cands[i].m.kind == "gptqmix") {
      cands[i].gptq["written_bytes"] = cands[i].bytes;
      cands[i].gptq["within_budget"] = static_cast<double>(cands[i].bytes) <= cands[i].gptq["budget_bytes"].get<double>();
      if (!cands[i].gptq["within_budget"].get<bool>() && !o.json)
        std::fprintf(stderr, "  %s: %llu bytes written, over its budget of %.0f (the index or the tuned scales' coding)\n",
                     cands[i].m.spelled().c_str(), static_cast<unsigned long long>(cands[i].bytes),
                     cands[i].gptq["budget_bytes"].get<double>());
    }
  }
  // Smallest first; measure until one meets the target (or the only one).
  std::vector<size_t> order(cands.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cands[a].bytes < cands[b].bytes; });
  int chosen = -1;
  cli::ProgressBar bar("measure");
  size_t measured = 0;
  for (size_t i : order) {
    Status st = measure(t, cands[i], *ft, *base, *ev, o);
    if (!st.ok()) return done(fail(st));
    bar.update(++measured, order.size());
    if (!o.json)
      std::fprintf(stderr, "  %-22s %9llu bytes  ppl %+.3f%%  KL %.3g  top-1 %.4f\n", cands[i].m.spelled().c_str(),
                   static_cast<unsigned long long>(cands[i].bytes), cands[i].ppl_delta_pct, cands[i].kl,
                   cands[i].quality["top1_agreement"].get<double>());
    if (!target || meets(cands[i], o)) {
      chosen = static_cast<int>(i);
      break;
    }
  }
  bar.finish();
  json cj = json::array();
  for (size_t i : order) {
    json e = {{"method", cands[i].m.spelled()}, {"delta_bytes", cands[i].bytes}};
    if (cands[i].measured) {
      e["kl_mean"] = cands[i].kl;
      e["ppl_delta_pct"] = cands[i].ppl_delta_pct;
      e["top1_agreement"] = cands[i].quality["top1_agreement"];
    }
    cj.push_back(e);
  }
  if (chosen < 0) {
    // The best reached: lowest KL among those measured.
    size_t best = order.front();
    for (size_t i : order)
      if (cands[i].measured && cands[i].kl < cands[best].kl) best = i;
    const auto& b = cands[best];
    if (o.json)
      std::printf("%s\n", cli::json_text(json({{"ok", false}, {"target", tj}, {"best_method", b.m.spelled()},
                                                {"best_delta_bytes", b.bytes}, {"best_kl_mean", b.kl},
                                                {"best_ppl_delta_pct", b.ppl_delta_pct}, {"candidates", cj}}),
                                          2)
                               .c_str());
    std::fprintf(stderr,
                 "tenpak: error: no method tried meets the target (%s%s%s); the best reached: %s, %llu bytes, KL %.4g, "
                 "perplexity %+.3f%%; nothing written to %s\n",
                 o.max_kld >= 0 ? ("KL <= " + std::to_string(o.max_kld)).c_str() : "",
                 o.max_kld >= 0 && o.max_ppl_delta >= 0 ? ", " : "",
                 o.max_ppl_delta >= 0 ? ("perplexity +" + std::to_string(o.max_ppl_delta) + "%").c_str() : "",
                 b.m.spelled().c_str(), static_cast<unsigned long long>(b.bytes), b.kl, b.ppl_delta_pct, o.out.c_str());
    return done(kTargetNotMet);
  }
  Candidate& c = cands[chosen];
  // The record with the measured numbers replaces the provisional one: only
  // the index changes (the rebuilt files and their sha256 do not).
  c.record = lossy_record(o, c, tj, t.bytes, ft_bytes, *ev, uses_calib(c) ? &*calib : nullptr, c.quality);
  auto rd = open_delta_dir(c.stage);
  if (!rd.ok()) return done(fail(rd.status()));
  Manifest fm = (*rd)->manifest();
  rd->reset();
  fm.lossy_record = c.record;
  auto fidx = lossy_index(fm);
  if (!fidx.ok()) return done(fail(fidx.status()));
  fm.lossy_record.clear();
  auto bare = lossy_index(fm);
  if (!bare.ok()) return done(fail(bare.status()));
  {
    Status st = write_file_atomic((fs::path(c.stage) / kIndexFile).string(), {{fidx->data(), fidx->size()}});
    if (!st.ok()) return done(fail(st));
  }
  const uint64_t dat_bytes = fs::file_size(fs::path(c.stage) / kDataFile);
  c.bytes = fidx->size() + dat_bytes;
  if (c.m.kind == "gptqmix") {
    c.gptq["written_bytes"] = c.bytes;
    c.gptq["within_budget"] = static_cast<double>(c.bytes) <= c.gptq["budget_bytes"].get<double>();
  }
  json rebuilt = json::array();
  for (auto& of : fm.out_files) rebuilt.push_back({{"name", of.name}, {"sha256", hex(of.sha256)}});
  // The build report: everything the record leaves out (per tensor, every
  // candidate, the method's settings), for --report FILE and --json; the
  // delta itself is the index (with its record) and the data file.
  json report = {{"format", "tenpak.lossy.report"},
                 {"version", 1},
                 {"lossy", true},
                 {"method", c.m.spelled()},
                 {"embeddings", o.embeddings},
                 {"target", tj},
                 {"delta_bytes", c.bytes},
                 {"index_bytes", fidx->size()},
                 {"data_bytes", dat_bytes},
                 {"record_bytes", c.record.size()},
                 {"record_bytes_in_index", fidx->size() - bare->size()},
                 {"lossless_delta_bytes", t.bytes},
                 {"finetune_bytes", ft_bytes},
                 {"quality", c.quality},
                 {"record", json::parse(c.record)},
                 {"true_finetune", true_files(t, o.ft)},
                 {"rebuilt", rebuilt},
                 {"tensors", c.tensors},
                 {"candidates", cj}};
  if (c.m.kind == "bitdelta" && !tuning.is_null()) report["bitdelta_tuning"] = tuning;
  if (!c.gptq.is_null()) report["gptq"] = c.gptq;
  if (!o.report.empty()) {
    // The report and --json name the fine-tune's and rebuilt files, whose
    // names need not be UTF-8: bytes that are not are written as U+FFFD
    // (dump's default throws, uncaught, at the end of the build).
    const std::string s = cli::json_text(report, 2) + "\n";
    Status st = write_file_atomic(o.report, {{s.data(), s.size()}});
    if (!st.ok()) return done(fail(st));
  }
  std::error_code ec;
  if (fs::exists(out)) fs::remove(out, ec);  // an empty directory (checked above)
  fs::rename(c.stage, out, ec);
  if (ec) return done(fail({Errc::io, o.out + ": cannot rename from " + c.stage + ": " + ec.message()}));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.json) {
    json j = {{"ok", true}, {"delta", o.out}};
    for (auto& [k, v] : report.items())
      if (k != "format" && k != "version") j[k] = v;
    j["seconds"] = secs;
    std::printf("%s\n", cli::json_text(j, 2).c_str());
  } else {
    const auto& q = c.quality;
    std::printf("built %s: LOSSY delta, %s, %s (lossless would be %s; fine-tune %s) in %.1f s\n", o.out.c_str(),
                c.m.spelled().c_str(), cli::human_bytes(c.bytes).c_str(), cli::human_bytes(t.bytes).c_str(),
                cli::human_bytes(ft_bytes).c_str(), secs);
    std::printf("  measured against the true fine-tune on %s (%lld tokens scored): perplexity %.4f vs %.4f (%+.3f%%), "
                "KL %.4g nats, top-1 agreement %.4f\n",
                ev->file.c_str(), static_cast<long long>(q["scored_tokens"].get<int64_t>()), q["ppl_rebuilt"].get<double>(),
                q["ppl_finetune"].get<double>(), c.ppl_delta_pct, c.kl, q["top1_agreement"].get<double>());
    std::printf("  recorded in its index (%llu bytes of %llu); per-tensor detail and candidates %s\n",
                static_cast<unsigned long long>(fidx->size() - bare->size()), static_cast<unsigned long long>(fidx->size()),
                o.report.empty() ? "not kept (--report FILE or --json writes them)" : ("in " + o.report).c_str());
  }
  return done(cli::kOk);
}

}  // namespace

void add_delta_lossy_commands(CLI::App& app, int& rc) {
  static LossyOptions o;
  auto* d = app.add_subcommand("delta", "lossy deltas (libtorch: choosing and measuring the approximation)");
  d->require_subcommand(1);
  auto* b = d->add_subcommand("build", "Build a LOSSY delta of FINETUNED against BASE (--lossy METHOD), its quality "
                                       "measured on held-out text and recorded in DIR's index");
  b->add_option("BASE", o.base, "Base model directory")->required();
  b->add_option("FINETUNED", o.ft, "Fine-tuned model directory")->required();
  b->add_option("-o,--output", o.out, "Delta directory to create")->required();
  b->add_option("--lossy", o.lossy,
                "sparse:THRESHOLD | dare:P | bitdelta | qdelta:BITS | lowrank:R | gptqdelta:1|1.58|2|3[:row] | "
                "gptqmix:FRACTION; with a target also auto or a method name alone (its settings are swept)")
      ->required();
  b->add_option("--eval-text", o.eval_text,
                "Text to measure quality on (default: the held-out last 10% of ../shared/data/text/tinyshakespeare.txt)");
  b->add_option("--data-dir", o.data_dir, "Shared data folder (default: $TENPAK_SHARED/data, else ../shared/data)");
  b->add_option("--max-kld", o.max_kld, "Keep the smallest delta whose mean KL divergence (nats) is at most X")
      ->check(CLI::NonNegativeNumber)
      ->check(cli::finite_number());
  b->add_option("--max-ppl-delta", o.max_ppl_delta,
                "Keep the smallest delta whose perplexity is at most PCT percent above the true fine-tune's")
      ->check(CLI::NonNegativeNumber)
      ->check(cli::finite_number());
  b->add_flag("--lossy-embeddings", o.embeddings, "Approximate the embedding and LM head too");
  b->add_option("--calib-text", o.calib_text,
                "bitdelta: text its scales are tuned on (default: the first 90% of TinyShakespeare when measuring on "
                "its held-out part; with --eval-text and no --calib-text, no tuning)");
  b->add_flag("--no-tune", o.no_tune,
              "bitdelta: scales = mean |delta|; gptqdelta/gptqmix: scales as GPTQ chose them; not tuned on calibration text");
  b->add_option("--tune-steps", o.tune_steps, "bitdelta: Adam steps of the scale tuning")->check(CLI::Range(1, 100000));
  b->add_option("--tune-lr", o.tune_lr, "bitdelta: Adam learning rate on the scale multipliers")
      ->check(CLI::PositiveNumber)
      ->check(cli::finite_number());
  b->add_option("--tune-loss", o.tune_loss,
                "What the scale tuning minimises on calibration text: mse (the logits', BitDelta's; default) or kl "
                "(KL divergence of the next-token distributions, what the quality is measured by)")
      ->check(CLI::IsMember({"mse", "kl"}));
  b->add_option("--realloc", o.realloc,
                "gptqmix: N rounds of, after the scale tuning, measuring every option's cost again around the tuned "
                "allocation, allocating again and tuning again (default 0)")
      ->check(CLI::Range(0, 8));
  b->add_option("--qat-steps", o.qat_steps,
                "gptqdelta/gptqmix: after the scale tuning, N Adam steps of quantization-aware distillation of the "
                "codes on calibration text (latents on the fixed grid, straight-through rounding; default 0: off; "
                "measured best: 1200 with --tune-loss kl)")
      ->check(CLI::Range(0, 100000));
  b->add_option("--qat-lr", o.qat_lr, "--qat-steps: Adam learning rate of the latents, in grid steps")
      ->check(CLI::PositiveNumber)
      ->check(cli::finite_number());
  b->add_option("--qat-batch", o.qat_batch, "--qat-steps: calibration windows per step")->check(CLI::Range(1, 1024));
  b->add_option("--qat-label-weight", o.qat_label_weight,
                "--qat-steps with --tune-loss kl: train on (1 - W) * KL + W * cross-entropy of the calibration text's "
                "next tokens (distillation with hard labels; default 0: KL alone)")
      ->check(CLI::Range(0.0, 1.0));
  b->add_option("--eval-ctx", o.eval_ctx, "Window of the quality measurement")->check(CLI::Range(8, 4096));
  b->add_option("--eval-chunks", o.eval_chunks, "Windows to score (0: all)")->check(CLI::Range(0, 1000000));
  b->add_option("-l,--level", o.level, "zstd level")->check(CLI::Range(1, 19));
  b->add_flag("--fast", o.fast, "Lossless frames without sub_ctx");
  b->add_flag("--as-safetensors", o.as_safetensors, "(lossless option; lossy deltas need safetensors models)");
  b->add_option("--base-location", o.base_locations, "Where the base can be found, recorded in the delta");
  b->add_option("-j,--threads", o.threads, "Worker threads");
  b->add_flag("--json", o.json, "Print a JSON report on stdout (the build report below, and the outcome)");
  b->add_option("--report", o.report,
                "Write the build report (per-tensor choices and objectives, every candidate measured, the method's "
                "settings; not part of the delta) to FILE");
  b->callback([&rc] { rc = run_lossy(o); });
}

}  // namespace tenpak::ml
