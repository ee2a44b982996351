// Fuzz entry points for TenPak's parsers of untrusted bytes. Each returns ""
// when the input was handled correctly (accepted with every invariant
// holding, or refused with an error) and a description of the violated
// invariant otherwise. libFuzzer drivers (fuzz_main.cc) trap on a non-empty
// result; the mutation gtest reports it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tpfuzz {

// A whole torch.save zip file through read_pytorch_checkpoint + conversion.
std::string checkpoint(const uint8_t* data, size_t size);
// The bytes as data.pkl inside a valid zip (CRC fixed) with storages 0..3,
// so mutations reach the restricted unpickler and the tensor namer.
std::string pickle(const uint8_t* data, size_t size);
// A safetensors file: header length + header parser.
std::string safetensors(const uint8_t* data, size_t size);
// A tenpak.idx through parse_manifest, as given and with its checksum fixed
// so mutations reach the structural checks.
std::string manifest(const uint8_t* data, size_t size);

}  // namespace tpfuzz
