#include "locations.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "cli_util.h"
#include "tenpak/cached_source.h"
#include "tenpak/open_source.h"

namespace tenpak::cli {

namespace fs = std::filesystem;

std::unique_ptr<BlockSource> through_cache(std::unique_ptr<BlockSource> src, const std::shared_ptr<BlockCache>& cache,
                                           const std::string& location, std::string identity) {
  if (!cache || !is_remote_location(location)) return src;
  if (identity.empty()) identity = source_identity(*src);
  return wrap_with_cache(std::move(src), cache, std::move(identity));
}

Result<std::unique_ptr<DeltaReader>> open_delta(const std::string& loc, const std::shared_ptr<BlockCache>& cache) {
  auto idx = open_source(join_location(loc, kIndexFile));
  if (!idx.ok()) return Status{Errc::invalid, loc + ": not a TenPak delta (" + idx.status().message() + ")"};
  auto dat = open_source(join_location(loc, kDataFile));
  if (!dat.ok()) return Status{Errc::corrupt, loc + ": delta data missing (" + dat.status().message() + ")"};
  return DeltaReader::open(through_cache(std::move(idx.value()), cache, loc),
                           through_cache(std::move(dat.value()), cache, loc), loc);
}

namespace {

// Attaches every base file the delta needs from one base location.
Status attach_from(DeltaReader& r, const std::string& loc, bool verify, const std::shared_ptr<BlockCache>& cache,
                   const LogFn& log) {
  const Manifest& m = r.manifest();
  std::vector<bool> needed(m.base_files.size(), false);
  for (auto& f : m.frames)
    if (f.base_file != kNoBase) needed[f.base_file] = true;
  size_t n_needed = std::count(needed.begin(), needed.end(), true);
  std::error_code ec;
  bool remote = is_remote_location(loc);
  bool single = !remote && fs::is_regular_file(loc, ec);
  if (!remote && !single && !fs::is_directory(loc, ec)) return {Errc::invalid, loc + ": base not found"};
  if (single && n_needed > 1)
    return {Errc::mismatch, loc + ": the delta needs " + std::to_string(n_needed) + " base files; give the base model directory"};
  for (uint32_t i = 0; i < m.base_files.size(); ++i) {
    if (!needed[i]) continue;
    const BaseFile& bf = m.base_files[i];
    std::string path = single ? loc : join_location(loc, bf.name);
    SourceOptions so;
    so.expected_size = bf.size;  // a base file of another size is refused (mismatch)
    auto src = open_source(path, so);
    if (!src.ok()) return {Errc::mismatch, "base file '" + bf.name + "' needed by " + r.name() + ": " + src.status().message()};
    if (verify && !remote) {
      if ((*src)->size() != bf.size)
        return {Errc::mismatch, path + ": wrong base: " + std::to_string((*src)->size()) + " bytes, the delta " + r.name() +
                                    " was built against " + std::to_string(bf.size) + " bytes"};
      auto t0 = std::chrono::steady_clock::now();
      bool cached = false;
      auto h = sha256_of_local_file(path, {}, &cached);
      if (!h.ok()) return h.status();
      if (*h != bf.sha256)
        return {Errc::mismatch, path + ": wrong base: sha256 " + hex(*h) + " differs from " + hex(bf.sha256) +
                                    " recorded in the delta " + r.name()};
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (log)
        log("base " + path + ": sha256 verified (" + human_bytes(static_cast<double>(bf.size)) +
            (cached ? ", from the hash cache" : " in " + std::to_string(s).substr(0, 5) + " s") + ")");
    }
    // Cached under the sha256 the delta records: every fine-tune of this
    // base shares its cached blocks, whatever URL it came from.
    TP_RETURN_IF_ERROR(r.set_base(i, through_cache(std::move(src.value()), cache, path, hex(bf.sha256))));
  }
  return Status::Ok();
}

}  // namespace

Status attach_base_from(DeltaReader& r, const std::string& base, bool verify_local,
                        const std::shared_ptr<BlockCache>& cache, const LogFn& log) {
  const Manifest& m = r.manifest();
  bool any = false;
  for (auto& f : m.frames)
    if (f.base_file != kNoBase) any = true;
  if (!any) return Status::Ok();
  if (!base.empty()) return attach_from(r, base, verify_local, cache, log);
  if (m.base_locations.empty())
    return {Errc::invalid, r.name() + ": the delta records no base location; name the base model with --base BASE"};
  std::string errs;
  for (auto& loc : m.base_locations) {
    Status st = attach_from(r, loc, verify_local, cache, log);
    if (st.ok()) return st;
    if (st.code() == Errc::mismatch) return st;  // found, but wrong: never fall back silently
    errs += "\n  " + loc + ": " + st.message();
  }
  return {Errc::invalid, r.name() + ": no recorded base location is usable:" + errs + "\n(give --base BASE)"};
}

}  // namespace tenpak::cli
