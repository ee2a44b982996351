// AWQ's search steps (scales, clipping) for one set of linears.
#include <cmath>
#include <limits>

#include "tenpak/quantizers.h"

namespace tenpak::quant {

torch::Tensor awq_search_scales(const torch::Tensor& x_mean, const std::vector<torch::Tensor>& weights,
                                int64_t group_size, int n_grid,
                                const std::function<double(const torch::Tensor&)>& loss) {
  const int64_t in = x_mean.numel();
  const int64_t g = group_size <= 0 ? in : group_size;
  auto w = torch::cat(weights, 0).to(torch::kFloat);
  auto wa = w.abs().reshape({-1, g});
  auto w_scale = (wa / (std::get<0>(wa.max(1, /*keepdim=*/true)) + 1e-6)).reshape({w.size(0), in});
  auto w_mean = w_scale.mean(0);
  auto xm = x_mean.to(torch::kFloat);

  torch::Tensor best = torch::ones({in}, torch::kFloat);
  double best_loss = loss(best);
  for (int r = 0; r < n_grid; ++r) {
    const double ratio = static_cast<double>(r) / n_grid;
    auto s = (xm.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp_min(1e-4);
    s = s / (s.max() * s.min()).sqrt();
    const double l = loss(s);
    if (std::isfinite(l) && l < best_loss) {
      best_loss = l;
      best = s;
    }
  }
  return best;
}

torch::Tensor awq_clip(const torch::Tensor& w0, const torch::Tensor& x0, int bits, int64_t group_size, int n_grid,
                       double max_shrink) {
  auto w = w0.to(torch::kFloat);
  const int64_t out = w.size(0), in = w.size(1);
  const int64_t g = group_size <= 0 ? in : group_size;
  auto x = x0.reshape({-1, in}).to(torch::kFloat);
  // Every (n / 512)-th token, as AutoAWQ's _compute_best_clip samples them
  // (n_sample_token 512: between 512 and 1023 tokens when n >= 512).
  const int64_t n = x.size(0);
  if (n > 512) x = x.slice(0, 0, n, n / 512);
  auto result = w.clone();
  for (int64_t a = 0; a < in; a += g) {
    const int64_t b = std::min(in, a + g);
    auto wg = w.slice(1, a, b);
    auto xg = x.slice(1, a, b);
    auto org_out = xg.matmul(wg.t());                          // [tokens, out]
    auto org_max = std::get<0>(wg.abs().max(1, true));         // [out, 1]
    auto best_max = org_max.clone();
    auto min_err = torch::full({out}, std::numeric_limits<float>::infinity(), torch::kFloat);
    const int steps = static_cast<int>(max_shrink * n_grid);
    for (int k = 0; k < steps; ++k) {
      auto mx = org_max * (1.0 - static_cast<double>(k) / n_grid);
      auto cur = torch::max(torch::min(wg, mx), -mx);
      torch::Tensor s, z;
      group_params(cur, bits, GridStyle::awq, s, z);
      auto qw = fake_quant(cur, s, z, bits);
      auto err = (xg.matmul(qw.t()) - org_out).pow(2).mean(0);  // [out]
      auto better = err < min_err;
      min_err = torch::where(better, err, min_err);
      best_max = torch::where(better.unsqueeze(1), mx, best_max);
    }
    result.slice(1, a, b).copy_(torch::max(torch::min(wg, best_max), -best_max));
  }
  return result;
}

GroupQuant awq_quantize_linear(const torch::Tensor& w0, const torch::Tensor& x0, int bits, int64_t group_size,
                               torch::Tensor* s_out) {
  auto w = w0.to(torch::kFloat);
  auto x = x0.reshape({-1, w.size(1)}).to(torch::kFloat);
  auto ref = x.matmul(w.t());
  auto x_mean = x.abs().mean(0);
  auto loss = [&](const torch::Tensor& s) {
    auto q = rtn_quantize(w * s, bits, group_size, GridStyle::awq).deq / s;
    return (x.matmul(q.t()) - ref).pow(2).mean().item<double>();
  };
  auto s = awq_search_scales(x_mean, {w}, group_size, 20, loss);
  auto ws = w * s;
  auto clipped = awq_clip(ws, x / s, bits, group_size);
  if (s_out) *s_out = s;
  return rtn_quantize(clipped, bits, group_size, GridStyle::awq);
}

}  // namespace tenpak::quant
