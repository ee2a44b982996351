// Writes the seed inputs of each fuzz entry point to DIR/<entry>/seed-<n>,
// as starting corpora for the libFuzzer drivers.
#include <cstdio>
#include <filesystem>

#include "fuzz_seeds.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::pair<const char*, std::vector<std::string>> sets[] = {{"checkpoint", tpfuzz::checkpoint_seeds()},
                                                             {"pickle", tpfuzz::pickle_seeds()},
                                                             {"safetensors", tpfuzz::safetensors_seeds()},
                                                             {"manifest", tpfuzz::manifest_seeds()},
                                                             {"lanes", tpfuzz::lanes_seeds()},
                                                             {"patch", tpfuzz::patch_seeds()},
                                                             {"lowrank", tpfuzz::lowrank_seeds()},
                                                             {"approx", tpfuzz::approx_seeds()}};
  for (auto& [name, seeds] : sets)
    for (size_t i = 0; i < seeds.size(); ++i)
      tptest::write_file(std::string(argv[1]) + "/" + name + "/seed-" + std::to_string(i), seeds[i]);
  return 0;
}
