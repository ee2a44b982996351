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

namespace tenpak {
namespace {

struct Rng {  // SplitMix64: the same factors on every machine for the same input
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uni() { return ((next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }  // (0, 1)
  double normal() { return std::sqrt(-2.0 * std::log(uni())) * std::cos(6.283185307179586 * uni()); }
};

using Vecs = std::vector<std::vector<double>>;  // k vectors (columns of a tall matrix)

double dot(const double* a, const double* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Orthonormalises the vectors in place (modified Gram-Schmidt, two passes);
// a vector left with (almost) nothing after the projections becomes zero.
void orth(Vecs& q) {
  for (int pass = 0; pass < 2; ++pass) {
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
// values descending, vecs[i] the unit eigenvector of values[i]. Cyclic Jacobi.
void jacobi(std::vector<double>& a, size_t k, std::vector<double>& values, Vecs& vecs) {
  std::vector<double> v(k * k, 0.0);
  for (size_t i = 0; i < k; ++i) v[i * k + i] = 1;
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0, diag = 0;
    for (size_t p = 0; p < k; ++p) {
      diag += a[p * k + p] * a[p * k + p];
      for (size_t q = p + 1; q < k; ++q) off += a[p * k + q] * a[p * k + q];
    }
    if (off <= 1e-30 * diag || off == 0) break;
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
  // past it a low-rank model cannot pay.
  const uint64_t kmax = std::min<uint64_t>({opt.max_rank, total / (2 * (rows + cols)), std::min(rows, cols) / 2});
  if (kmax < 1) { res.why = "too small for any rank"; return res; }
  const size_t w = dtype_size(dt);
  std::vector<float> d(total);
  {
    // Row by row: the change is the only tensor-sized buffer held.
    std::vector<float> fa(cols), fb(cols);
    bool any = false;
    for (uint64_t r = 0; r < rows; ++r) {
      convert_dtype(ft + r * cols * w, dt, cols, DType::F32, reinterpret_cast<uint8_t*>(fa.data()));
      convert_dtype(base + r * cols * w, dt, cols, DType::F32, reinterpret_cast<uint8_t*>(fb.data()));
      for (uint64_t c = 0; c < cols; ++c) {
        const double x = static_cast<double>(fa[c]) - static_cast<double>(fb[c]);
        if (!std::isfinite(x)) { res.why = "non-finite values"; return res; }
        d[r * cols + c] = static_cast<float>(x);
        any = any || x != 0;
      }
    }
    if (!any) { res.why = "no change"; return res; }
  }
  // 1. Pretest on evenly spaced rows.
  {
    const uint64_t s = std::min<uint64_t>(rows, 2 * kmax + 16);
    std::vector<std::vector<double>> sr(s, std::vector<double>(cols));
    for (uint64_t a = 0; a < s; ++a) {
      const uint64_t r = a * rows / s;
      for (uint64_t c = 0; c < cols; ++c) sr[a][c] = d[r * cols + c];
    }
    std::vector<double> g(s * s);
    for (uint64_t a = 0; a < s; ++a)
      for (uint64_t b = a; b < s; ++b) g[a * s + b] = g[b * s + a] = dot(sr[a].data(), sr[b].data(), cols);
    std::vector<double> ev;
    Vecs evec;
    jacobi(g, s, ev, evec);
    double tr = 0, top = 0;
    for (uint64_t i = 0; i < s; ++i) {
      tr += std::max(ev[i], 0.0);
      if (i < kmax) top += std::max(ev[i], 0.0);
    }
    if (tr <= 0 || top < opt.min_energy * tr) {
      res.why = "not low-rank: the top " + std::to_string(kmax) + " components of sampled rows hold " +
                std::to_string(tr > 0 ? 100.0 * top / tr : 0.0).substr(0, 5) + "% of the change";
      return res;
    }
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
  uint64_t avail = 0;
  for (uint64_t i = 0; i < std::min(k, kmax); ++i) {
    if (!(lam[i] > lam[0] * 1e-24) || lam[i] <= 0) break;
    res.sigma.push_back(std::sqrt(lam[i]));
    ++avail;
  }
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
  // Ranks tried: the largest gap of the spectrum first (a LoRA of rank r
  // has r components far above the rounding noise), then a ladder of ranks
  // above it (ascending) and below it (descending), each direction stopped
  // when the size stops shrinking: two ranks in a row no better than the best.
  uint64_t gap_r = 0;
  {
    double gap = 4;  // a gap is a ratio of at least 4 between neighbouring singular values
    for (uint64_t i = 0; i + 1 < avail; ++i)
      if (res.sigma[i + 1] > 0 && res.sigma[i] / res.sigma[i + 1] > gap) gap = res.sigma[i] / res.sigma[i + 1], gap_r = i + 1;
    if (!gap_r && avail < std::min(k, kmax)) gap_r = avail;  // every component found above the floor
  }
  std::vector<uint64_t> up, down;
  for (uint64_t r : {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128}) {
    if (r > avail || r == gap_r) continue;
    (r > gap_r ? up : down).push_back(r);
  }
  std::reverse(down.begin(), down.end());
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
  auto cost = [&](const LowRankFactors& f) {
    double resid = 0, head = 0;
    for (auto& [b0, bn] : blocks) {
      auto p = encode_lowrank_frame(f, b0, ft + b0 * w, base + b0 * w, bn * w, dt, opt.zstd_level);
      if (!p.ok()) return 1e300;
      const uint32_t a = static_cast<uint32_t>(static_cast<uint8_t>((*p)[0])) |
                         static_cast<uint32_t>(static_cast<uint8_t>((*p)[1])) << 8 |
                         static_cast<uint32_t>(static_cast<uint8_t>((*p)[2])) << 16 |
                         static_cast<uint32_t>(static_cast<uint8_t>((*p)[3])) << 24;
      resid += static_cast<double>(p->size() - 4 - a);
      head += 4 + a;
    }
    if (nframes <= 4) return resid + head;
    const double fb = f.t.bits[0] == 16 ? 2 : 4;
    const double ve = static_cast<double>(f.t.rank) * fb;
    return resid * scale + static_cast<double>(nframes) * (4 + 6 + 12 + f.t.rank + ve * static_cast<double>(cols)) +
           ve * static_cast<double>(rows);
  };
  LowRankFactors cand, best;
  double best_cost = 1e300;
  cand.t.method = ApproxMethod::lowrank;
  cand.t.rows = rows;
  cand.t.cols = cols;
  // Tries rank r with float32 and float16 factors; true when it beat the best.
  auto try_rank = [&](uint64_t r) {
    bool better = false;
    for (uint8_t bits : {uint8_t(0), uint8_t(16)}) {
      cand.t.rank = static_cast<uint32_t>(r);
      cand.t.bits.assign(r, bits);
      cand.t.u.resize(rows * r);
      cand.t.v.resize(r * cols);
      for (uint64_t i = 0; i < rows; ++i)
        for (uint64_t j = 0; j < r; ++j) cand.t.u[i * r + j] = static_cast<float>(uf[i * avail + j]);
      for (uint64_t j = 0; j < r; ++j)
        for (uint64_t c = 0; c < cols; ++c) cand.t.v[j * cols + c] = static_cast<float>(vf[j * cols + c]);
      const double c = cost(cand);
      if (c < best_cost) best_cost = c, best = cand, better = true;
    }
    return better;
  };
  if (gap_r) try_rank(gap_r);
  for (auto* ladder : {&up, &down}) {
    int worse = 0;
    for (uint64_t r : *ladder) {
      if (try_rank(r)) worse = 0;
      else if (++worse >= 2) break;
    }
  }
  res.est_bytes = best_cost;
  if (best.t.rank == 0 || !(best_cost < res.est_lanes_bytes * (1 - opt.min_gain))) {
    res.why = "low-rank model does not pay: " + std::to_string(static_cast<uint64_t>(best_cost)) + " vs " +
              std::to_string(static_cast<uint64_t>(res.est_lanes_bytes)) + " B (sub_lanes)";
    return res;
  }
  res.t = std::move(best.t);
  res.why = "rank " + std::to_string(res.t.rank) + (res.t.bits[0] == 16 ? " float16" : " float32");
  return res;
}

}  // namespace tenpak
