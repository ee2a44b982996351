// Synthetic but realistic base/fine-tune pairs (LLM-like tensor names, shapes
// and weight statistics) for tests, the demo and benchmarks.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::fixtures {

struct Spec {
  std::string kind = "bf16";  // bf16 | fp32 | frozen | lora | vocab | dtype | sharded
  uint64_t size_mb = 16;      // approximate size of the base model
  uint64_t seed = 1;
};

// Writes OUT/base and OUT/finetune (each a model directory with config.json,
// tokenizer.json and safetensors files). Returns an error naming the file.
Status generate_pair(const Spec& spec, const std::string& out);

// Kinds "trained" (BF16) and "trained-fp32": runs the libtorch trainer
// `tenpak-train` found next to the running executable (libtorch stays out of
// `tenpak`), writing OUT/base and OUT/finetune. `size_mb` 0 keeps the
// trainer's default model size. Errors if tenpak-train was not built.
Status run_trainer(const Spec& spec, uint64_t size_mb, const std::string& out);

// Runs `exe` with argv `args` (args[0] is the program's name) and waits;
// an error names the program and its exit code or signal.
Status run_program(const std::string& exe, std::vector<std::string> args);

}  // namespace tenpak::fixtures
