// ckpt_bench: delta sizes of fine-tunes published as PyTorch checkpoints,
// served as themselves (the default) and as the --as-safetensors view, each
// beside the XOR/byte-plane baseline of what is served (bench/xor_baseline.h,
// the same as codec_bench's).
//
//   ckpt_bench [--data DIR] [--work DIR]
//
// DIR holds base.pt and ft-*.pt (default ../shared/data/yolov5n); prints a
// markdown table (docs/BENCHMARKS.md, "PyTorch checkpoints").
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tenpak/delta.h"
#include "tenpak/model.h"
#include "xor_baseline.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

// The fine-tune loaded as it is served in each mode.
Result<uint64_t> xor_planes_size(const std::string& base_path, const std::string& ft_path, bool as_safetensors) {
  LoadOptions bl;
  bl.convert_checkpoints = false;
  auto base = load_model(base_path, bl);
  if (!base.ok()) return base.status();
  LoadOptions fl;
  fl.convert_checkpoints = as_safetensors;
  fl.checkpoint_storages = !as_safetensors;
  auto ft = load_model(ft_path, fl);
  if (!ft.ok()) return ft.status();
  return bench::xor_planes_size(*base, *ft);
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = "../shared/data/yolov5n", work = (fs::temp_directory_path() / "tenpak-ckpt-bench").string();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--data" && i + 1 < argc) data = argv[++i];
    else if (a == "--work" && i + 1 < argc) work = argv[++i];
    else {
      std::fprintf(stderr, "usage: ckpt_bench [--data DIR] [--work DIR]\n  DIR: base.pt and ft-*.pt\n");
      return a == "--help" ? 0 : 2;
    }
  }
  if (!fs::exists(data + "/base.pt")) {
    std::fprintf(stderr, "skipped: no %s/base.pt\n", data.c_str());
    return 0;
  }
  std::vector<std::string> fts;
  for (auto& e : fs::directory_iterator(data)) {
    std::string n = e.path().filename().string();
    if (n.rfind("ft-", 0) == 0 && n.size() > 3 && n.compare(n.size() - 3, 3, ".pt") == 0) fts.push_back(n);
  }
  std::sort(fts.begin(), fts.end());
  std::printf("| fine-tune | served as | served bytes | XOR planes zstd-19 | TenPak delta | TenPak / XOR | frames |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (auto& n : fts) {
    for (bool st : {false, true}) {
      BuildOptions o;
      o.threads = 1;
      o.as_safetensors = st;
      std::string out = work + "/" + n + (st ? ".st" : ".pt");
      fs::remove_all(out);
      auto r = build_delta(data + "/base.pt", data + "/" + n, out, o);
      auto x = xor_planes_size(data + "/base.pt", data + "/" + n, st);
      if (!r.ok() || !x.ok()) {
        std::fprintf(stderr, "%s: %s\n", n.c_str(), (!r.ok() ? r.status() : x.status()).message().c_str());
        return 1;
      }
      std::printf("| %s | %s | %llu | %llu | %llu | %.3f | %llu |\n", n.c_str(), st ? "--as-safetensors" : "itself (default)",
                  (unsigned long long)r->finetune_bytes, (unsigned long long)*x, (unsigned long long)r->delta_bytes,
                  static_cast<double>(r->delta_bytes) / static_cast<double>(*x), (unsigned long long)r->frames);
      fs::remove_all(out);
    }
  }
  return 0;
}
