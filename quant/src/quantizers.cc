#include "tenpak/quantizers.h"

#include <cmath>
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
  // Loss-aware search: one lazy block per group, its columns replicated once
  // per candidate ([C * out, count], candidate c in rows c*out ..).
  const int64_t C = searching ? opt.search + 1 : 1;
  const auto rows = torch::arange(out, torch::kLong);
  for (int64_t i1 = 0; searching && i1 < in; i1 += g) {
    const int64_t i2 = std::min(in, i1 + g), count = i2 - i1;
    auto W0 = W.slice(1, i1, i2);
    auto W1 = W0.repeat({C, 1});
    auto sc = torch::empty({C * out, 1}, torch::kFloat);
    auto ze = torch::empty({C * out, 1}, torch::kFloat);
    {
      torch::Tensor s0, z0;
      params(W0, s0, z0);
      sc.slice(0, 0, out).copy_(s0);
      ze.slice(0, 0, out).copy_(z0);
      auto xmin = std::get<0>(W0.min(1)).clamp_max(0), xmax = std::get<0>(W0.max(1)).clamp_min(0);
      for (int64_t c = 1; c < C; ++c) {
        const double p = 1.0 - static_cast<double>(c - 1) * opt.search_shrink / opt.search;
        torch::Tensor s1, z1;
        gptq_grid(xmin * p, xmax * p, bits, s1, z1);
        sc.slice(0, c * out, (c + 1) * out).copy_(s1);
        ze.slice(0, c * out, (c + 1) * out).copy_(z1);
      }
    }
    auto Hinv1 = Hinv.slice(0, i1, i2).slice(1, i1, i2);
    auto Err1 = torch::empty({C * out, count}, torch::kFloat);
    auto Qg = torch::empty({C * out, count}, torch::kFloat);
    auto Cg = torch::empty({C * out, count}, torch::kInt32);
    auto loss = torch::zeros({C * out}, torch::kFloat);
    for (int64_t i = 0; i < count; ++i) {
      auto w = W1.select(1, i).unsqueeze(1);
      torch::Tensor c;
      auto q = fake_quant(w, sc, ze, bits, &c);
      Qg.select(1, i).copy_(q.squeeze(1));
      Cg.select(1, i).copy_(c.squeeze(1));
      auto err = (w - q) / Hinv1[i][i];
      loss.add_(err.squeeze(1).square());
      W1.slice(1, i).sub_(err.matmul(Hinv1.slice(0, i, i + 1).slice(1, i)));
      Err1.select(1, i).copy_(err.squeeze(1));
    }
    const auto idx = loss.view({C, out}).argmin(0) * out + rows;
    Q.slice(1, i1, i2).copy_(Qg.index_select(0, idx));
    codes.slice(1, i1, i2).copy_(Cg.index_select(0, idx));
    r.scales[i1 / g].copy_(sc.index_select(0, idx).squeeze(1));
    r.zeros[i1 / g].copy_(ze.index_select(0, idx).squeeze(1).to(torch::kInt32));
    if (i2 < in) W.slice(1, i2).sub_(Err1.index_select(0, idx).matmul(Hinv.slice(0, i1, i2).slice(1, i2)));
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
