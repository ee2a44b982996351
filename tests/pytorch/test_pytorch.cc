// The restricted PyTorch checkpoint reader: generated checkpoints (valid and
// malicious), the real YOLOv5n checkpoints when ../shared/data is present,
// and end-to-end delta build/apply/verify through the CLI.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "ckpt_fixtures.h"
#include "pickle_reader.h"
#include <nlohmann/json.hpp>

#include "tenpak/delta.h"
#include "tenpak/model.h"
#include "tenpak/pytorch.h"
#include "test_util.h"

using namespace tenpak;
namespace fs = std::filesystem;

namespace {

const uint8_t* u8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

struct StTensor { std::string name; DType dtype; std::vector<uint64_t> shape; std::string bytes; };

// Tensors of a safetensors file in data order.
std::vector<StTensor> st_tensors(const std::string& file, const std::string& what) {
  auto n = safetensors_header_len(u8(file), file.size(), what);
  EXPECT_TRUE(n.ok()) << n.status().message();
  if (!n.ok()) return {};
  auto h = parse_safetensors_header(file.data() + 8, *n, file.size(), what);
  EXPECT_TRUE(h.ok()) << h.status().message();
  if (!h.ok()) return {};
  std::vector<StTensor> out;
  for (auto& t : h->tensors) out.push_back({t.name, t.dtype, t.shape, file.substr(t.begin, t.nbytes())});
  return out;
}

// Tensor-by-tensor equality (names, order, dtypes, shapes, bytes).
// `ref_scalars_as_1`: the reference .safetensors files beside the YOLOv5n
// checkpoints store 0-dim tensors (num_batches_tracked) with shape [1]; the
// pickle says shape () and the reader keeps torch's shape [] (what
// safetensors.torch.save_file writes). Only that difference is tolerated.
void expect_same_tensors(const std::vector<StTensor>& a, const std::vector<StTensor>& b, bool ref_scalars_as_1 = false) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].name);
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].dtype, b[i].dtype);
    if (!(ref_scalars_as_1 && a[i].shape.empty() && b[i].shape == std::vector<uint64_t>{1})) {
      EXPECT_EQ(a[i].shape, b[i].shape);
    }
    EXPECT_TRUE(a[i].bytes == b[i].bytes) << "bytes differ";
  }
}

std::vector<StTensor> expected(const ckpt::Generated& g) {
  std::vector<StTensor> out;
  for (auto& t : g.expect) out.push_back({t.name, t.dtype, t.shape, t.bytes});
  return out;
}

Result<Checkpoint> read(const std::string& pt, const std::string& name = "test.pt") {
  return read_pytorch_checkpoint(u8(pt), pt.size(), name);
}

// Runs a shell command, returns its exit status; stderr goes to `err`.
int run(const std::string& cmd, std::string* err = nullptr) {
  std::string ef = tptest::temp_dir("cmd") + "/stderr";
  int rc = std::system((cmd + " >/dev/null 2>" + ef).c_str());
  if (err) *err = tptest::read_file(ef);
  fs::remove_all(fs::path(ef).parent_path());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string tenpak_bin() {
  const char* b = std::getenv("TENPAK_BIN");
  std::string bin = b ? b : TENPAK_DEFAULT_BIN;
  return fs::exists(bin) ? bin : "";
}

std::string shared_yolo() {
  const char* s = std::getenv("TENPAK_SHARED");
  std::string d = std::string(s ? s : TENPAK_DEFAULT_SHARED) + "/data/yolov5n";
  return fs::exists(d + "/base.pt") ? d : "";
}

}  // namespace

TEST(PyTorch, PlainStateDictWithViews) {
  auto g = ckpt::plain_state_dict();
  auto ck = read(g.pt);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  ASSERT_EQ(ck->tensors.size(), g.expect.size());
  for (size_t i = 0; i < g.expect.size(); ++i) {
    SCOPED_TRACE(g.expect[i].name);
    EXPECT_EQ(ck->tensors[i].name, g.expect[i].name);
    EXPECT_EQ(ck->tensors[i].contiguous_in_file, g.expect[i].contiguous);
    if (ck->tensors[i].contiguous_in_file) {  // in-place ranges (what base checkpoints are indexed by)
      EXPECT_EQ(g.pt.substr(ck->tensors[i].file_offset, ck->tensors[i].nbytes), g.expect[i].bytes);
    }
  }
  auto st = checkpoint_to_safetensors(*ck, u8(g.pt), "test.pt");
  ASSERT_TRUE(st.ok()) << st.status().message();
  expect_same_tensors(st_tensors(std::string(st->begin(), st->end()), "converted"), expected(g));
}

TEST(PyTorch, Zip64Archive) {
  auto g = ckpt::plain_state_dict(0, "archive", true);
  auto ck = read(g.pt);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto st = checkpoint_to_safetensors(*ck, u8(g.pt), "test.pt");
  ASSERT_TRUE(st.ok()) << st.status().message();
  expect_same_tensors(st_tensors(std::string(st->begin(), st->end()), "converted"), expected(g));
  // A zip64 end record pointing outside the file is refused.
  std::string bad = g.pt;
  size_t loc = bad.size() - 22 - 20;
  ASSERT_EQ(bad.compare(loc, 4, "PK\x06\x07"), 0);
  bad[loc + 8 + 3] = 0x7f;
  auto r = read(bad, "evil.pt");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::corrupt);
  EXPECT_NE(r.status().message().find("zip64"), std::string::npos) << r.status().message();
}

TEST(PyTorch, ModuleObjectsNamedAsStateDict) {
  auto g = ckpt::module_checkpoint();
  auto ck = read(g.pt);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto st = checkpoint_to_safetensors(*ck, u8(g.pt), "test.pt");
  ASSERT_TRUE(st.ok()) << st.status().message();
  // Non-persistent buffer "tmp", the None bias and the opaque numpy scalar are left out.
  expect_same_tensors(st_tensors(std::string(st->begin(), st->end()), "converted"), expected(g));
}

TEST(PyTorch, StateDictWrapperAndEmaFallback) {
  // {"state_dict": {...}, "optimizer": {"x": tensor}}: only the state_dict is read.
  ckpt::Pickle p;
  p.empty_dict().mark().str("optimizer").empty_dict().mark().str("x").tensor("FloatStorage", "1", 1, 0, {1}, {1});
  p.setitems().str("state_dict").empty_dict().mark().str("a.weight").tensor("FloatStorage", "0", 2, 0, {2}, {1});
  p.setitems().setitems().stop();
  std::string pt = ckpt::make_pt(p.b, {{"0", std::string(8, 'a')}, {"1", std::string(4, 'b')}});
  auto ck = read(pt);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  ASSERT_EQ(ck->tensors.size(), 1u);
  EXPECT_EQ(ck->tensors[0].name, "a.weight");

  // {"model": None, "ema": {...}}: ema is used.
  ckpt::Pickle q;
  q.empty_dict().mark().str("model").none().str("ema").empty_dict().mark().str("e").tensor("FloatStorage", "0", 2, 0, {2}, {1});
  q.setitems().setitems().stop();
  ck = read(ckpt::make_pt(q.b, {{"0", std::string(8, 'a')}}));
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  ASSERT_EQ(ck->tensors.size(), 1u);
  EXPECT_EQ(ck->tensors[0].name, "e");
}

TEST(PyTorch, OpaqueValuesInTrainingOptions) {
  // {'opt': {'save_dir': pathlib.PosixPath('runs/exp'), 'ns': argparse.Namespace()}, 'model': {...}}
  ckpt::Pickle p;
  p.empty_dict().mark().str("opt").empty_dict().mark();
  p.str("save_dir").global("pathlib", "PosixPath").mark().str("runs").str("exp").tuple().reduce();
  p.str("ns").global("argparse", "Namespace").empty_tuple().newobj().empty_dict().build();
  p.setitems().str("model").empty_dict().mark().str("w").tensor("HalfStorage", "0", 2, 0, {2}, {1});
  p.setitems().setitems().stop();
  auto ck = read(ckpt::make_pt(p.b, {{"0", "abcd"}}));
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  ASSERT_EQ(ck->tensors.size(), 1u);
  EXPECT_EQ(ck->tensors[0].name, "w");
}

TEST(PyTorch, RefusesBadTensorNames) {
  for (std::string name : {std::string("\xff\xfe"), std::string("__metadata__"), std::string("\xc0\xaf")}) {
    ckpt::Pickle p;
    p.empty_dict().mark().str(name).tensor("HalfStorage", "0", 2, 0, {2}, {1}).setitems().stop();
    auto ck = read(ckpt::make_pt(p.b, {{"0", "abcd"}}));
    ASSERT_FALSE(ck.ok());
    EXPECT_EQ(ck.status().code(), Errc::unsupported) << ck.status().message();
  }
}

TEST(PyTorch, StorageTypesAsDtypeGlobals) {
  // TypedStorage written with torch.bfloat16 / torch.UntypedStorage in the persistent id.
  ckpt::Pickle p;
  p.empty_dict().mark();
  p.str("a").tensor("bfloat16", "0", 2, 0, {2}, {1});
  p.str("u").tensor("UntypedStorage", "1", 3, 0, {3}, {1});
  p.setitems().stop();
  auto ck = read(ckpt::make_pt(p.b, {{"0", "abcd"}, {"1", "xyz"}}));
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  EXPECT_EQ(ck->tensors[0].dtype, DType::BF16);
  EXPECT_EQ(ck->tensors[1].dtype, DType::U8);
}

// Each malicious or broken checkpoint is refused with the right code and a
// message naming the file and the problem.
TEST(PyTorch, RefusesCallsAndBadFiles) {
  struct Case { std::string what; std::string pt; Errc code; std::string needle; };
  std::vector<Case> cases;
  cases.push_back({"os.system", ckpt::call_pickle("os", "system", "echo pwned"), Errc::unsupported, "pickle asks to call os.system: refused"});
  cases.push_back({"eval", ckpt::call_pickle("builtins", "eval", "1+1"), Errc::unsupported, "builtins.eval: refused"});
  cases.push_back({"subprocess", ckpt::call_pickle("subprocess", "check_output", "id"), Errc::unsupported, "subprocess.check_output: refused"});
  {
    ckpt::Pickle p;  // unknown class called via REDUCE (not NEWOBJ)
    p.global("models.yolo", "Model").empty_tuple().reduce().stop();
    cases.push_back({"class REDUCE", ckpt::make_pt(p.b, {}), Errc::unsupported, "models.yolo.Model: refused"});
  }
  {
    ckpt::Pickle p;  // a refused call hidden inside _rebuild_from_type_v2
    p.global("torch._tensor", "_rebuild_from_type_v2").mark().global("os", "system").global("torch", "Tensor");
    p.mark().str("id").tuple().empty_dict().tuple().reduce().stop();
    cases.push_back({"from_type", ckpt::make_pt(p.b, {}), Errc::unsupported, "os.system: refused"});
  }
  {
    ckpt::Pickle p;  // INST runs a constructor in protocol 0: refused by name
    p.mark().op('i').b += "os\nsystem\n";
    p.stop();
    cases.push_back({"INST", ckpt::make_pt(p.b, {}), Errc::unsupported, "opcode INST"});
  }
  auto g = ckpt::plain_state_dict();
  cases.push_back({"truncated", g.pt.substr(0, g.pt.size() / 2), Errc::corrupt, "zip"});
  cases.push_back({"cut tail", g.pt.substr(0, g.pt.size() - 10), Errc::corrupt, "zip"});
  {
    ckpt::Pickle p;  // the tensor's storage "3" is not in the zip
    p.empty_dict().mark().str("n").tensor("LongStorage", "3", 1, 0, {}, {}).setitems().stop();
    cases.push_back({"missing storage", ckpt::make_pt(p.b, {{"0", "12345678"}}), Errc::corrupt, "storage '3' is missing"});
  }
  {
    ckpt::Pickle p;  // storage declares 6 floats, entry holds 8 bytes
    p.empty_dict().mark().str("w").tensor("FloatStorage", "0", 6, 0, {6}, {1}).setitems().stop();
    cases.push_back({"short entry", ckpt::make_pt(p.b, {{"0", "12345678"}}), Errc::corrupt, "declares 6 elements"});
  }
  {
    ckpt::Pickle p;  // view past the end of its storage
    p.empty_dict().mark().str("w").tensor("FloatStorage", "0", 2, 1, {2}, {1}).setitems().stop();
    cases.push_back({"view too big", ckpt::make_pt(p.b, {{"0", "12345678"}}), Errc::corrupt, "storage too small"});
  }
  {
    ckpt::Pickle p;  // memo index far past the limit
    p.none().put(0x7fffffff).stop();
    cases.push_back({"memo index", ckpt::make_pt(p.b, {}), Errc::corrupt, "memo index"});
  }
  {
    ckpt::Pickle p;  // more memo entries than the limit
    p.none();
    for (uint32_t i = 0; i <= pickle::Limits{}.max_memo; ++i) p.put(i);
    p.stop();
    cases.push_back({"memo size", ckpt::make_pt(p.b, {}), Errc::corrupt, "memo"});
  }
  {
    ckpt::Pickle p;  // stack deeper than the limit
    p.none();
    p.b.append(pickle::Limits{}.max_stack + 1, '2');
    p.stop();
    cases.push_back({"stack", ckpt::make_pt(p.b, {}), Errc::corrupt, "stack deeper"});
  }
  {
    ckpt::Pickle p;  // MARKs nested too deep
    p.b.append(pickle::Limits{}.max_marks + 1, '(');
    cases.push_back({"marks", ckpt::make_pt(p.b, {}), Errc::corrupt, "nested deeper"});
  }
  {
    ckpt::Pickle p;  // a list containing itself, walked as a state_dict
    p.empty_list().put(0).get(0).op('a').stop();
    cases.push_back({"cycle", ckpt::make_pt(p.b, {}), Errc::corrupt, "cycle"});
  }
  {
    ckpt::Pickle p;
    p.str("x").op(static_cast<uint8_t>(0xfe));
    cases.push_back({"bad opcode", ckpt::make_pt(p.b, {}), Errc::corrupt, "unknown pickle opcode 0xfe"});
  }
  {
    ckpt::Pickle p;
    p.str("abc");
    p.b.resize(p.b.size() - 1);  // string runs past the end
    cases.push_back({"short string", ckpt::make_pt(p.b, {}), Errc::corrupt, "truncated pickle"});
  }
  {
    ckpt::Pickle p;
    p.empty_dict().mark().str("c").tensor("ComplexFloatStorage", "0", 1, 0, {1}, {1}).setitems().stop();
    cases.push_back({"complex", ckpt::make_pt(p.b, {{"0", "12345678"}}), Errc::unsupported, "ComplexFloatStorage is not supported"});
  }
  {
    std::string legacy = "\x80\x02\x8a\x0a" "l\xfc\x9c" "F\xf9 j\xa8" "P\x19.";
    cases.push_back({"legacy", legacy, Errc::unsupported, "legacy"});
  }
  cases.push_back({"not zip", "hello world, this is text", Errc::corrupt, "not a PyTorch zip"});
  for (auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto ck = read(c.pt, "evil.pt");
    ASSERT_FALSE(ck.ok());
    EXPECT_EQ(ck.status().code(), c.code) << ck.status().message();
    EXPECT_NE(ck.status().message().find("evil.pt"), std::string::npos) << ck.status().message();
    EXPECT_NE(ck.status().message().find(c.needle), std::string::npos) << ck.status().message();
  }
}

// The CLI maps refusals to exit 6 and corrupt checkpoints to exit 4, and
// writes no output, for a base or a fine-tune, in either mode.
TEST(PyTorch, CliExitCodes) {
  if (tenpak_bin().empty()) GTEST_SKIP() << "TENPAK_BIN not set";
  std::string d = tptest::temp_dir("ptcli");
  auto g = ckpt::plain_state_dict();
  tptest::write_file(d + "/base.pt", g.pt);
  tptest::write_file(d + "/evil.pt", ckpt::call_pickle("os", "system", "touch " + d + "/pwned"));
  tptest::write_file(d + "/cut.pt", g.pt.substr(0, g.pt.size() / 2));
  std::string err;
  EXPECT_EQ(run(tenpak_bin() + " delta build " + d + "/base.pt " + d + "/evil.pt -o " + d + "/D1", &err), 6);
  EXPECT_NE(err.find("evil.pt"), std::string::npos) << err;
  EXPECT_NE(err.find("os.system"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(d + "/pwned"));
  EXPECT_FALSE(fs::exists(d + "/D1"));
  EXPECT_EQ(run(tenpak_bin() + " delta build " + d + "/cut.pt " + d + "/base.pt -o " + d + "/D2", &err), 4);
  EXPECT_NE(err.find("cut.pt"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(d + "/D2"));
  // The same refusals for a fine-tune in either mode (served as itself by
  // default, converted with --as-safetensors).
  EXPECT_EQ(run(tenpak_bin() + " delta build " + d + "/base.pt " + d + "/cut.pt -o " + d + "/D3", &err), 4);
  EXPECT_NE(err.find("cut.pt"), std::string::npos) << err;
  EXPECT_EQ(run(tenpak_bin() + " delta build --as-safetensors " + d + "/base.pt " + d + "/evil.pt -o " + d + "/D4", &err), 6);
  EXPECT_NE(err.find("evil.pt"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(d + "/pwned"));
  EXPECT_FALSE(fs::exists(d + "/D3"));
  EXPECT_FALSE(fs::exists(d + "/D4"));
  fs::remove_all(d);
}

// build --as-safetensors base.pt ft.pt -> apply -> the ft's tensors as
// safetensors; verify passes.
void end_to_end(const std::string& base, const std::string& ft, const std::vector<StTensor>& want, const std::string& out_name,
                bool ref_scalars_as_1 = false) {
  std::string d = tptest::temp_dir("pte2e");
  std::string err;
  ASSERT_EQ(run(tenpak_bin() + " delta build --as-safetensors " + base + " " + ft + " -o " + d + "/D", &err), 0) << err;
  ASSERT_EQ(run(tenpak_bin() + " delta verify " + d + "/D --base " + base, &err), 0) << err;
  ASSERT_EQ(run(tenpak_bin() + " delta apply " + d + "/D --base " + base + " -o " + d + "/OUT", &err), 0) << err;
  std::string out = tptest::read_file(d + "/OUT/" + out_name);
  ASSERT_FALSE(out.empty()) << "no " << out_name << " in the output";
  expect_same_tensors(st_tensors(out, out_name), want, ref_scalars_as_1);
  fs::remove_all(d);
}

TEST(PyTorch, EndToEndGenerated) {
  if (tenpak_bin().empty()) GTEST_SKIP() << "TENPAK_BIN not set";
  std::string d = tptest::temp_dir("ptgen");
  auto base = ckpt::module_checkpoint(0, "archive"), ft = ckpt::module_checkpoint(3, "best");
  tptest::write_file(d + "/base.pt", base.pt);
  tptest::write_file(d + "/ft.pt", ft.pt);
  end_to_end(d + "/base.pt", d + "/ft.pt", expected(ft), "ft.safetensors");
  auto pb = ckpt::plain_state_dict(0), pf = ckpt::plain_state_dict(1);  // with a non-contiguous view
  tptest::write_file(d + "/pbase.pt", pb.pt);
  tptest::write_file(d + "/pft.pt", pf.pt);
  end_to_end(d + "/pbase.pt", d + "/pft.pt", expected(pf), "pft.safetensors");
  fs::remove_all(d);
}

// The real YOLOv5n checkpoints: same tensors as the .safetensors beside them.
TEST(PyTorchReal, CheckpointsMatchSafetensors) {
  std::string dir = shared_yolo();
  if (dir.empty()) GTEST_SKIP() << "../shared/data/yolov5n not present";
  for (std::string n : {"base", "ft-dna-origami-train1", "ft-dna-origami-train5", "ft-knives-guns"}) {
    SCOPED_TRACE(n);
    std::string pt = tptest::read_file(dir + "/" + n + ".pt");
    auto want = st_tensors(tptest::read_file(dir + "/" + n + ".safetensors"), n);
    auto ck = read(pt, n + ".pt");
    ASSERT_TRUE(ck.ok()) << ck.status().message();
    ASSERT_EQ(ck->tensors.size(), want.size());
    ASSERT_EQ(ck->tensors.size(), 349u);
    for (size_t i = 0; i < want.size(); ++i) {  // in place, as a base is indexed
      const auto& t = ck->tensors[i];
      EXPECT_TRUE(t.contiguous_in_file) << t.name;
      EXPECT_EQ(t.name, want[i].name);
      EXPECT_EQ(t.dtype, want[i].dtype);
      EXPECT_EQ(t.shape, t.shape.empty() ? std::vector<uint64_t>{} : want[i].shape);
      EXPECT_TRUE(pt.compare(t.file_offset, t.nbytes, want[i].bytes) == 0) << t.name;
    }
    auto st = checkpoint_to_safetensors(*ck, u8(pt), n + ".pt");
    ASSERT_TRUE(st.ok()) << st.status().message();
    expect_same_tensors(st_tensors(std::string(st->begin(), st->end()), n), want, true);
  }
}

TEST(PyTorchReal, EndToEnd) {
  std::string dir = shared_yolo();
  if (dir.empty()) GTEST_SKIP() << "../shared/data/yolov5n not present";
  if (tenpak_bin().empty()) GTEST_SKIP() << "TENPAK_BIN not set";
  for (std::string n : {"ft-dna-origami-train1", "ft-knives-guns"}) {
    SCOPED_TRACE(n);
    auto want = st_tensors(tptest::read_file(dir + "/" + n + ".safetensors"), n);
    end_to_end(dir + "/base.pt", dir + "/" + n + ".pt", want, n + ".safetensors", true);
    end_to_end(dir + "/base.safetensors", dir + "/" + n + ".pt", want, n + ".safetensors", true);
  }
}

namespace {
// The __metadata__ object of a safetensors file's header.
nlohmann::json st_metadata(const std::string& file) {
  uint64_t n;
  std::memcpy(&n, file.data(), 8);
  auto j = nlohmann::json::parse(file.substr(8, n));
  return j.contains("__metadata__") ? j["__metadata__"] : nlohmann::json();
}
}  // namespace

// A fine-tune published as sharded pytorch_model-0000N-of-0000M.bin with its
// pytorch_model.bin.index.json is rebuilt as loaders expect converted files:
// model-0000N-of-0000M.safetensors shards, each with __metadata__
// {"format": "pt"} (transformers < 4.48 refuses files without it), and a
// model.safetensors.index.json naming those shards; the stale .bin index,
// which pointed at files that no longer exist, is gone. Before: the .bin
// index was kept unchanged, no safetensors index, no metadata.
TEST(PyTorch, ShardedCheckpointServedWithSafetensorsIndex) {
  std::string d = tptest::temp_dir("ptshard");
  auto b = ckpt::plain_state_dict(0), s1 = ckpt::plain_state_dict(1), s2 = ckpt::module_checkpoint(2, "best");
  tptest::write_file(d + "/base/pytorch_model.bin", b.pt);
  tptest::write_file(d + "/ft/pytorch_model-00001-of-00002.bin", s1.pt);
  tptest::write_file(d + "/ft/pytorch_model-00002-of-00002.bin", s2.pt);
  nlohmann::ordered_json idx;
  idx["metadata"] = {{"total_size", 12345}};
  for (auto& t : s1.expect) idx["weight_map"][t.name] = "pytorch_model-00001-of-00002.bin";
  for (auto& t : s2.expect) idx["weight_map"]["m2." + t.name] = "pytorch_model-00002-of-00002.bin";
  tptest::write_file(d + "/ft/pytorch_model.bin.index.json", idx.dump(2));
  tptest::write_file(d + "/ft/config.json", "{}");
  BuildOptions conv;
  conv.as_safetensors = true;
  ASSERT_TRUE(build_delta(d + "/base", d + "/ft", d + "/delta", conv).ok());
  auto r = open_delta_dir(d + "/delta");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(attach_local_base(**r, d + "/base", true).ok());
  ASSERT_TRUE(apply_delta(**r, d + "/out", {}).ok());
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(d + "/out")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                             "model.safetensors.index.json"}));
  auto j = nlohmann::json::parse(tptest::read_file(d + "/out/model.safetensors.index.json"));
  EXPECT_EQ(j["metadata"]["total_size"], 12345);
  ASSERT_EQ(j["weight_map"].size(), s1.expect.size() + s2.expect.size());
  for (auto& t : s1.expect) EXPECT_EQ(j["weight_map"][t.name], "model-00001-of-00002.safetensors");
  for (auto& t : s2.expect) EXPECT_EQ(j["weight_map"]["m2." + t.name], "model-00002-of-00002.safetensors");
  for (auto* shard : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}) {
    SCOPED_TRACE(shard);
    auto md = st_metadata(tptest::read_file(d + "/out/" + shard));
    ASSERT_TRUE(md.is_object());
    EXPECT_EQ(md["format"], "pt");
  }
  expect_same_tensors(st_tensors(tptest::read_file(d + "/out/model-00001-of-00002.safetensors"), "shard 1"), expected(s1));
  fs::remove_all(d);
}

// --- checkpoints served bit for bit (the default) ----------------------------

// How a fine-tune checkpoint is cut: one range per storage, sorted and
// disjoint; the largest dense view names a storage (storage 4: "off", 3
// elements from element 4, wins over "shared", 2 from element 0); a storage
// only a strided view reads ("t") is one unnamed range of its whole entry.
TEST(PyTorch, StorageRangesForBitExactServing) {
  auto g = ckpt::plain_state_dict();
  auto ck = read(g.pt);
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto r = checkpoint_storage_ranges(*ck);
  ASSERT_EQ(r.size(), 6u);
  for (size_t i = 1; i < r.size(); ++i) EXPECT_LE(r[i - 1].end, r[i].begin);
  std::vector<std::string> names;
  for (auto& t : r) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"w", "h", "b", "n", "off", ""}));
  auto by = [&](const std::string& n) { return *std::find_if(r.begin(), r.end(), [&](auto& t) { return t.name == n; }); };
  auto exp = [&](const std::string& n) { return *std::find_if(g.expect.begin(), g.expect.end(), [&](auto& t) { return t.name == n; }); };
  for (auto* n : {"w", "h", "b", "n", "off"}) {
    SCOPED_TRACE(n);
    EXPECT_EQ(g.pt.substr(by(n).begin, by(n).nbytes()), exp(n).bytes);
    EXPECT_EQ(by(n).dtype, exp(n).dtype);
    EXPECT_EQ(by(n).shape, exp(n).shape);
  }
  const TensorInfo& t = r.back();
  EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(t.shape, std::vector<uint64_t>{6});
  EXPECT_EQ(t.nbytes(), 24u);
}

namespace {
// Builds (default mode) base -> ft with the library, applies, and expects
// every output file byte-equal to the fine-tune's file of the same name.
// `want_matched`: tensors matched to the base (storages of at most 256
// bytes are coded with the zip structure, neither counted nor matched).
void expect_bit_exact(const std::string& base, const std::string& ft, const std::string& d, uint64_t want_matched) {
  auto rep = build_delta(base, ft, d + "/delta", {});
  ASSERT_TRUE(rep.ok()) << rep.status().message();
  EXPECT_EQ(rep->tensors_matched, want_matched);
  auto r = open_delta_dir(d + "/delta");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_TRUE(attach_local_base(**r, base, true).ok());
  auto n = apply_delta(**r, d + "/out", {});
  ASSERT_TRUE(n.ok()) << n.status().message();
  const bool dir = fs::is_directory(ft);
  size_t files = 0;
  for (auto& e : fs::directory_iterator(d + "/out")) {
    ++files;
    std::string name = e.path().filename().string();
    std::string orig = tptest::read_file(dir ? ft + "/" + name : ft);
    EXPECT_TRUE(tptest::read_file(e.path().string()) == orig) << name << " differs from the original";
  }
  EXPECT_EQ(files, dir ? static_cast<size_t>(std::distance(fs::directory_iterator(ft), fs::directory_iterator())) : 1u);
}
}  // namespace

// Generated checkpoints (a pickled module tree; a plain state_dict with a
// strided view, a storage shared by two views and a view at an offset) come
// back byte for byte under their own names, against a base given as a
// checkpoint or as safetensors. Their storages are all tiny (coded with the
// structure); matching is covered by the tests below.
TEST(PyTorch, CheckpointServedBitForBit) {
  std::string d = tptest::temp_dir("ptexact");
  auto mb = ckpt::module_checkpoint(0, "archive"), mf = ckpt::module_checkpoint(3, "best");
  tptest::write_file(d + "/mbase.pt", mb.pt);
  tptest::write_file(d + "/mft.pt", mf.pt);
  expect_bit_exact(d + "/mbase.pt", d + "/mft.pt", d + "/m", 0);
  auto ck = read(mb.pt);
  ASSERT_TRUE(ck.ok());
  auto st = checkpoint_to_safetensors(*ck, u8(mb.pt), "mbase.pt");
  ASSERT_TRUE(st.ok());
  tptest::write_file(d + "/mbase.safetensors", std::string(st->begin(), st->end()));
  expect_bit_exact(d + "/mbase.safetensors", d + "/mft.pt", d + "/ms", 0);
  auto pb = ckpt::plain_state_dict(0), pf = ckpt::plain_state_dict(1);
  tptest::write_file(d + "/pbase.pt", pb.pt);
  tptest::write_file(d + "/pft.pt", pf.pt);
  expect_bit_exact(d + "/pbase.pt", d + "/pft.pt", d + "/p", 0);
  fs::remove_all(d);
}

namespace {
// Written by Debian's torch: a base; a fine-tune as .pt (resized rows, tied
// weights, a slice of a larger storage, a transposed view, F32/F16/BF16/I64),
// the same as a Lightning-style .ckpt ({"state_dict": ..., "epoch": 3}), and
// as sharded pytorch_model-0000N-of-00002.bin with their index.
const char* kTorchGen = R"PY(
import json, os, sys, torch
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
base = {"emb.weight": torch.randn(50, 16, generator=g), "l1.weight": torch.randn(32, 16, generator=g),
        "l1.bias": torch.randn(32, generator=g), "h.weight": torch.randn(16, 16, generator=g).half(),
        "b.weight": torch.randn(8, 8, generator=g).bfloat16(), "n": torch.tensor(7),
        "slice": torch.randn(16, 16, generator=g)}
os.makedirs(out + "/base"); os.makedirs(out + "/ft")
torch.save(base, out + "/base/base.pt")
def nudge(v):
    return (v.float() + 1e-3 * torch.randn(v.shape, generator=g)).to(v.dtype) if v.is_floating_point() else v + 1
ft = {k: nudge(v) for k, v in base.items()}
ft["emb.weight"] = torch.cat([ft["emb.weight"], torch.randn(2, 16, generator=g)])
ft["tied.weight"] = ft["emb.weight"]
big = torch.cat([torch.randn(8, 16, generator=g), ft["slice"], torch.randn(8, 16, generator=g)])
ft["slice"] = big[8:24]
ft["tr"] = torch.randn(24, 16, generator=g).t()
torch.save(ft, out + "/ft/ft.pt")
torch.save({"state_dict": ft, "epoch": 3}, out + "/ft/ft.ckpt")
keys = list(ft)
wm = {}
for i, part in enumerate([keys[:4], keys[4:]]):
    name = f"pytorch_model-{i + 1:05d}-of-00002.bin"
    torch.save({k: ft[k] for k in part}, out + "/ft/" + name)
    wm.update({k: name for k in part})
json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, open(out + "/ft/pytorch_model.bin.index.json", "w"))
)PY";

// torch.load(weights_only=True) of each pair of files: same keys, dtypes,
// shapes, strides, values and storage sharing.
const char* kTorchCmp = R"PY(
import sys, torch
def flat(x, p=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from flat(v, p + str(k) + ".")
    elif isinstance(x, torch.Tensor):
        yield p, x
for a, b in zip(sys.argv[1::2], sys.argv[2::2]):
    A = dict(flat(torch.load(a, weights_only=True)))
    B = dict(flat(torch.load(b, weights_only=True)))
    assert list(A) == list(B), (a, list(A), list(B))
    for k in A:
        x, y = A[k], B[k]
        assert x.dtype == y.dtype and x.shape == y.shape and x.stride() == y.stride(), (a, k)
        assert torch.equal(x, y), (a, k)
    ptr = lambda d: [v.storage().data_ptr() for v in d.values()]
    pa, pb = ptr(A), ptr(B)
    assert [pa.index(p) for p in pa] == [pb.index(p) for p in pb], (a, "storage sharing differs")
print("ok")
)PY";

bool debian_torch() { return run("/usr/bin/python3 -c 'import torch'") == 0; }
}  // namespace

// Fine-tunes written by Debian's torch, through the CLI: build (default),
// verify (which checks every file's sha256), apply; every file of the
// fine-tune comes back byte for byte under its own name (the .bin index
// included, unchanged), torch.load(weights_only=True) of each rebuilt
// checkpoint gives the original's tensors; tensors matched to the base
// whether the base is the .pt or its safetensors conversion.
TEST(PyTorchTorch, DebianTorchCheckpointsBitForBit) {
  if (tenpak_bin().empty()) GTEST_SKIP() << "TENPAK_BIN not set";
  if (!debian_torch()) GTEST_SKIP() << "/usr/bin/python3 has no torch";
  std::string d = tptest::temp_dir("pttorch");
  tptest::write_file(d + "/gen.py", kTorchGen);
  tptest::write_file(d + "/cmp.py", kTorchCmp);
  std::string err;
  ASSERT_EQ(run("/usr/bin/python3 " + d + "/gen.py " + d + "/m", &err), 0) << err;
  std::string base_pt = d + "/m/base/base.pt";
  std::string bpt = tptest::read_file(base_pt);
  auto ck = read(bpt, "base.pt");
  ASSERT_TRUE(ck.ok()) << ck.status().message();
  auto st = checkpoint_to_safetensors(*ck, u8(bpt), "base.pt");
  ASSERT_TRUE(st.ok());
  tptest::write_file(d + "/base.safetensors", std::string(st->begin(), st->end()));
  for (std::string base : {base_pt, d + "/base.safetensors"}) {
    SCOPED_TRACE(base);
    fs::remove_all(d + "/D");
    fs::remove_all(d + "/OUT");
    std::string js = d + "/build.json";
    ASSERT_EQ(run("(" + tenpak_bin() + " delta build --json " + base + " " + d + "/m/ft -o " + d + "/D >" + js + ")", &err), 0)
        << err;
    auto rep = nlohmann::json::parse(tptest::read_file(js));
    // One range per storage over 256 bytes (l1.bias, b.weight and n are
    // coded with the structure): ft.pt and ft.ckpt 5 (tied.weight shares
    // emb.weight's), 4 matched ("tr" is strided only); shard 1: 3 of 3;
    // shard 2: 3 (slice, tied.weight, tr), 1 matched (tied.weight, alone
    // there, has no base tensor of its name).
    EXPECT_EQ(rep["tensors"], 5 + 5 + 3 + 3);
    EXPECT_EQ(rep["tensors_matched"], 4 + 4 + 3 + 1);
    ASSERT_EQ(run(tenpak_bin() + " delta verify " + d + "/D --base " + base, &err), 0) << err;
    ASSERT_EQ(run(tenpak_bin() + " delta apply " + d + "/D --base " + base + " -o " + d + "/OUT", &err), 0) << err;
    std::vector<std::string> names;
    for (auto& e : fs::directory_iterator(d + "/m/ft")) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    std::vector<std::string> got;
    for (auto& e : fs::directory_iterator(d + "/OUT")) got.push_back(e.path().filename().string());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, names);
    std::string pairs;
    for (auto& n : names) {
      EXPECT_TRUE(tptest::read_file(d + "/OUT/" + n) == tptest::read_file(d + "/m/ft/" + n)) << n << " differs";
      if (n != "pytorch_model.bin.index.json") pairs += " " + d + "/m/ft/" + n + " " + d + "/OUT/" + n;
    }
    EXPECT_EQ(run("/usr/bin/python3 " + d + "/cmp.py" + pairs, &err), 0) << err;
  }
  fs::remove_all(d);
}

// The real YOLOv5n fine-tunes, served as themselves: every .pt pair
// round-trips byte for byte, against base.pt and base.safetensors; the 76
// storages over 256 bytes are all matched by name (the head's as resized;
// the other 273 of the 349 are coded with the zip structure).
TEST(PyTorchReal, CheckpointsRoundTripBitExact) {
  std::string dir = shared_yolo();
  if (dir.empty()) GTEST_SKIP() << "../shared/data/yolov5n not present";
  for (std::string n : {"ft-dna-origami-train1", "ft-dna-origami-train5", "ft-knives-guns"}) {
    for (std::string b : {"base.pt", "base.safetensors"}) {
      SCOPED_TRACE(n + " against " + b);
      std::string d = tptest::temp_dir("ptreal");
      expect_bit_exact(dir + "/" + b, dir + "/" + n + ".pt", d, 76);
      fs::remove_all(d);
    }
  }
}
