#include "tenpak/quantizers.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace tenpak::quant {
namespace {

// Smallest positive fp16 (subnormal): a scale never rounds to zero.
constexpr double kMinHalf = 5.9604644775390625e-08;

torch::Tensor to_half_grid(const torch::Tensor& s) {
  return s.clamp_min(kMinHalf).to(torch::kHalf).to(torch::kFloat);
}

int64_t eff_group(int64_t group_size, int64_t in) { return group_size <= 0 ? in : group_size; }

}  // namespace

namespace {

// GPTQ-style asymmetric grid for a range xmin <= 0 <= xmax per row.
void gptq_grid(torch::Tensor xmin, torch::Tensor xmax, int bits, torch::Tensor& scale, torch::Tensor& zero) {
  const double maxq = (1 << bits) - 1;
  auto both0 = (xmin == 0) & (xmax == 0);
  xmin = torch::where(both0, torch::full_like(xmin, -1), xmin);
  xmax = torch::where(both0, torch::full_like(xmax, 1), xmax);
  auto s = (xmax - xmin) / maxq;
  auto z = torch::round(-xmin / s);
  // Stored as zero-1 in `bits` bits: keep zero >= 1 by giving such a group
  // (all weights >= -scale/2) one step below 0 and the rest above.
  s = torch::where(z < 1, xmax / (maxq - 1), s);
  s = to_half_grid(s);
  zero = torch::clamp(torch::round(-xmin / s), 1, maxq).unsqueeze(1);
  scale = s.unsqueeze(1);
}


// The loss-aware search's inner loop for one group (gptq_quantize): GPTQ's
// column loop over the group's `count` columns for lanes lane0 .. lane1 (a
// multiple of kSearchLanes apart) of the group stored transposed, wt
// [count, n] (lane c*out + r: candidate c of row r), with that lane's scale
// and zero sc, ze [n] and the group's block of the Cholesky factor, hinv
// [count, count]. Lanes never interact inside a group, so a block of
// kSearchLanes lanes runs the whole group with its data in cache (the
// straight loop, [n, count] row-major with a rank-1 update of the rest of the
// group per column, streamed n * count^2 / 2 floats from memory per group).
// Every value is computed by the operations the straight libtorch loop
// performs, in the same order and float precision: w / s, round half to even,
// + z, clamp to 0..maxq, s * (q - z), (w - deq) / d, loss += e * e and
// w_k -= e * h_k with the product rounded before the subtraction (neither
// clone below is compiled with FMA), so codes, errors and losses are those of
// fake_quant() and the matmul update bit for bit. On return row i of wt holds
// the weights column i was quantized from, codes [count, n] the codes and
// loss [n] each lane's sum of e^2.
constexpr int64_t kSearchLanes = 64;
typedef float SearchVec __attribute__((vector_size(32)));

__attribute__((target_clones("avx2", "default"))) void search_group_lanes(
    float* __restrict wt, const float* __restrict sc, const float* __restrict ze, const float* __restrict hinv,
    int64_t count, int64_t n, int64_t lane0, int64_t lane1, float maxq, uint8_t* __restrict codes,
    float* __restrict loss) {
  constexpr int64_t V = sizeof(SearchVec) / sizeof(float);
  // (x + 1.5 * 2^23) - 1.5 * 2^23 rounds |x| < 2^22 half to even in the
  // default rounding mode, as torch::round (nearbyint) does; x is first
  // clamped to +-2^22, which changes no code (|round(x)| >= 2^22 clamps to 0
  // or maxq either way).
  const SearchVec zero = {}, big = zero + 4194304.0f, nbig = zero - 4194304.0f, magic = zero + 12582912.0f,
                  mq = zero + maxq;
  alignas(32) float err[kSearchLanes], qf[kSearchLanes];
  for (int64_t j0 = lane0; j0 < lane1; j0 += kSearchLanes) {
    const float* s = sc + j0;
    const float* z = ze + j0;
    float* ls = loss + j0;
    for (int64_t i = 0; i < count; ++i) {
      const float* w = wt + i * n + j0;
      const SearchVec d = zero + hinv[i * count + i];
      for (int64_t j = 0; j < kSearchLanes; j += V) {
        SearchVec wv, sv, zv, lv;
        std::memcpy(&wv, w + j, sizeof wv);
        std::memcpy(&sv, s + j, sizeof sv);
        std::memcpy(&zv, z + j, sizeof zv);
        std::memcpy(&lv, ls + j, sizeof lv);
        SearchVec x = wv / sv;
        x = x < nbig ? nbig : x;
        x = x > big ? big : x;
        SearchVec q = ((x + magic) - magic) + zv;
        q = q < zero ? zero : q;
        q = q > mq ? mq : q;
        const SearchVec e = (wv - sv * (q - zv)) / d;
        lv += e * e;
        std::memcpy(ls + j, &lv, sizeof lv);
        std::memcpy(qf + j, &q, sizeof q);
        std::memcpy(err + j, &e, sizeof e);
      }
      uint8_t* cd = codes + i * n + j0;
      for (int64_t j = 0; j < kSearchLanes; ++j) cd[j] = static_cast<uint8_t>(qf[j]);
      const float* h = hinv + i * count;
      for (int64_t k = i + 1; k < count; ++k) {
        float* wk = wt + k * n + j0;
        const float hk = h[k];
        for (int64_t j = 0; j < kSearchLanes; ++j) wk[j] -= err[j] * hk;
      }
    }
  }
}

}  // namespace

void group_params(const torch::Tensor& w, int bits, GridStyle style, torch::Tensor& scale, torch::Tensor& zero) {
  const double maxq = (1 << bits) - 1;
  auto wf = w.to(torch::kFloat);
  auto mx = std::get<0>(wf.max(1));
  auto mn = std::get<0>(wf.min(1));
  if (style == GridStyle::gptq) {
    gptq_grid(mn.clamp_max(0), mx.clamp_min(0), bits, scale, zero);
  } else {
    auto s = to_half_grid((mx - mn).clamp_min(1e-5) / maxq);
    zero = torch::clamp(-torch::round(mn / s), 0, maxq).unsqueeze(1);
    scale = s.unsqueeze(1);
  }
}

void group_params_mse(const torch::Tensor& w, int bits, torch::Tensor& scale, torch::Tensor& zero, double norm,
                      int grid, double maxshrink) {
  auto wf = w.to(torch::kFloat);
  auto xmin = std::get<0>(wf.min(1)).clamp_max(0);
  auto xmax = std::get<0>(wf.max(1)).clamp_min(0);
  gptq_grid(xmin, xmax, bits, scale, zero);
  auto best = (fake_quant(wf, scale, zero, bits) - wf).abs_().pow_(norm).sum(1);
  const int steps = static_cast<int>(maxshrink * grid);
  for (int k = 1; k < steps; ++k) {
    const double p = 1.0 - static_cast<double>(k) / grid;
    torch::Tensor s1, z1;
    gptq_grid(xmin * p, xmax * p, bits, s1, z1);
    auto err = (fake_quant(wf, s1, z1, bits) - wf).abs_().pow_(norm).sum(1);
    auto better = err < best;
    best = torch::where(better, err, best);
    scale = torch::where(better.unsqueeze(1), s1, scale);
    zero = torch::where(better.unsqueeze(1), z1, zero);
  }
}

torch::Tensor fake_quant(const torch::Tensor& w, const torch::Tensor& scale, const torch::Tensor& zero, int bits,
                         torch::Tensor* codes) {
  const double maxq = (1 << bits) - 1;
  auto q = torch::clamp(torch::round(w / scale) + zero, 0, maxq);
  if (codes) *codes = q.to(torch::kInt32);
  return scale * (q - zero);
}

GroupQuant rtn_quantize(const torch::Tensor& w0, int bits, int64_t group_size, GridStyle style, bool mse) {
  auto w = w0.to(torch::kFloat).contiguous();
  const int64_t out = w.size(0), in = w.size(1), g = eff_group(group_size, in);
  const int64_t G = (in + g - 1) / g;
  GroupQuant r;
  r.bits = bits;
  r.group_size = group_size;
  r.codes = torch::empty({out, in}, torch::kInt32);
  r.deq = torch::empty({out, in}, torch::kFloat);
  r.scales = torch::empty({G, out}, torch::kFloat);
  r.zeros = torch::empty({G, out}, torch::kInt32);
  for (int64_t k = 0; k < G; ++k) {
    const int64_t a = k * g, b = std::min(in, a + g);
    auto blk = w.slice(1, a, b);
    torch::Tensor s, z, c;
    if (mse && style == GridStyle::gptq) group_params_mse(blk, bits, s, z);
    else group_params(blk, bits, style, s, z);
    r.deq.slice(1, a, b).copy_(fake_quant(blk, s, z, bits, &c));
    r.codes.slice(1, a, b).copy_(c);
    r.scales[k].copy_(s.squeeze(1));
    r.zeros[k].copy_(z.squeeze(1).to(torch::kInt32));
  }
  r.g_idx = torch::arange(in, torch::kLong).div(g, "floor").to(torch::kInt32);
  return r;
}

Hessian::Hessian(int64_t in) : sum_(torch::zeros({in, in}, torch::kDouble)) {}

void Hessian::add(const torch::Tensor& x) {
  auto m = x.reshape({-1, x.size(-1)}).to(torch::kDouble);
  sum_.addmm_(m.t(), m);
  n_ += m.size(0);
}

torch::Tensor Hessian::matrix() const {
  if (n_ == 0) return sum_.to(torch::kFloat);
  return (sum_ * (2.0 / static_cast<double>(n_))).to(torch::kFloat);
}

double gptq_objective(const torch::Tensor& w, const torch::Tensor& q, const torch::Tensor& H) {
  auto e = (w.to(torch::kDouble) - q.to(torch::kDouble));
  return (e.matmul(H.to(torch::kDouble)) * e).sum().item<double>() / 2.0;
}

GroupQuant gptq_quantize(const torch::Tensor& w0, const torch::Tensor& H0, const GptqOptions& opt) {
  if (opt.zero2 >= 0) {
    if (opt.bits < 1 || opt.bits > 8 || opt.zero2 > 2 * ((1 << opt.bits) - 1))
      throw std::invalid_argument("gptq_quantize: fixed grid needs bits 1..8 and zero2 <= 2 (2^bits - 1)");
    if (!opt.fixed_scale.defined() || !(opt.fixed_scale.min().item<double>() > 0))
      throw std::invalid_argument("gptq_quantize: a fixed grid needs fixed_scale > 0");
  }
  auto W = w0.to(torch::kFloat).clone();
  auto H = H0.to(torch::kFloat).clone();
  const int64_t out = W.size(0), in = W.size(1);
  if (H.size(0) != in || H.size(1) != in) throw std::invalid_argument("gptq_quantize: Hessian shape");
  const int bits = opt.bits;
  const int64_t g = eff_group(opt.group_size, in), G = (in + g - 1) / g;

  // diagonal(): a view (diag() would copy).
  auto dead = H.diagonal() == 0;
  {
    H.diagonal().masked_fill_(dead, 1.0);
    W.index_put_({torch::indexing::Slice(), dead}, 0.0);
  }
  auto params = [&](const torch::Tensor& cols, torch::Tensor& sc, torch::Tensor& ze) {
    if (opt.mse) group_params_mse(cols, bits, sc, ze);
    else group_params(cols, bits, GridStyle::gptq, sc, ze);
  };
  // Static groups: parameters from the weights as they are before any update.
  std::vector<torch::Tensor> st_scale, st_zero;
  if (opt.static_groups)
    for (int64_t k = 0; k < G; ++k) {
      torch::Tensor sc, ze;
      params(W.slice(1, k * g, std::min(in, (k + 1) * g)), sc, ze);
      st_scale.push_back(sc);
      st_zero.push_back(ze);
    }
  torch::Tensor perm, invperm;
  if (opt.act_order) {
    perm = torch::argsort(H.diagonal(), /*dim=*/0, /*descending=*/true);
    W = W.index_select(1, perm);
    H = H.index_select(0, perm).index_select(1, perm);
    invperm = torch::argsort(perm);
  }
  const double damp = opt.damp_percent * H.diagonal().mean().item<double>();
  H.diagonal().add_(damp);
  auto L = torch::linalg_cholesky(H);
  auto Hinv = torch::cholesky_inverse(L);
  Hinv = torch::linalg_cholesky(Hinv, /*upper=*/true);

  GroupQuant r;
  r.bits = bits;
  r.group_size = opt.group_size;
  auto Q = torch::zeros_like(W);
  auto codes = torch::zeros({out, in}, torch::kInt32);
  r.scales = torch::zeros({G, out}, torch::kFloat);
  r.zeros = torch::zeros({G, out}, torch::kInt32);
  torch::Tensor scale, zero;
  const int64_t B = std::max<int64_t>(1, opt.block_size);
  const bool fixed = opt.zero2 >= 0;
  const bool searching = opt.search > 0 && !opt.static_groups && !fixed;
  const double fz = fixed ? opt.zero2 / 2.0 : 0.0, fmaxq = (1 << bits) - 1;
  const auto fscale = fixed ? opt.fixed_scale.to(torch::kFloat).reshape({-1, 1}).expand({out, 1}).contiguous()
                            : torch::Tensor();
  // Loss-aware search: each group's columns replicated once per candidate and
  // run through GPTQ's column loop by search_group_lanes (lane c*out + r:
  // candidate c of row r; lanes padded to a multiple of kSearchLanes with
  // scale 1, zero 0 and weight 0, never chosen).
  const int64_t C = searching ? opt.search + 1 : 1;
  const int64_t N = C * out, Np = (N + kSearchLanes - 1) / kSearchLanes * kSearchLanes;
  const auto rows = torch::arange(out, torch::kLong);
  for (int64_t i1 = 0; searching && i1 < in; i1 += g) {
    const int64_t i2 = std::min(in, i1 + g), count = i2 - i1;
    auto W0 = W.slice(1, i1, i2);
    auto sc = torch::ones({Np}, torch::kFloat);
    auto ze = torch::zeros({Np}, torch::kFloat);
    {
      torch::Tensor s0, z0;
      params(W0, s0, z0);
      sc.slice(0, 0, out).copy_(s0.squeeze(1));
      ze.slice(0, 0, out).copy_(z0.squeeze(1));
      if (C > 1) {
        auto xmin = std::get<0>(W0.min(1)).clamp_max(0), xmax = std::get<0>(W0.max(1)).clamp_min(0);
        std::vector<double> ps;
        for (int64_t c = 1; c < C; ++c) ps.push_back(1.0 - static_cast<double>(c - 1) * opt.search_shrink / opt.search);
        // float(p) * x: what x * p with a double scalar computes on a float tensor.
        auto p = torch::tensor(ps, torch::kDouble).to(torch::kFloat).unsqueeze(1);
        torch::Tensor s1, z1;
        gptq_grid((xmin.unsqueeze(0) * p).reshape({-1}), (xmax.unsqueeze(0) * p).reshape({-1}), bits, s1, z1);
        sc.slice(0, out, N).copy_(s1.squeeze(1));
        ze.slice(0, out, N).copy_(z1.squeeze(1));
      }
    }
    auto Hinv1 = Hinv.slice(0, i1, i2).slice(1, i1, i2).contiguous();
    auto Wt = torch::zeros({count, Np}, torch::kFloat);
    Wt.slice(1, 0, N).view({count, C, out}).copy_(W0.t().unsqueeze(1).expand({count, C, out}));
    auto Ct = torch::empty({count, Np}, torch::kUInt8);
    auto loss = torch::zeros({Np}, torch::kFloat);
    {
      float* wt = Wt.data_ptr<float>();
      const float* scp = sc.data_ptr<float>();
      const float* zep = ze.data_ptr<float>();
      const float* hp = Hinv1.data_ptr<float>();
      uint8_t* cp = Ct.data_ptr<uint8_t>();
      float* lp = loss.data_ptr<float>();
      const auto maxq = static_cast<float>((1 << bits) - 1);
      at::parallel_for(0, Np / kSearchLanes, 1, [&](int64_t b, int64_t e) {
        search_group_lanes(wt, scp, zep, hp, count, Np, b * kSearchLanes, e * kSearchLanes, maxq, cp, lp);
      });
    }
    const auto idx = loss.slice(0, 0, N).view({C, out}).argmin(0) * out + rows;
    const auto s = sc.index_select(0, idx), z = ze.index_select(0, idx);
    const auto q = Ct.index_select(1, idx).to(torch::kFloat);  // [count, out]
    const auto deq = s * (q - z);
    Q.slice(1, i1, i2).copy_(deq.t());
    codes.slice(1, i1, i2).copy_(q.t());
    r.scales[i1 / g].copy_(s);
    r.zeros[i1 / g].copy_(z.to(torch::kInt32));
    if (i2 < in) {
      auto err = ((Wt.index_select(1, idx) - deq) / Hinv1.diagonal().unsqueeze(1)).t().contiguous();
      W.slice(1, i2).sub_(err.matmul(Hinv.slice(0, i1, i2).slice(1, i2)));
    }
  }
  for (int64_t i1 = 0; !searching && i1 < in; i1 += B) {
    const int64_t i2 = std::min(in, i1 + B), count = i2 - i1;
    auto W1 = W.slice(1, i1, i2).clone();
    auto Err1 = torch::zeros({out, count}, torch::kFloat);
    auto Hinv1 = Hinv.slice(0, i1, i2).slice(1, i1, i2);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = i1 + i;
      if (fixed) {
        auto w = W1.select(1, i).unsqueeze(1);
        auto qi = torch::clamp(torch::round(w / fscale + fz), 0, fmaxq);
        auto q = fscale * (qi - fz);
        Q.select(1, col).copy_(q.squeeze(1));
        codes.select(1, col).copy_(qi.squeeze(1).to(torch::kInt32));
        auto err = (w - q) / Hinv1[i][i];
        W1.slice(1, i).sub_(err.matmul(Hinv1.slice(0, i, i + 1).slice(1, i)));
        Err1.select(1, i).copy_(err.squeeze(1));
        continue;
      }
      if (opt.static_groups) {
        const int64_t k = (opt.act_order ? perm[col].item<int64_t>() : col) / g;
        scale = st_scale[k];
        zero = st_zero[k];
      } else if (col % g == 0) {
        const int64_t gend = std::min(in, col + g);
        torch::Tensor cols = W1.slice(1, i, std::min(count, i + (gend - col)));
        if (gend > i2) cols = torch::cat({cols, W.slice(1, i2, gend)}, 1);
        params(cols, scale, zero);
        r.scales[col / g].copy_(scale.squeeze(1));
        r.zeros[col / g].copy_(zero.squeeze(1).to(torch::kInt32));
      }
      auto w = W1.select(1, i).unsqueeze(1);
      torch::Tensor c;
      auto q = fake_quant(w, scale, zero, bits, &c);
      Q.select(1, col).copy_(q.squeeze(1));
      codes.select(1, col).copy_(c.squeeze(1));
      const auto d = Hinv1[i][i];
      auto err = (w - q) / d;  // [out, 1]
      W1.slice(1, i).sub_(err.matmul(Hinv1.slice(0, i, i + 1).slice(1, i)));
      Err1.select(1, i).copy_(err.squeeze(1));
    }
    if (i2 < in) W.slice(1, i2).sub_(Err1.matmul(Hinv.slice(0, i1, i2).slice(1, i2)));
  }
  if (fixed) {
    r.scales = fscale.reshape({1, out}).expand({G, out}).contiguous();
    r.zeros = torch::full({G, out}, opt.zero2, torch::kInt32);
  }
  auto g_of_pos = torch::arange(in, torch::kLong).div(g, "floor");
  if (opt.static_groups) {
    for (int64_t k = 0; k < G; ++k) {
      r.scales[k].copy_(st_scale[k].squeeze(1));
      r.zeros[k].copy_(st_zero[k].squeeze(1).to(torch::kInt32));
    }
    if (opt.act_order) {
      Q = Q.index_select(1, invperm);
      codes = codes.index_select(1, invperm);
    }
    r.g_idx = g_of_pos.to(torch::kInt32);
  } else if (opt.act_order) {
    Q = Q.index_select(1, invperm);
    codes = codes.index_select(1, invperm);
    r.g_idx = torch::empty({in}, torch::kLong);
    r.g_idx.index_put_({perm}, g_of_pos);
    r.g_idx = r.g_idx.to(torch::kInt32);
  } else {
    r.g_idx = g_of_pos.to(torch::kInt32);
  }
  r.codes = codes.contiguous();
  r.deq = Q.contiguous();
  if (searching) {
    GptqOptions plain_opt = opt;
    plain_opt.search = 0;
    auto plain = gptq_quantize(w0, H0, plain_opt);
    r.objective = gptq_objective(w0, r.deq, H0);
    plain.objective = gptq_objective(w0, plain.deq, H0);
    if (!(r.objective <= plain.objective)) {
      plain.search_fell_back = true;
      return plain;
    }
  }
  return r;
}

Bnb4Quant nf4_fp4_quantize(const torch::Tensor& w, const std::string& type, int64_t blocksize, bool double_quant,
                           const std::string& dtype) {
  Bnb4Quant r;
  r.stored = bnb4_quantize(w, type, blocksize, double_quant, dtype);
  r.deq = bnb4_dequantize(r.stored);
  return r;
}

Bnb8Quant int8_quantize(const torch::Tensor& w) {
  Bnb8Quant r;
  r.stored = bnb8_quantize(w);
  r.deq = bnb8_dequantize(r.stored);
  return r;
}

}  // namespace tenpak::quant
