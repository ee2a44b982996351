#include "fuzz_targets.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "lanes_codec.h"
#include "tenpak/lowrank_codec.h"
#include "tenpak/patch_codec.h"
#include "pytorch/ckpt_writer.h"
#include "tenpak/format.h"
#ifndef TP_FUZZ_PARSERS_ONLY
#include "tenpak/lossy_info.h"
#endif
#include "tenpak/pytorch.h"
#include "tenpak/safetensors.h"

namespace tpfuzz {
namespace {

using namespace tenpak;

// Checks what a parsed safetensors header promises to its users.
std::string check_header(const SafetensorsHeader& h, uint64_t size) {
  uint64_t prev_end = h.data_start;
  for (auto& t : h.tensors) {
    if (t.dtype == DType::unknown || dtype_size(t.dtype) == 0) return "tensor '" + t.name + "' with unknown dtype";
    if (t.begin < prev_end || t.begin > t.end || t.end > size) return "tensor '" + t.name + "' out of order or range";
    unsigned __int128 n = dtype_size(t.dtype);
    for (auto d : t.shape) n *= d;
    if (n != t.nbytes()) return "tensor '" + t.name + "' size does not match its shape";
    prev_end = t.end;
  }
  return "";
}

std::string check_checkpoint(const uint8_t* data, size_t size) {
  auto ck = read_pytorch_checkpoint(data, size, "fuzz.pt");
  if (!ck.ok()) {
    auto c = ck.status().code();
    if (c != Errc::corrupt && c != Errc::unsupported) return "unexpected error code: " + ck.status().message();
    if (ck.status().message().find("fuzz.pt") == std::string::npos) return "error does not name the file";
    return "";
  }
  for (auto& t : ck->tensors) {
    unsigned __int128 n = dtype_size(t.dtype);
    if (n == 0) return "tensor '" + t.name + "' with unknown dtype";
    for (auto d : t.shape) n *= d;
    if (n != t.nbytes) return "tensor '" + t.name + "': nbytes does not match the shape";
    if (t.contiguous_in_file && (t.file_offset > size || t.nbytes > size - t.file_offset))
      return "tensor '" + t.name + "': in-place range outside the file";
  }
  auto st = checkpoint_to_safetensors(*ck, data, "fuzz.pt");
  if (!st.ok()) return "conversion of an accepted checkpoint failed: " + st.status().message();
  auto n = safetensors_header_len(st->data(), st->size(), "converted");
  if (!n.ok()) return "converted file has a bad header length";
  auto h = parse_safetensors_header(reinterpret_cast<const char*>(st->data()) + 8, *n, st->size(), "converted");
  if (!h.ok()) return "converted file does not parse: " + h.status().message();
  if (h->tensors.size() != ck->tensors.size()) return "converted file lost tensors";
  for (size_t i = 0; i < h->tensors.size(); ++i) {
    const auto& a = h->tensors[i];
    const auto& b = ck->tensors[i];
    if (a.name != b.name || a.dtype != b.dtype || a.shape != b.shape || a.nbytes() != b.nbytes)
      return "converted tensor " + std::to_string(i) + " differs from the checkpoint's";
    if (b.contiguous_in_file && std::memcmp(st->data() + a.begin, data + b.file_offset, b.nbytes) != 0)
      return "converted bytes of '" + b.name + "' differ from the file";
  }
  return check_header(*h, st->size());
}

}  // namespace

std::string checkpoint(const uint8_t* data, size_t size) { return check_checkpoint(data, size); }

std::string pickle(const uint8_t* data, size_t size) {
  std::map<std::string, std::string> storages;
  for (int k = 0; k < 4; ++k) storages[std::to_string(k)] = std::string(64, static_cast<char>('a' + k));
  std::string pt = ckpt::make_pt(std::string(reinterpret_cast<const char*>(data), size), storages);
  return check_checkpoint(reinterpret_cast<const uint8_t*>(pt.data()), pt.size());
}

std::string safetensors(const uint8_t* data, size_t size) {
  auto n = safetensors_header_len(data, size, "fuzz.safetensors");
  if (!n.ok()) return n.status().code() == Errc::corrupt ? "" : "unexpected error code";
  auto h = parse_safetensors_header(reinterpret_cast<const char*>(data) + 8, *n, size, "fuzz.safetensors");
  if (!h.ok()) return h.status().code() == Errc::corrupt ? "" : "unexpected error code";
  if (h->data_start != 8 + *n) return "data_start does not follow the header";
  return check_header(*h, size);
}

std::string manifest(const uint8_t* data, size_t size) {
  auto check = [](const uint8_t* p, size_t n) -> std::string {
    auto m = parse_manifest(p, n, "fuzz.idx");
    if (!m.ok()) {
      auto c = m.status().code();
      return c == Errc::corrupt || c == Errc::unsupported ? "" : "unexpected error code";
    }
    for (auto& f : m->out_files)
      if (!is_safe_relative_path(f.name)) return "accepted an unsafe file name";
    for (auto& f : m->base_files)
      if (!is_safe_relative_path(f.name)) return "accepted an unsafe base file name";
    for (auto& fr : m->frames) {
      if (fr.file >= m->out_files.size()) return "frame with a file index out of range";
      if (fr.base_file != kNoBase && fr.base_file >= m->base_files.size()) return "frame with a base out of range";
    }
    // An accepted index serializes back to the same bytes, except for the
    // header's reserved word, which parse_manifest ignores (a laxness the
    // mutation test found; the checksum still covers it). Checked with that
    // word zeroed and the checksum recomputed.
    std::string again = serialize_manifest(*m);
    std::string orig(reinterpret_cast<const char*>(p), n);
    uint32_t flags = 0;
    std::memcpy(&flags, p + 12, 4);
    if (flags & kIndexCompact) {
      // A compact index (docs/FORMAT.md) need not be the only encoding of its
      // records (zstd, varint spellings): its records must write back in the
      // compact layout and read as the same records.
      auto c = serialize_manifest_compact(*m, (flags & kIndexBodyZstd) != 0);
      if (!c.ok()) return "accepted a compact index that has no compact form";
      auto m2 = parse_manifest(reinterpret_cast<const uint8_t*>(c->data()), c->size(), "fuzz.idx");
      if (!m2.ok() || serialize_manifest(*m2) != again) return "compact index does not round-trip";
      if (m2->lossy_record != m->lossy_record) return "lossy record does not round-trip";
      if (((flags & kIndexRecord) != 0) != !m->lossy_record.empty()) return "record flag and record disagree";
#ifndef TP_FUZZ_PARSERS_ONLY
      // Whatever bytes the record holds, its reader refuses them as corrupt
      // (naming the index) or reads them; never another error or a throw.
      if (!m->lossy_record.empty()) {
        auto li = parse_lossy_info(m->lossy_record, *m, "fuzz.idx: lossy record", true);
        if (!li.ok()) {
          if (li.status().code() != Errc::corrupt) return "lossy record: unexpected error code";
          if (li.status().message().find("fuzz.idx") == std::string::npos) return "lossy record error does not name the file";
        } else if (lossy_summary_line(*li).empty()) {
          return "lossy record read but not shown";
        }
      }
#endif
      return "";
    }
    if (orig.size() >= 44 && again.size() == orig.size()) {
      std::memset(orig.data() + 28, 0, 4);
      uint64_t x = xxh64(orig.data(), orig.size() - 8);
      std::memcpy(orig.data() + orig.size() - 8, &x, 8);
    }
    if (again != orig) {
      size_t at = 0;
      while (at < std::min(again.size(), orig.size()) && again[at] == orig[at]) ++at;
      return "index does not round-trip (first difference at byte " + std::to_string(at) + " of " +
             std::to_string(n) + ")";
    }
    return "";
  };
  std::string r = check(data, size);
  if (!r.empty() || size < 8) return r;
  std::vector<uint8_t> fixed(data, data + size);
  uint64_t x = xxh64(fixed.data(), size - 8);
  std::memcpy(fixed.data() + size - 8, &x, 8);
  return check(fixed.data(), size);
}

std::string lanes(const uint8_t* data, size_t size) {
  if (size < 3) return "";
  const tenpak::DType dt = lanes_dtype(data[0]);
  const size_t count = (data[1] | (size_t(data[2]) << 8)) % 4097;
  const std::vector<uint8_t> base = lanes_base(dt, count);
  using tenpak::lanes::Path;
  std::vector<uint8_t> simd(base.size()), scalar(base.size());
  const bool a = tenpak::lanes::decode(data + 3, size - 3, base.data(), base.size(), dt, scalar.data(), Path::scalar);
  // Every SIMD decoder this CPU has must agree with the portable one.
  for (Path path : {Path::avx512, Path::avx2}) {
    if (!tenpak::lanes::path_available(path)) continue;
    const std::string name = path == Path::avx512 ? "AVX-512" : "AVX2";
    const bool b = tenpak::lanes::decode(data + 3, size - 3, base.data(), base.size(), dt, simd.data(), path);
    if (a != b) return name + " and portable decoders disagree: " + (b ? name : std::string("portable")) + " accepts";
    if (a && simd != scalar) return name + " and portable decoders accept with different bytes";
  }
  if (a) {
    // Whatever an accepted payload decodes to, the encoder round-trips.
    std::string again;
    tenpak::lanes::encode(scalar.data(), base.data(), scalar.size(), dt, again);
    std::vector<uint8_t> back(scalar.size());
    if (!tenpak::lanes::decode(reinterpret_cast<const uint8_t*>(again.data()), again.size(), base.data(), base.size(),
                               dt, back.data()) ||
        back != scalar)
      return "re-encoding an accepted payload's output does not round-trip";
    // And every encoder this CPU has writes the portable one's bytes.
    std::string portable;
    tenpak::lanes::encode(scalar.data(), base.data(), scalar.size(), dt, portable, Path::scalar);
    for (Path path : {Path::avx512, Path::avx2}) {
      if (!tenpak::lanes::path_available(path)) continue;
      std::string other;
      tenpak::lanes::encode(scalar.data(), base.data(), scalar.size(), dt, other, path);
      if (other != portable) return std::string(path == Path::avx512 ? "AVX-512" : "AVX2") + " and portable encoders disagree";
    }
  }
  return "";
}

std::string patch(const uint8_t* data, size_t size) {
  if (size < 2) return "";
  tenpak::Frame f;
  f.codec = tenpak::Codec::patch;
  f.out_len = 1 + ((data[0] | (uint32_t(data[1]) << 8)) % 8192);
  f.data_len = static_cast<uint32_t>(size - 2);
  const std::vector<uint8_t>& base = patch_base();
  const uint8_t* payload = data + 2;
  // Base file 0 when the payload lists extents (its count word says so), none otherwise.
  uint32_t ne = 0;
  if (size >= 6) std::memcpy(&ne, payload, 4);
  if (ne) { f.base_file = 0; f.base_offset = 0; f.base_len = static_cast<uint32_t>(base.size()); }
  auto ext = tenpak::patch_extents(f, payload);
  if (!ext.ok()) return "";
  std::vector<uint8_t> b;
  for (auto& e : *ext) {
    if (e.offset + e.len > base.size()) return "patch_extents accepted an extent outside the base range";
    b.insert(b.end(), base.begin() + e.offset, base.begin() + e.offset + e.len);
  }
  std::vector<uint8_t> out(f.out_len), again(f.out_len);
  const bool a = tenpak::decode_patch(f, payload, b.data(), out.data()).ok();
  const bool c = tenpak::decode_patch(f, payload, b.data(), again.data()).ok();
  if (a != c || (a && out != again)) return "decoding the same payload twice differs";
  return "";
}

std::string approx(const uint8_t* data, size_t size) {
#ifdef TP_FUZZ_PARSERS_ONLY
  return "";  // no frame_decode.cc in the clang parsers build (see fuzz_targets.h)
#else
  if (size < 3) return "";
  const tenpak::DType dt = lowrank_dtype(data[0]);
  const size_t count = 1 + (data[1] | (size_t(data[2]) << 8)) % 2048;
  const std::vector<uint8_t> base = lanes_base(dt, count);
  std::vector<uint8_t> out(base.size()), again(base.size());
  const bool a = tenpak::decode_approx(data + 3, size - 3, base.data(), base.size(), dt, out.data()).ok();
  const bool c = tenpak::decode_approx(data + 3, size - 3, base.data(), base.size(), dt, again.data()).ok();
  if (a != c || (a && out != again)) return "decoding the same payload twice differs";
  return "";
#endif
}

std::string lowrank(const uint8_t* data, size_t size) {
#ifdef TP_FUZZ_PARSERS_ONLY
  return "";  // the clang parsers build has no frame_decode.cc (see fuzz_targets.h)
#else
  if (size < 3) return "";
  const tenpak::DType dt = lowrank_dtype(data[0]);
  const size_t count = 1 + (data[1] | (size_t(data[2]) << 8)) % 2048;
  const std::vector<uint8_t> base = lanes_base(dt, count);
  const uint8_t* payload = data + 3;
  const size_t len = size - 3;
  std::vector<uint8_t> out(base.size()), again(base.size());
  const bool a = tenpak::decode_lowrank(payload, len, base.data(), base.size(), dt, out.data()).ok();
  const bool c = tenpak::decode_lowrank(payload, len, base.data(), base.size(), dt, again.data()).ok();
  if (a != c || (a && out != again)) return "decoding the same payload twice differs";
  if (a) {
    uint32_t pl;
    std::memcpy(&pl, payload, 4);
    std::vector<uint8_t> pred(base.size());
    if (pl > len - 4 || !tenpak::decode_approx(payload + 4, pl, base.data(), base.size(), dt, pred.data()).ok())
      return "accepted a payload whose prediction codec 11 refuses";
  }
  return "";
#endif
}

}  // namespace tpfuzz
