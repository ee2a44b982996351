// Generated checkpoints: valid ones (plain state_dict with views; a pickled
// nn.Module tree inside a training-checkpoint dict) and malicious ones.
#pragma once
#include <functional>

#include "ckpt_writer.h"
#include "tenpak/safetensors.h"

namespace ckpt {

using Push = std::function<void(Pickle&)>;

// Float/half/bfloat16 helpers (bit patterns are arbitrary but fixed).
inline std::vector<float> iota_f(size_t n, float start = 0) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i) * 0.5f;
  return v;
}
inline std::vector<uint16_t> iota_u16(size_t n, uint16_t start) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint16_t>(start + 37 * i);
  return v;
}

struct Generated {
  std::string pt;  // the checkpoint file
  // Expected tensors in state_dict order: name, dtype, shape, row-major bytes.
  struct T { std::string name; tenpak::DType dtype; std::vector<uint64_t> shape; std::string bytes; bool contiguous; };
  std::vector<T> expect;
};

// OrderedDict name -> tensor with F32/F16/BF16/I64 tensors, a view with a
// storage offset, a transposed (non-contiguous) view and two views sharing a
// storage. `seed` shifts the values so that pairs differ.
inline Generated plain_state_dict(float seed = 0, const std::string& root = "archive", bool zip64 = false) {
  using tenpak::DType;
  auto s0 = iota_f(6, seed), s4 = iota_f(10, seed + 100), s5 = iota_f(6, seed + 200);
  auto s1 = iota_u16(4, static_cast<uint16_t>(0x3c00 + seed)), s2 = iota_u16(4, static_cast<uint16_t>(0x3f80 + seed));
  std::vector<int64_t> s3{static_cast<int64_t>(1234 + seed)};
  Pickle p;
  p.ordered_dict().put(0).mark();
  p.str("w").tensor("FloatStorage", "0", 6, 0, {2, 3}, {3, 1});
  p.str("h").tensor("HalfStorage", "1", 4, 0, {4}, {1});
  p.str("b").tensor("BFloat16Storage", "2", 4, 0, {2, 2}, {2, 1});
  p.str("n").tensor("LongStorage", "3", 1, 0, {}, {});
  p.str("off").tensor("FloatStorage", "4", 10, 4, {3}, {1});
  p.str("t").tensor("FloatStorage", "5", 6, 0, {3, 2}, {1, 3});
  p.str("shared").tensor("FloatStorage", "4", 10, 0, {2}, {1});
  p.setitems().stop();
  Generated g;
  g.pt = make_pt(p.b, {{"0", bytes_of(s0)}, {"1", bytes_of(s1)}, {"2", bytes_of(s2)}, {"3", bytes_of(s3)},
                       {"4", bytes_of(s4)}, {"5", bytes_of(s5)}}, root, zip64);
  std::vector<float> off(s4.begin() + 4, s4.begin() + 7), shared(s4.begin(), s4.begin() + 2);
  std::vector<float> t{s5[0], s5[3], s5[1], s5[4], s5[2], s5[5]};
  g.expect = {{"w", DType::F32, {2, 3}, bytes_of(s0), true},     {"h", DType::F16, {4}, bytes_of(s1), true},
              {"b", DType::BF16, {2, 2}, bytes_of(s2), true},    {"n", DType::I64, {}, bytes_of(s3), true},
              {"off", DType::F32, {3}, bytes_of(off), true},     {"t", DType::F32, {3, 2}, bytes_of(t), false},
              {"shared", DType::F32, {2}, bytes_of(shared), true}};
  return g;
}

// Pushes a pickled nn.Module: NEWOBJ (or copyreg._reconstructor) + BUILD of
// its __dict__ with _parameters, _buffers, _non_persistent_buffers_set, _modules.
inline void module(Pickle& p, const std::string& mod, const std::string& cls,
                   const std::vector<std::pair<std::string, Push>>& params,
                   const std::vector<std::pair<std::string, Push>>& buffers, const std::vector<std::string>& nonpersistent,
                   const std::vector<std::pair<std::string, Push>>& children, bool reconstructor = false) {
  if (reconstructor) {
    p.global("copyreg", "_reconstructor").mark().global(mod, cls).global("builtins", "object").none().tuple().reduce();
  } else {
    p.global(mod, cls).empty_tuple().newobj();
  }
  p.empty_dict().mark();
  p.str("training").boolean(false);
  auto od = [&](const std::vector<std::pair<std::string, Push>>& items) {
    p.ordered_dict();
    if (items.empty()) return;
    p.mark();
    for (auto& [k, f] : items) { p.str(k); f(p); }
    p.setitems();
  };
  p.str("_parameters"); od(params);
  p.str("_buffers"); od(buffers);
  p.str("_non_persistent_buffers_set").global("__builtin__", "set").mark().empty_list();
  if (!nonpersistent.empty()) {
    p.mark();
    for (auto& n : nonpersistent) p.str(n);
    p.appends();
  }
  p.tuple().reduce();
  p.str("_modules"); od(children);
  p.setitems().build();
}

// A YOLOv5-style training checkpoint: {'epoch', 'best_fitness' (numpy
// scalar), 'model': DetectionModel object, 'ema': None, 'optimizer': None}.
inline Generated module_checkpoint(float seed = 0, const std::string& root = "best") {
  using tenpak::DType;
  auto w = iota_u16(2, static_cast<uint16_t>(0x3c00 + seed));
  auto rm = iota_f(2, seed), bnw = iota_f(2, seed + 7), tmp = iota_f(2, 99);
  std::vector<int64_t> nbt{static_cast<int64_t>(42 + seed)};
  auto t = [](const char* type, const char* key, int64_t numel, std::vector<int64_t> shape) -> Push {
    return [=](Pickle& p) {
      std::vector<int64_t> stride(shape.size(), 1);
      for (size_t k = shape.size(); k-- > 1;) stride[k - 1] = stride[k] * shape[k];
      p.tensor(type, key, numel, 0, shape, stride);
    };
  };
  auto param = [](Push inner) -> Push { return [=](Pickle& p) { p.parameter(inner); }; };
  Push none = [](Pickle& p) { p.none(); };
  Push bn = [&](Pickle& p) { module(p, "torch.nn.modules.batchnorm", "BatchNorm2d", {{"weight", param(t("FloatStorage", "3", 2, {2}))}}, {}, {}, {}); };
  Push conv = [&](Pickle& p) {
    module(p, "models.common", "Conv", {{"weight", param(t("HalfStorage", "0", 2, {2, 1, 1, 1}))}, {"bias", none}},
           {{"running_mean", t("FloatStorage", "1", 2, {2})}, {"num_batches_tracked", t("LongStorage", "2", 1, {})},
            {"tmp", t("FloatStorage", "4", 2, {2})}},
           {"tmp"}, {{"bn", bn}});
  };
  Push act = [&](Pickle& p) { module(p, "torch.nn.modules.activation", "SiLU", {}, {}, {}, {}, true); };
  Push seq = [&](Pickle& p) { module(p, "torch.nn.modules.container", "Sequential", {}, {}, {}, {{"0", conv}, {"1", act}}); };
  Pickle p;
  p.empty_dict().put(0).mark();
  p.str("epoch").integer(-1);
  p.str("best_fitness").global("numpy.core.multiarray", "scalar").mark();
  p.global("numpy", "dtype").mark().str("f8").boolean(false).boolean(true).tuple().reduce();
  p.mark().integer(3).str("<").none().none().none().integer(-1).integer(-1).integer(0).tuple().build();
  p.op('C').le(8, 1);
  p.b.append(8, '\0');
  p.tuple().reduce();
  p.str("model");
  module(p, "models.yolo", "DetectionModel", {}, {}, {}, {{"model", seq}});
  p.str("ema").none().str("optimizer").none().str("date").str("2026-01-01");
  p.setitems().stop();
  Generated g;
  g.pt = make_pt(p.b, {{"0", bytes_of(w)}, {"1", bytes_of(rm)}, {"2", bytes_of(nbt)}, {"3", bytes_of(bnw)},
                       {"4", bytes_of(tmp)}}, root);
  g.expect = {{"model.0.weight", DType::F16, {2, 1, 1, 1}, bytes_of(w), true},
              {"model.0.running_mean", DType::F32, {2}, bytes_of(rm), true},
              {"model.0.num_batches_tracked", DType::I64, {}, bytes_of(nbt), true},
              {"model.0.bn.weight", DType::F32, {2}, bytes_of(bnw), true}};
  return g;
}

// data.pkl calling `mod.name(arg)`.
inline std::string call_pickle(const std::string& mod, const std::string& name, const std::string& arg) {
  Pickle p;
  p.global(mod, name).mark().str(arg).tuple().reduce().stop();
  return make_pt(p.b, {});
}

}  // namespace ckpt
