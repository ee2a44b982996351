#include "dataset_fixtures.h"
#include "fixtures.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli_util.h"
#include "rng.h"
#include "commands.h"
#include "ml_dispatch.h"
#include "tenpak/delta.h"
#include "tenpak/frame_codec.h"
#include "tenpak/safetensors.h"

namespace fs = std::filesystem;

namespace tenpak::fixtures {
namespace {

using tools::Rng;

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> shape;
  enum Role { weight, norm, embed } role = weight;
  int layer = -1;
};

struct Arch {
  uint64_t hidden, layers, vocab, inter;
};

Arch arch_for(uint64_t size_mb, size_t elem) {
  // parameters ~ vocab*h*2 + layers*(4h^2 + 3*h*inter); choose h from size.
  Arch a;
  uint64_t params = size_mb * (1ull << 20) / elem;
  a.hidden = 256;
  while (true) {
    uint64_t h = a.hidden * 2;
    uint64_t per_layer = 4 * h * h + 3 * h * (h * 8 / 3);
    if (per_layer * 4 + 8000 * h * 2 > params) break;
    a.hidden = h;
  }
  a.inter = (a.hidden * 8 / 3 + 63) / 64 * 64;
  a.vocab = 8000;
  uint64_t per_layer = 4 * a.hidden * a.hidden + 3 * a.hidden * a.inter;
  uint64_t emb = a.vocab * a.hidden * 2;
  a.layers = params > emb ? std::max<uint64_t>(1, (params - emb) / per_layer) : 1;
  return a;
}

std::vector<TensorSpec> tensors_for(const Arch& a, uint64_t vocab) {
  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", {vocab, a.hidden}, TensorSpec::embed});
  for (uint64_t l = 0; l < a.layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    int li = static_cast<int>(l);
    t.push_back({p + "input_layernorm.weight", {a.hidden}, TensorSpec::norm, li});
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"})
      t.push_back({p + "self_attn." + n + ".weight", {a.hidden, a.hidden}, TensorSpec::weight, li});
    t.push_back({p + "post_attention_layernorm.weight", {a.hidden}, TensorSpec::norm, li});
    t.push_back({p + "mlp.gate_proj.weight", {a.inter, a.hidden}, TensorSpec::weight, li});
    t.push_back({p + "mlp.up_proj.weight", {a.inter, a.hidden}, TensorSpec::weight, li});
    t.push_back({p + "mlp.down_proj.weight", {a.hidden, a.inter}, TensorSpec::weight, li});
  }
  t.push_back({"model.norm.weight", {a.hidden}, TensorSpec::norm});
  t.push_back({"lm_head.weight", {vocab, a.hidden}, TensorSpec::embed});
  return t;
}

uint64_t numel(const std::vector<uint64_t>& s) {
  uint64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

uint64_t name_seed(const std::string& n, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (char c : n) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return h;
}

uint64_t cols_of(const TensorSpec& t) { return t.shape.back(); }
uint64_t rows_of(const TensorSpec& t) { return numel(t.shape) / cols_of(t); }

// A tensor's values produced row by row: each call fills `v` with the next
// `rows` rows (rows * cols floats), continuing the tensor's random streams,
// so a tensor of any size streams to disk in bounded memory and the values
// do not depend on how it is cut into calls.
using RowGen = std::function<void(uint64_t rows, std::vector<float>& v)>;

// Base weights: gaussian with a per-tensor scale; norms near 1.
RowGen base_gen(const TensorSpec& t, uint64_t seed) {
  const float mean = t.role == TensorSpec::norm ? 1.0f : 0.0f;
  const float std = t.role == TensorSpec::norm ? 0.05f
                    : (t.role == TensorSpec::embed ? 0.02f : 0.6f / std::sqrt(float(t.shape.back())));
  return [r = Rng(name_seed(t.name, seed)), mean, std, cols = cols_of(t)](uint64_t rows, std::vector<float>& v) mutable {
    v.resize(rows * cols);
    for (auto& x : v) x = mean + std * r.normal();
  };
}

// Fine-tune update: what a few hundred AdamW steps leave behind. Adam's
// normalized steps give every weight a change of roughly lr * steps^0.5 in
// magnitude, modulated per row (some rows move more) plus decoupled weight
// decay shrinking each weight a little. Applies to the next rows of `v`.
struct FinetuneUpdate {
  Rng r;
  float lr_eff, wd;
  void apply(uint64_t cols, float* v, uint64_t rows) {
    for (uint64_t i = 0; i < rows; ++i) {
      float row_scale = 0.5f + static_cast<float>(r.uniform()) * 1.5f;
      for (uint64_t j = i * cols; j < (i + 1) * cols; ++j) v[j] = v[j] * (1 - wd) + lr_eff * row_scale * r.normal();
    }
  }
};

// LoRA merge W += (alpha / rank) * B A with rank 8; A and B are small.
struct LoraUpdate {
  static constexpr uint64_t rank = 8;
  std::vector<float> A, B;
  uint64_t row = 0;
  LoraUpdate(const TensorSpec& t, uint64_t seed) : A(rank * cols_of(t)), B(rows_of(t) * rank) {
    Rng r(name_seed(t.name, seed * 31 + 5));
    for (auto& x : A) x = 0.01f * r.normal();
    for (auto& x : B) x = 0.01f * r.normal();
  }
  void apply(uint64_t cols, float* v, uint64_t rows) {
    for (uint64_t i = 0; i < rows; ++i, ++row)
      for (uint64_t k = 0; k < rank; ++k) {
        float b = B[row * rank + k] * 2.0f;  // alpha / rank scaling
        for (uint64_t j = 0; j < cols; ++j) v[i * cols + j] += b * A[k * cols + j];
      }
  }
};

void encode_values(const std::vector<float>& v, DType dt, std::vector<uint8_t>& out) {
  out.resize(v.size() * dtype_size(dt));
  convert_dtype(reinterpret_cast<const uint8_t*>(v.data()), DType::F32, v.size(), dt, out.data());
}

// Writes `path` through `path.tmp` and a rename, so no partial file ever
// carries the final name. `body` writes the content to the stream.
template <class Body>
Status write_atomic(const std::string& path, Body body) {
  const std::string tmp = path + ".tmp";
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (f) body(f);
  f.close();
  if (!f) {
    int e = errno;
    std::error_code ec;
    fs::remove(tmp, ec);
    return {e == ENOSPC ? Errc::no_space : Errc::io, path + ": cannot write: " + std::strerror(e)};
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return {Errc::io, path + ": cannot rename " + tmp + ": " + ec.message()};
  return Status::Ok();
}

Status write_text(const std::string& path, const std::string& s) {
  return write_atomic(path, [&](std::ofstream& f) { f << s; });
}

// Rows per write: about 1 Mi values (4 MiB of floats) whatever the tensor size.
constexpr uint64_t kChunkValues = 1ull << 20;

// Writes a model directory, streaming tensor by tensor and row chunk by row
// chunk: memory stays a few MiB whatever the model size. `make_gen(t)`
// returns the row generator of tensor t.
template <class MakeGen>
Status write_model(const std::string& dir, const std::vector<TensorSpec>& ts, DType dt, int n_shards, const Arch& a,
                   uint64_t vocab, MakeGen make_gen) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return {Errc::io, dir + ": cannot create directory: " + ec.message()};
  nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", a.hidden},
                        {"intermediate_size", a.inter}, {"num_hidden_layers", a.layers}, {"vocab_size", vocab},
                        {"torch_dtype", dt == DType::BF16 ? "bfloat16" : (dt == DType::F16 ? "float16" : "float32")}};
  TP_RETURN_IF_ERROR(write_text(dir + "/config.json", cfg.dump(2) + "\n"));
  nlohmann::json tok = {{"version", "1.0"}, {"model", {{"type", "BPE"}, {"vocab_size", vocab}}}};
  TP_RETURN_IF_ERROR(write_text(dir + "/tokenizer.json", tok.dump() + "\n"));
  size_t per = (ts.size() + n_shards - 1) / n_shards;
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t total = 0;
  std::vector<float> v;
  std::vector<uint8_t> bytes;
  for (int s = 0; s < n_shards; ++s) {
    std::string fname = n_shards == 1 ? "model.safetensors"
                                      : "model-" + std::string(5 - std::to_string(s + 1).size(), '0') + std::to_string(s + 1) +
                                            "-of-" + std::string(5 - std::to_string(n_shards).size(), '0') +
                                            std::to_string(n_shards) + ".safetensors";
    std::vector<TensorInfo> infos;
    std::vector<const TensorSpec*> specs;
    for (size_t i = s * per; i < std::min(ts.size(), (s + 1) * per); ++i) {
      TensorInfo ti;
      ti.name = ts[i].name;
      ti.dtype = dt;
      ti.shape = ts[i].shape;
      ti.begin = 0;
      ti.end = numel(ts[i].shape) * dtype_size(dt);
      infos.push_back(ti);
      specs.push_back(&ts[i]);
      weight_map[ts[i].name] = fname;
    }
    std::string header = make_safetensors_header(infos, {{"format", "pt"}});
    TP_RETURN_IF_ERROR(write_atomic(dir + "/" + fname, [&](std::ofstream& f) {
      f.write(header.data(), header.size());
      for (auto* t : specs) {
        RowGen gen = make_gen(*t);
        const uint64_t rows = rows_of(*t), step = std::max<uint64_t>(1, kChunkValues / cols_of(*t));
        for (uint64_t r = 0; r < rows && f; r += step) {
          gen(std::min(step, rows - r), v);
          encode_values(v, dt, bytes);
          f.write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
          total += bytes.size();
        }
      }
    }));
  }
  if (n_shards > 1) {
    nlohmann::json idx = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    TP_RETURN_IF_ERROR(write_text(dir + "/model.safetensors.index.json", idx.dump(2) + "\n"));
  }
  return Status::Ok();
}

}  // namespace

Status generate_pair(const Spec& spec, const std::string& out) {
  const std::string& k = spec.kind;
  DType base_dt = (k == "fp32" || k == "dtype") ? DType::F32 : DType::BF16;
  DType ft_dt = k == "fp32" ? DType::F32 : DType::BF16;
  Arch a = arch_for(spec.size_mb, dtype_size(base_dt));
  uint64_t ft_vocab = k == "vocab" ? a.vocab + 64 : a.vocab;
  auto base_ts = tensors_for(a, a.vocab);
  auto ft_ts = tensors_for(a, ft_vocab);
  uint64_t seed = spec.seed;
  auto base_make = [&](const TensorSpec& t) { return base_gen(t, seed); };
  auto ft_make = [&](const TensorSpec& t) -> RowGen {
    TensorSpec bt = t;  // the base tensor it comes from (fewer rows when the vocabulary grew)
    if (t.role == TensorSpec::embed) bt.shape[0] = a.vocab;
    RowGen base = base_gen(bt, seed);
    if (k == "frozen" && t.layer >= 0 && static_cast<uint64_t>(t.layer) < a.layers / 2) return base;
    if (k == "frozen" && t.role == TensorSpec::embed) return base;
    const uint64_t cols = cols_of(t);
    if (k == "lora") {
      if (t.name.find("q_proj") == std::string::npos && t.name.find("v_proj") == std::string::npos) return base;
      return [base, lora = std::make_shared<LoraUpdate>(t, seed), cols](uint64_t rows, std::vector<float>& v) mutable {
        base(rows, v);
        lora->apply(cols, v.data(), rows);
      };
    }
    // Rows past the base's are new vocabulary rows: freshly initialized.
    return [base, upd = FinetuneUpdate{Rng(name_seed(bt.name, seed * 7919 + 17)), 2e-4f, 1e-4f},
            fresh = Rng(name_seed(t.name, seed + 99)), cols, base_rows = rows_of(bt),
            row = uint64_t{0}](uint64_t rows, std::vector<float>& v) mutable {
      const uint64_t old = row < base_rows ? std::min(rows, base_rows - row) : 0;
      base(old, v);
      upd.apply(cols, v.data(), old);
      for (uint64_t i = old * cols; i < rows * cols; ++i) v.push_back(0.02f * fresh.normal());
      row += rows;
    };
  };
  int ft_shards = (k == "sharded" || spec.size_mb >= 1024) ? 3 : 1;
  // Base and fine-tune are independent streams: write them on two threads.
  auto base_done = std::async(std::launch::async, [&] {
    return write_model(out + "/base", base_ts, base_dt, 1, a, a.vocab, base_make);
  });
  Status ft = write_model(out + "/finetune", ft_ts, ft_dt, ft_shards, a, ft_vocab, ft_make);
  Status b = base_done.get();
  return b.ok() ? ft : b;
}

Status run_program(const std::string& exe, std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  pid_t pid;
  int err = ::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), environ);
  if (err) return {Errc::io, exe + ": cannot start: " + std::strerror(err)};
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0)
    if (errno != EINTR) return {Errc::io, exe + ": wait failed: " + std::strerror(errno)};
  if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) return Status::Ok();
  return {Errc::io, args[0] + " " + (args.size() > 1 ? args[1] : "") +
                        (WIFEXITED(ws) ? " failed with exit code " + std::to_string(WEXITSTATUS(ws))
                                       : " killed by signal " + std::to_string(WTERMSIG(ws)))};
}

Status run_trainer(const Spec& spec, uint64_t size_mb, const std::string& out) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {Errc::io, "/proc/self/exe: cannot resolve the tenpak executable: " + ec.message()};
  const std::string train = (self.parent_path() / "tenpak-train").string();
  if (::access(train.c_str(), X_OK) != 0)
    return {Errc::unsupported, train + ": not found; `tenpak fixture " + spec.kind +
                                   "` needs tenpak-train, which is built only when libtorch is installed "
                                   "(scripts/bootstrap.sh installs libtorch-dev; then rebuild)"};
  std::vector<std::string> args = {train, out, "--dtype", spec.kind == "trained-fp32" ? "fp32" : "bf16", "--seed",
                                   std::to_string(spec.seed)};
  if (size_mb) args.insert(args.end(), {"--size-mb", std::to_string(size_mb)});
  return run_program(train, std::move(args));
}

}  // namespace tenpak::fixtures

namespace tenpak::cli {

namespace {

// Step 5: the product's main job. Mounts the delta and checks the sha256 of
// every file read through the mount. Skipped (not failed) where FUSE is not
// usable (no /dev/fuse, not root and no fusermount3).
Status demo_mount(const std::string& work, const Manifest& m) {
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    std::printf("5. mount: skipped (/dev/fuse is not usable here: %s)\n", std::strerror(errno));
    return Status::Ok();
  }
  ::close(fd);
  std::string mnt = work + "/mnt";
  fs::create_directories(mnt);
  std::printf("5. mounting the delta at %s and reading every file through the mount...\n", mnt.c_str());
  Status st = fixtures::run_program("/proc/self/exe", {"tenpak", "mount", work + "/delta", mnt, "--base",
                                                      work + "/pair/base", "--no-cache", "--log", work + "/mount.log"});
  if (!st.ok()) return {st.code(), st.message() + " (see " + work + "/mount.log)"};
  Status result = Status::Ok();
  std::vector<char> buf(4 << 20);
  for (auto& of : m.out_files) {
    std::ifstream in(mnt + "/" + of.name, std::ios::binary);
    Sha256Hasher h;
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      h.update(buf.data(), static_cast<size_t>(in.gcount()));
    }
    bool same = !in.bad() && h.finish() == of.sha256;
    std::printf("   %-40s %s\n", of.name.c_str(), same ? "identical through the mount" : "DIFFERENT");
    if (!same && result.ok()) result = {Errc::corrupt, of.name + ": the mounted file differs from the original"};
  }
  st = fixtures::run_program("/proc/self/exe", {"tenpak", "unmount", mnt});
  if (!st.ok() && result.ok()) result = st;
  return result;
}

int run_demo(const std::string& workdir_opt, uint64_t size_mb) {
  std::string work = workdir_opt;
  bool temp = work.empty();
  if (temp) {
    char tmpl[] = "/tmp/tenpak-demo-XXXXXX";
    if (!::mkdtemp(tmpl)) return fail({Errc::io, "cannot create a temporary directory"});
    work = tmpl;
  }
  std::printf("TenPak demo in %s\n", work.c_str());
  std::printf("1. generating a %llu MiB LLM-like BF16 base and a fine-tune of it (sharded differently)...\n",
              (unsigned long long)size_mb);
  fixtures::Spec spec;
  spec.kind = "sharded";
  spec.size_mb = size_mb;
  Status st = fixtures::generate_pair(spec, work + "/pair");
  if (!st.ok()) return fail(st);
  std::printf("2. building the delta...\n");
  BuildOptions bo;
  ProgressBar bar("build");
  bo.progress = [&](uint64_t d, uint64_t t) { bar.update(d, t); };
  auto rep = build_delta(work + "/pair/base", work + "/pair/finetune", work + "/delta", bo);
  bar.finish();
  if (!rep.ok()) return fail(rep.status());
  std::printf("3. rebuilding the fine-tune from base + delta...\n");
  auto r = open_delta_dir(work + "/delta");
  if (!r.ok()) return fail(r.status());
  st = attach_local_base(**r, work + "/pair/base", true);
  if (!st.ok()) return fail(st);
  ApplyOptions ao;
  auto t0 = std::chrono::steady_clock::now();
  auto n = apply_delta(**r, work + "/rebuilt", ao);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!n.ok()) return fail(n.status());
  std::printf("4. checking sha256 of every rebuilt file against the original...\n");
  for (auto& of : (*r)->manifest().out_files) {
    std::ifstream a(work + "/pair/finetune/" + of.name, std::ios::binary), b(work + "/rebuilt/" + of.name, std::ios::binary);
    std::string sa((std::istreambuf_iterator<char>(a)), {}), sb((std::istreambuf_iterator<char>(b)), {});
    Sha256 ha = sha256(sa.data(), sa.size()), hb = sha256(sb.data(), sb.size());
    std::printf("   %-40s %s %s\n", of.name.c_str(), hex(hb).substr(0, 16).c_str(), ha == hb ? "identical" : "DIFFERENT");
    if (ha != hb) return fail({Errc::corrupt, of.name + ": rebuilt file differs from the original"});
  }
  st = demo_mount(work, (*r)->manifest());
  if (!st.ok()) return fail(st);
  double ratio = static_cast<double>(rep->delta_bytes) / rep->finetune_bytes;
  std::printf("\nfine-tune %s, delta %s: %.4f of the fine-tune (%.1f%% saved); build %.2f s, rebuild %.2f s\n",
              human_bytes(rep->finetune_bytes).c_str(), human_bytes(rep->delta_bytes).c_str(), ratio,
              100 * (1 - ratio), rep->seconds, secs);
  if (temp) fs::remove_all(work);
  std::printf("demo OK: the rebuilt model is bit-identical to the fine-tune\n");
  return kOk;
}

}  // namespace

void add_fixture_commands(CLI::App& app, int& rc) {
  static fixtures::Spec spec;
  static std::string out, work;
  auto* f = app.add_subcommand("fixture", "Generate a synthetic base/fine-tune pair (OUT/base, OUT/finetune)");
  f->add_option("KIND", spec.kind,
                "bf16 | fp32 | frozen | lora | vocab | dtype | sharded | trained | trained-fp32 (trained*: real "
                "AdamW fine-tune by tenpak-train, built only with libtorch) | stories-ft (stories260K fine-tuned on "
                "TinyShakespeare by tenpak-ml; its options: tenpak-ml fixture stories-ft --help)")
      ->required()
      ->check(CLI::IsMember({"bf16", "fp32", "frozen", "lora", "vocab", "dtype", "sharded", "trained", "trained-fp32",
                             // data set pairs (OUT/base, OUT/derived): dataset_fixtures.h
                             "ds-append", "ds-delete", "ds-edit", "ds-reorder", "ds-addfield", "ds-shards", "ds-csv",
                             "ds-conll", "stories-ft"}));
  f->add_option("OUT", out, "Directory to create")->required();
  auto* size_opt =
      f->add_option("--size-mb", spec.size_mb, "Approximate base size in MiB")->check(CLI::Range(1, 65536));
  f->add_option("--seed", spec.seed, "Random seed");
  // stories-ft's own options (--lora, --steps, ...) are parsed by tenpak-ml.
  f->allow_extras();
  f->callback([&, f, size_opt] {
    if (spec.kind == "stories-ft") {
      rc = exec_ml();
      return;
    }
    if (!f->remaining().empty()) {
      rc = fail({Errc::invalid, "fixture " + spec.kind + ": unknown argument " + f->remaining().front()});
      return;
    }
    if (fixtures::is_dataset_fixture_kind(spec.kind)) {
      Status st = fixtures::generate_dataset_pair(spec.kind, spec.size_mb, spec.seed, out);
      rc = st.ok() ? kOk : fail(st);
      if (st.ok()) std::printf("wrote %s/base and %s/derived\n", out.c_str(), out.c_str());
      return;
    }
    Status st = spec.kind.rfind("trained", 0) == 0
                    ? fixtures::run_trainer(spec, size_opt->count() ? spec.size_mb : 0, out)
                    : fixtures::generate_pair(spec, out);
    rc = st.ok() ? kOk : fail(st);
    if (st.ok()) std::printf("wrote %s/base and %s/finetune\n", out.c_str(), out.c_str());
  });
  static uint64_t demo_mb = 64;
  auto* d = app.add_subcommand("demo", "Generate a pair, build its delta, rebuild it, mount it and check every sha256");
  d->add_option("--workdir", work, "Keep the files in this directory (default: a temporary one, removed)");
  d->add_option("--size-mb", demo_mb, "Base model size in MiB")->check(CLI::Range(1, 65536));
  d->callback([&] { rc = run_demo(work, demo_mb); });
}

}  // namespace tenpak::cli
