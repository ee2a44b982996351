#include "tenpak/status.h"

namespace tenpak {

const char* errc_name(Errc e) {
  switch (e) {
    case Errc::ok: return "ok";
    case Errc::io: return "io";
    case Errc::corrupt: return "corrupt";
    case Errc::invalid: return "invalid";
    case Errc::mismatch: return "mismatch";
    case Errc::no_space: return "no_space";
    case Errc::exists: return "exists";
    case Errc::unsupported: return "unsupported";
    case Errc::unavailable: return "unavailable";
    case Errc::not_found: return "not_found";
    case Errc::cancelled: return "cancelled";
  }
  return "?";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return msg_;
}

}  // namespace tenpak
