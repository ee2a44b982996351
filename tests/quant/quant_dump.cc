// quant_dump MODEL_DIR OUT.safetensors: every tensor of load_model_any(MODEL_DIR)
// (float32, as TenPak's runtime evaluates it), for check_quant.py to compare
// with its own dequantization written from the loaders' code.
#include <cstdio>

#include "st_io.h"
#include "tenpak/quant.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: quant_dump MODEL_DIR OUT.safetensors\n");
    return 2;
  }
  auto m = tenpak::quant::load_model_any(argv[1]);
  if (!m.ok()) {
    std::fprintf(stderr, "%s\n", m.status().to_string().c_str());
    return 4;
  }
  std::vector<std::pair<std::string, torch::Tensor>> t(m->w.begin(), m->w.end());
  auto st = tenpak::quant::write_safetensors(argv[2], t);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.to_string().c_str());
    return 1;
  }
  return 0;
}
