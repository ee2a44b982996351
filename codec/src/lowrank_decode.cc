// Codec 12 (lowrank_lanes): the decoder (tenpak_codec_decode). docs/FORMAT.md
// ("Codec 12") is the normative text. Its two parts are decoded by the codecs
// they are: the prediction by decode_approx (codec 11, method 2; its float32
// arithmetic lives in approx_decode.cc, compiled with -ffp-contract=off), the
// residual by lanes::decode (codec 9) with the prediction as its base. This
// file does no float arithmetic; it is compiled with -ffp-contract=off too
// (codec/CMakeLists.txt) so that none can creep in unnoticed.
#include "tenpak/lowrank_codec.h"

#include "lanes_codec.h"
#include "tenpak/scratch.h"

namespace tenpak {

Status decode_lowrank(const uint8_t* payload, size_t len, const uint8_t* base, size_t n, DType dt, uint8_t* out) {
  auto corrupt = [](const std::string& why) { return Status{Errc::corrupt, "payload does not decode: lowrank_lanes: " + why}; };
  if (dt != DType::F32 && dt != DType::F16 && dt != DType::BF16) return corrupt("output dtype is not F32, F16 or BF16");
  if (len < 4) return corrupt("payload shorter than its header");
  const uint32_t a = uint32_t(payload[0]) | uint32_t(payload[1]) << 8 | uint32_t(payload[2]) << 16 |
                     uint32_t(payload[3]) << 24;
  if (a < 6 || a > len - 4) return corrupt("prediction length out of range");
  if (payload[4] != static_cast<uint8_t>(ApproxMethod::lowrank)) return corrupt("prediction is not codec 11 method 2 (lowrank)");
  thread_local Scratch<uint8_t> pred;
  uint8_t* p = pred.get(n);
  Status st = decode_approx(payload + 4, a, base, n, dt, p);
  if (!st.ok()) return {st.code(), "lowrank_lanes: prediction: " + st.message()};
  if (!lanes::decode(payload + 4 + a, len - 4 - a, p, n, dt, out)) return corrupt("residual (sub_lanes) does not decode");
  return Status::Ok();
}

}  // namespace tenpak
