// Codec 12 (lowrank_lanes): the encoder (tenpak_codec_encode) and the search
// for a tensor's factors. The decoder is lowrank_decode.cc; the format
// docs/FORMAT.md ("Codec 12").
//
// Factorisation without libtorch, in double:
//   1. pretest: the Gram matrix of up to 2·K + 16 evenly spaced rows of the
//      change D (K = the largest rank worth trying); its top K eigenvalues
//      must hold opt.min_energy of its trace, else D is not low-rank (a full
//      fine-tune) and nothing more is spent on it;
//   2. randomized range finder (Halko, Martinsson, Tropp 2011, alg. 4.4):
//      Y = D·Ω for a Gaussian Ω of K + 8 columns, opt.power_iters rounds of
//      Q = orth(Y), Z = orth(Dᵀ·Q), Y = D·Z, then Q = orth(Y); orth is modified
//      Gram-Schmidt run twice (the second pass restores orthogonality lost to
//      rounding);
//   3. Bᵀ = Dᵀ·Q; the eigenvectors W and values σ² of the small Gram matrix
//      B·Bᵀ (cyclic Jacobi) give D ≈ Σ_i u_i σ_i v_iᵀ with u_i = Q·w_i and
//      v_i = Bᵀ·w_i / σ_i; the factors store u_i·√σ_i and √σ_i·v_iᵀ (balanced,
//      so float16 storage keeps both in range).
// The rank is chosen by coded size (docs/FORMAT.md "Choosing it").
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "lanes_codec.h"
#include "tenpak/frame_codec.h"
#include "tenpak/lowrank_codec.h"
#include "tenpak/splitmix64.h"

namespace tenpak {
namespace {

struct Rng {  // SplitMix64: the same factors on every machine for the same input
  uint64_t s;
  uint64_t next() { return splitmix64(s); }
  double uni() { return ((next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0, 1)
  double normal() { return std::sqrt(-2.0 * std::log(uni())) * std::cos(6.283185307179586 * uni()); }
};

using Vecs = std::vector<std::vector<double>>;  // k vectors (columns of a tall matrix)

// Four partial sums: the compiler vectorizes it (the encoder's arithmetic
// needs no fixed order; only the decoder's does).
double dot(const double* a, const double* b, size_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

// Orthonormalises the vectors in place (modified Gram-Schmidt, `passes`
// passes: the second restores orthogonality lost to rounding); a vector
// left with (almost) nothing after the projections becomes zero.
void orth(Vecs& q, int passes = 2) {
  for (int pass = 0; pass < passes; ++pass) {
    for (size_t j = 0; j < q.size(); ++j) {
      auto& v = q[j];
      const size_t n = v.size();
      for (size_t i = 0; i < j; ++i) {
        const double c = dot(q[i].data(), v.data(), n);
        for (size_t t = 0; t < n; ++t) v[t] -= c * q[i][t];
      }
      const double nv = std::sqrt(dot(v.data(), v.data(), n));
      if (nv > 1e-300) for (double& x : v) x /= nv;
      else std::fill(v.begin(), v.end(), 0.0);
    }
  }
}

// y_j = D·x_j for the rows x cols change D (row-major floats).
Vecs mul_d(const std::vector<float>& d, uint64_t rows, uint64_t cols, const Vecs& x) {
  Vecs y(x.size(), std::vector<double>(rows));
  std::vector<double> row(cols);
  for (uint64_t i = 0; i < rows; ++i) {
    const float* r = d.data() + i * cols;
    for (uint64_t c = 0; c < cols; ++c) row[c] = r[c];
    for (size_t j = 0; j < x.size(); ++j) y[j][i] = dot(row.data(), x[j].data(), cols);
  }
  return y;
}

// z_j = Dᵀ·x_j.
Vecs mul_dt(const std::vector<float>& d, uint64_t rows, uint64_t cols, const Vecs& x) {
  Vecs z(x.size(), std::vector<double>(cols, 0.0));
  for (uint64_t i = 0; i < rows; ++i) {
    const float* r = d.data() + i * cols;
    for (size_t j = 0; j < x.size(); ++j) {
      const double s = x[j][i];
      if (s == 0) continue;
      double* zj = z[j].data();
      for (uint64_t c = 0; c < cols; ++c) zj[c] += s * r[c];
    }
  }
  return z;
}

// Eigen-decomposition of the symmetric k x k matrix a (row-major, destroyed):
// values descending, vecs[i] the unit eigenvector of values[i]. Cyclic Jacobi,
// until the off-diagonal energy is below `tol` times the diagonal's.
void jacobi(std::vector<double>& a, size_t k, std::vector<double>& values, Vecs& vecs, double tol = 1e-30) {
  std::vector<double> v(k * k, 0.0);
  for (size_t i = 0; i < k; ++i) v[i * k + i] = 1;
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0, diag = 0;
    for (size_t p = 0; p < k; ++p) {
      diag += a[p * k + p] * a[p * k + p];
      for (size_t q = p + 1; q < k; ++q) off += a[p * k + q] * a[p * k + q];
    }
    if (off <= tol * diag || off == 0) break;
    for (size_t p = 0; p < k; ++p)
      for (size_t q = p + 1; q < k; ++q) {
        const double apq = a[p * k + q];
        if (std::fabs(apq) < 1e-300) continue;
        const double theta = (a[q * k + q] - a[p * k + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (size_t r = 0; r < k; ++r) {  // A = A·J
          const double arp = a[r * k + p], arq = a[r * k + q];
          a[r * k + p] = c * arp - s * arq;
          a[r * k + q] = s * arp + c * arq;
        }
        for (size_t r = 0; r < k; ++r) {  // A = Jᵀ·A
          const double apr = a[p * k + r], aqr = a[q * k + r];
          a[p * k + r] = c * apr - s * aqr;
          a[q * k + r] = s * apr + c * aqr;
        }
        for (size_t r = 0; r < k; ++r) {
          const double vrp = v[r * k + p], vrq = v[r * k + q];
          v[r * k + p] = c * vrp - s * vrq;
          v[r * k + q] = s * vrp + c * vrq;
        }
      }
  }
  std::vector<size_t> order(k);
  for (size_t i = 0; i < k; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return a[x * k + x] > a[y * k + y]; });
  values.resize(k);
  vecs.assign(k, std::vector<double>(k));
  for (size_t i = 0; i < k; ++i) {
    values[i] = a[order[i] * k + order[i]];
    for (size_t r = 0; r < k; ++r) vecs[i][r] = v[r * k + order[i]];
  }
}

void put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

Result<std::string> encode_lowrank_frame(const LowRankFactors& f, uint64_t first, const uint8_t* out,
                                         const uint8_t* base, size_t n, DType dt, int zstd_level) {
  if (dt != DType::F32 && dt != DType::F16 && dt != DType::BF16)
    return Status{Errc::invalid, "lowrank_lanes: dtype must be F32, F16 or BF16"};
  if (f.t.rank == 0) return Status{Errc::invalid, "lowrank_lanes: no factors"};
  const size_t count = n / dtype_size(dt);
  auto a = encode_approx_frame(f.t, first, count, zstd_level);
  if (!a.ok()) return a.status();
  // P exactly as every reader computes it: through the decoder itself.
  thread_local std::vector<uint8_t> pred;
  pred.resize(n);
  TP_RETURN_IF_ERROR(decode_approx(reinterpret_cast<const uint8_t*>(a->data()), a->size(), base, n, dt, pred.data()));
  std::string payload;
  put32(payload, static_cast<uint32_t>(a->size()));
  payload += *a;
  lanes::encode(out, pred.data(), n, dt, payload);
  return payload;
}

LowRankFactors find_lowrank_factors(const uint8_t* ft, const uint8_t* base, uint64_t rows, uint64_t cols, DType dt,
                                    const LowRankOptions& opt) {
  LowRankFactors res;
  const uint64_t total = rows * cols;
  if (dt != DType::F32 && dt != DType::F16 && dt != DType::BF16) { res.why = "dtype not F32/F16/BF16"; return res; }
  if (rows < 8 || cols < 8) { res.why = "fewer than 8 rows or columns"; return res; }
  if (total > opt.max_elements) { res.why = "larger than max_elements"; return res; }
  // The largest rank whose float32 factors stay under half the F32 tensor:
  // past it a low-rank model cannot pay (stories260K's merged rank-8 k_proj,
  // 32 x 64, pays with factors at 37% of its F32 size).
  const uint64_t kmax = std::min<uint64_t>({opt.max_rank, total / (2 * (rows + cols)), std::min(rows, cols) / 2});
  if (kmax < 1) { res.why = "too small for any rank"; return res; }
  const size_t w = dtype_size(dt);
  // Row r of the change, in double (false: a non-finite value).
  auto row_diff = [&](uint64_t r, double* out) {
    thread_local std::vector<float> fa, fb;
    fa.resize(cols);
    fb.resize(cols);
    convert_dtype(ft + r * cols * w, dt, cols, DType::F32, reinterpret_cast<uint8_t*>(fa.data()));
    convert_dtype(base + r * cols * w, dt, cols, DType::F32, reinterpret_cast<uint8_t*>(fb.data()));
    bool finite = true;
    for (uint64_t c = 0; c < cols; ++c) {
      out[c] = static_cast<double>(fa[c]) - static_cast<double>(fb[c]);
      finite = finite && std::isfinite(out[c]);
    }
    return finite;
  };
  // 1. Pretest, O(kmax³) whatever the tensor's size: on c = min(cols,
  // 2·(kmax + 8) + 32) evenly spaced columns, if D has rank r ≤ kmax the
  // span of kmax + 8 of its rows holds (nearly) all of any other row; for a
  // full-rank change (a full fine-tune) about (kmax + 8) / c of it (under
  // half). Held-out rows must keep opt.min_energy of their energy in that span.
  if (rows > kmax + 8) {
    const uint64_t s = kmax + 8, nc = std::min<uint64_t>(cols, 2 * s + 32);
    std::vector<double> full(cols);
    // Row r of D on the sampled columns.
    auto sampled_row = [&](uint64_t r, double* out) {
      if (!row_diff(r, full.data())) return false;
      for (uint64_t j = 0; j < nc; ++j) out[j] = full[j * cols / nc];
      return true;
    };
    Vecs basis(s, std::vector<double>(nc));
    std::vector<bool> in_basis(rows, false);
    for (uint64_t a = 0; a < s; ++a) {
      in_basis[a * rows / s] = true;
      if (!sampled_row(a * rows / s, basis[a].data())) { res.why = "non-finite values"; return res; }
    }
    std::vector<uint64_t> others;  // held-out candidates: every row not in the basis
    for (uint64_t r = 0; r < rows; ++r)
      if (!in_basis[r]) others.push_back(r);
    orth(basis, 1);  // one pass: a pretest (a basis a little off only lets a tensor through to the search)
    double held = 0, kept = 0;
    std::vector<double> x(nc);
    const uint64_t h = std::min<uint64_t>(8, others.size());
    for (uint64_t a = 0; a < h; ++a) {
      const uint64_t r = others[(2 * a + 1) * others.size() / (2 * h)];
      if (!sampled_row(r, x.data())) { res.why = "non-finite values"; return res; }
      held += dot(x.data(), x.data(), nc);
      for (auto& q : basis) {
        const double c = dot(q.data(), x.data(), nc);
        kept += c * c;
      }
    }
    if (held > 0 && kept < opt.min_energy * held) {
      res.why = "not low-rank: " + std::to_string(kmax + 8) + " rows span " +
                std::to_string(100.0 * kept / held).substr(0, 5) + "% of held-out rows";
      return res;
    }
  }
  std::vector<float> d(total);
  {
    std::vector<double> x(cols);
    bool any = false;
    for (uint64_t r = 0; r < rows; ++r) {
      if (!row_diff(r, x.data())) { res.why = "non-finite values"; return res; }
      for (uint64_t c = 0; c < cols; ++c) {
        d[r * cols + c] = static_cast<float>(x[c]);
        any = any || x[c] != 0;
      }
    }
    if (!any) { res.why = "no change"; return res; }
  }
  // 2. Range finder.
  const uint64_t k = std::min<uint64_t>(kmax + 8, std::min(rows, cols));
  Rng rng{0x6c6f7772616e6bull ^ (rows * 1000003u + cols)};
  Vecs omega(k, std::vector<double>(cols));
  for (auto& v : omega)
    for (double& x : v) x = rng.normal();
  Vecs q = mul_d(d, rows, cols, omega);
  orth(q);
  for (uint32_t it = 0; it < opt.power_iters; ++it) {
    Vecs z = mul_dt(d, rows, cols, q);
    orth(z);
    q = mul_d(d, rows, cols, z);
    orth(q);
  }
  // 3. SVD of B = Qᵀ·D through its k x k Gram matrix.
  Vecs bt = mul_dt(d, rows, cols, q);  // rows of B
  std::vector<double> g(k * k);
  for (uint64_t a = 0; a < k; ++a)
    for (uint64_t b = a; b < k; ++b) g[a * k + b] = g[b * k + a] = dot(bt[a].data(), bt[b].data(), cols);
  std::vector<double> lam;
  Vecs wv;
  jacobi(g, k, lam, wv);
  for (uint64_t i = 0; i < k; ++i) {
    if (!(lam[i] > lam[0] * 1e-24) || lam[i] <= 0) break;
    res.sigma.push_back(std::sqrt(lam[i]));
  }
  const uint64_t nsig = res.sigma.size(), avail = std::min(nsig, kmax);  // components above the floor; usable
  if (avail == 0) { res.why = "no component"; return res; }
  // Full factors up to `avail`: uf rows x avail (row-major), vf avail x cols.
  std::vector<double> uf(rows * avail), vf(avail * cols);
  for (uint64_t i = 0; i < avail; ++i) {
    const double rs = std::sqrt(res.sigma[i]);
    for (uint64_t j = 0; j < k; ++j) {
      const double wj = wv[i][j];
      if (wj == 0) continue;
      for (uint64_t r = 0; r < rows; ++r) uf[r * avail + i] += wj * q[j][r] * rs;
      for (uint64_t c = 0; c < cols; ++c) vf[i * cols + c] += wj * bt[j][c] / rs;
    }
  }
  // Ranks tried, ascending: a ladder and the largest gap of the spectrum
  // (a LoRA of rank r has r components far above the rounding noise; σ is
  // known up to k = kmax + 8, so a gap at kmax is seen), stopped at the
  // first rank past the gap where the residual stops shrinking (under 2%
  // smaller than at the rank before).
  uint64_t gap_r = 0;
  {
    double gap = 4;  // a gap is a ratio of at least 4 between neighbouring singular values
    for (uint64_t i = 0; i + 1 < nsig && i < kmax; ++i)
      if (res.sigma[i] / res.sigma[i + 1] > gap) gap = res.sigma[i] / res.sigma[i + 1], gap_r = i + 1;
    if (!gap_r && nsig <= kmax && nsig < k) gap_r = nsig;  // every component above the floor is usable
  }
  std::vector<uint64_t> ranks;
  for (uint64_t r : {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128})
    if (r <= avail) ranks.push_back(r);
  if (gap_r) ranks.push_back(gap_r);
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
  // Sample on which sizes are measured: the tensor's own frames when it has
  // at most 4, else 16 evenly spaced blocks of whole rows (about 64 Ki
  // elements each); sizes scale by total / sampled elements.
  const uint64_t fe = opt.frame_elements ? opt.frame_elements : kMaxFrameOut / w;
  const uint64_t nframes = (total + fe - 1) / fe;
  std::vector<std::pair<uint64_t, uint64_t>> blocks;  // [first, first + count)
  if (nframes <= 4) {
    for (uint64_t e = 0; e < total; e += fe) blocks.push_back({e, std::min(fe, total - e)});
  } else {
    const uint64_t br = std::max<uint64_t>(1, (uint64_t(1) << 16) / cols);
    for (uint64_t b = 0; b < 16; ++b) {
      const uint64_t r0 = b * (rows - br) / 15;
      blocks.push_back({r0 * cols, std::min(br, rows - r0) * cols});
    }
  }
  uint64_t sampled = 0;
  for (auto& [b0, bn] : blocks) sampled += bn;
  const double scale = static_cast<double>(total) / static_cast<double>(sampled);
  {
    double lanes_bytes = 0;
    for (auto& [b0, bn] : blocks) {
      std::string p;
      lanes::encode(ft + b0 * w, base + b0 * w, bn * w, dt, p);
      lanes_bytes += static_cast<double>(p.size());
    }
    res.est_lanes_bytes = lanes_bytes * scale;
  }
  // Size of the tensor at rank r, factors stored with `bits`: the codec-12
  // payloads of the sample scaled, with V's per-frame copies counted for
  // every frame (the sample holds V once per block).
  // Returns {total, residual}, both scaled to the whole tensor.
  auto cost = [&](const LowRankFactors& f) -> std::pair<double, double> {
    double resid = 0, head = 0;
    for (auto& [b0, bn] : blocks) {
      auto p = encode_lowrank_frame(f, b0, ft + b0 * w, base + b0 * w, bn * w, dt, opt.zstd_level);
      if (!p.ok()) return {1e300, 1e300};
      const uint32_t a = static_cast<uint32_t>(static_cast<uint8_t>((*p)[0])) |
                         static_cast<uint32_t>(static_cast<uint8_t>((*p)[1])) << 8 |
                         static_cast<uint32_t>(static_cast<uint8_t>((*p)[2])) << 16 |
                         static_cast<uint32_t>(static_cast<uint8_t>((*p)[3])) << 24;
      resid += static_cast<double>(p->size() - 4 - a);
      head += 4 + a;
    }
    if (nframes <= 4) return {resid + head, resid};
    const uint8_t b0 = f.t.bits[0];
    const double fb = b0 == 0 ? 4 : b0 == 16 ? 2 : b0 / 8.0;
    const double ve = static_cast<double>(f.t.rank) * fb;
    // (quantized vectors also carry a float32 scale each)
    const double vs = b0 == 0 || b0 == 16 ? 0 : 4.0 * f.t.rank;
    return {resid * scale + static_cast<double>(nframes) * (4 + 6 + 12 + f.t.rank + ve * static_cast<double>(cols) + 2 * vs) +
                ve * static_cast<double>(rows),
            resid * scale};
  };
  LowRankFactors cand, best;
  double best_cost = 1e300;
  cand.t.method = ApproxMethod::lowrank;
  cand.t.rows = rows;
  cand.t.cols = cols;
  // Factor precisions tried: float32 and float16; for F16/BF16 outputs also
  // 8 and 4 bits per value (codec 11's quantized vectors): the prediction's
  // error then only has to stay small against the output's own ulp, and
  // a large matrix carries V in every frame.
  std::vector<uint8_t> precisions = {0, 16};
  if (dt != DType::F32) {
    precisions.push_back(8);
    precisions.push_back(4);
  }
  // Tries rank r at the given precisions; returns the residual with float32 factors.
  auto try_rank = [&](uint64_t r, const std::vector<uint8_t>& precs) {
    double resid32 = 1e300;
    for (uint8_t bits : precs) {
      cand.t.rank = static_cast<uint32_t>(r);
      cand.t.bits.assign(r, bits);
      cand.t.u.resize(rows * r);
      cand.t.v.resize(r * cols);
      for (uint64_t i = 0; i < rows; ++i)
        for (uint64_t j = 0; j < r; ++j) cand.t.u[i * r + j] = static_cast<float>(uf[i * avail + j]);
      for (uint64_t j = 0; j < r; ++j)
        for (uint64_t c = 0; c < cols; ++c) cand.t.v[j * cols + c] = static_cast<float>(vf[j * cols + c]);
      const auto [c, resid] = cost(cand);
      if (c < best_cost) best_cost = c, best = cand;
      if (bits == 0) resid32 = resid;
    }
    return resid32;
  };
  // The rank with float32 factors, then the other precisions at the best
  // rank and the ladder's ranks on either side (the search's cost is a few
  // frame encodings per rank: tried at every precision it tripled a merged
  // LoRA's build time).
  double prev = res.est_lanes_bytes;
  std::vector<uint64_t> tried;
  for (uint64_t r : ranks) {
    const double resid = try_rank(r, {0});
    tried.push_back(r);
    if (r >= gap_r && resid > 0.98 * prev) break;
    prev = resid;
  }
  if (best.t.rank) {
    const auto at = std::find(tried.begin(), tried.end(), uint64_t(best.t.rank)) - tried.begin();
    const std::vector<uint8_t> others(precisions.begin() + 1, precisions.end());
    for (auto i = std::max<std::ptrdiff_t>(0, at - 1); i <= at + 1 && i < static_cast<std::ptrdiff_t>(tried.size()); ++i)
      try_rank(tried[i], others);
  }
  res.est_bytes = best_cost;
  if (best.t.rank == 0 || !(best_cost < res.est_lanes_bytes * (1 - opt.min_gain))) {
    res.why = "low-rank model does not pay: " + std::to_string(static_cast<uint64_t>(best_cost)) + " vs " +
              std::to_string(static_cast<uint64_t>(res.est_lanes_bytes)) + " B (sub_lanes)";
    return res;
  }
  res.t = std::move(best.t);
  const uint8_t b0 = res.t.bits[0];
  res.why = "rank " + std::to_string(res.t.rank) +
            (b0 == 0 ? " float32" : b0 == 16 ? " float16" : " " + std::to_string(b0) + "-bit");
  return res;
}

}  // namespace tenpak
