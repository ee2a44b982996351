#include "locations.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "cli_util.h"
#include "tenpak/cached_source.h"
#include "tenpak/format.h"
#include "tenpak/open_source.h"
#include "tenpak/out_file.h"

namespace tenpak::cli {

namespace fs = std::filesystem;

std::unique_ptr<BlockSource> through_cache(std::unique_ptr<BlockSource> src, const std::shared_ptr<BlockCache>& cache,
                                           const std::string& location, std::string identity) {
  if (!cache || !is_remote_location(location)) return src;
  if (identity.empty()) identity = source_identity(*src);
  return wrap_with_cache(std::move(src), cache, std::move(identity));
}

std::string remote_file_name(const std::string& loc) {
  if (!is_remote_location(loc)) return "";
  std::string url = resolve_url(loc);
  url = url.substr(0, url.find_first_of("?#"));
  const size_t slash = url.rfind('/');
  const size_t scheme = url.find("://");
  if (slash == std::string::npos || (scheme != std::string::npos && slash < scheme + 3)) return "";
  std::string name = url.substr(slash + 1);
  for (const char* ext : {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}) {
    const size_t n = std::strlen(ext);
    if (name.size() > n && name.compare(name.size() - n, n, ext) == 0) return name;
  }
  return "";
}

Result<std::unique_ptr<DeltaReader>> open_delta(const std::string& loc, const std::shared_ptr<BlockCache>& cache) {
  auto idx = open_source(join_location(loc, kIndexFile));
  if (!idx.ok()) {
    // An origin that does not answer (refused, 5xx) is unavailable; one that
    // answers without the index (404) does not hold a delta there.
    Errc code = is_remote_location(loc) && idx.status().code() == Errc::io ? Errc::unavailable : Errc::invalid;
    return Status{code, loc + ": not a TenPak delta (" + idx.status().message() + ")"};
  }
  auto dat = open_source(join_location(loc, kDataFile));
  if (!dat.ok()) return Status{Errc::corrupt, loc + ": delta data missing (" + dat.status().message() + ")"};
  return DeltaReader::open(through_cache(std::move(idx.value()), cache, loc),
                           through_cache(std::move(dat.value()), cache, loc), loc);
}

namespace {

// Attaches every base file the delta needs from one base location.
Status attach_from(DeltaReader& r, const std::string& loc, bool verify, const std::shared_ptr<BlockCache>& cache,
                   const LogFn& log, const LocalFileOptions& local) {
  const Manifest& m = r.manifest();
  const std::vector<bool> needed = needed_base_files(m);
  size_t n_needed = std::count(needed.begin(), needed.end(), true);
  std::error_code ec;
  bool remote = is_remote_location(loc);
  // A single file: a local one, or the URL / hub path of one.
  bool single = remote ? !remote_file_name(loc).empty() : fs::is_regular_file(loc, ec);
  if (!remote && !single && !fs::is_directory(loc, ec)) return {Errc::invalid, loc + ": base not found"};
  if (single && n_needed > 1)
    return {Errc::mismatch, loc + ": the delta needs " + std::to_string(n_needed) + " base files; give the base model directory"};
  for (uint32_t i = 0; i < m.base_files.size(); ++i) {
    if (!needed[i]) continue;
    const BaseFile& bf = m.base_files[i];
    std::string path = single ? loc : join_location(loc, bf.name);
    SourceOptions so;
    so.expected_size = bf.size;  // a base file of another size is refused (mismatch)
    so.local = local;
    auto src = open_source(path, so);
    if (!src.ok()) {
      // Another size is a wrong base; a remote origin that does not answer
      // or serve (refused, 404, 503) is unavailable, not wrong.
      Errc code = src.status().code() == Errc::mismatch || !remote ? Errc::mismatch : Errc::unavailable;
      return {code, "base file '" + bf.name + "' needed by " + r.name() + ": " + src.status().message()};
    }
    if (verify && !remote) {
      if ((*src)->size() != bf.size)
        return {Errc::mismatch, path + ": wrong base: " + std::to_string((*src)->size()) + " bytes, the delta " + r.name() +
                                    " was built against " + std::to_string(bf.size) + " bytes"};
      auto t0 = std::chrono::steady_clock::now();
      bool cached = false;
      auto h = sha256_of_local_file(path, {}, &cached, local);
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
                        const std::shared_ptr<BlockCache>& cache, const LogFn& log, const LocalFileOptions& local) {
  const Manifest& m = r.manifest();
  bool any = false;
  for (auto& f : m.frames)
    if (f.base_file != kNoBase) any = true;
  if (!any) return Status::Ok();
  if (!base.empty()) return attach_from(r, base, verify_local, cache, log, local);
  if (m.base_locations.empty())
    return {Errc::invalid, r.name() + ": the delta records no base location; name the base model with --base BASE"};
  std::string errs;
  bool unavailable = false;
  for (auto& loc : m.base_locations) {
    Status st = attach_from(r, loc, verify_local, cache, log, local);
    if (st.ok()) return st;
    if (st.code() == Errc::mismatch) return st;  // found, but wrong: never fall back silently
    unavailable |= st.code() == Errc::unavailable;
    errs += "\n  " + loc + ": " + st.message();
  }
  return {unavailable ? Errc::unavailable : Errc::invalid,
          r.name() + ": no recorded base location is usable:" + errs + "\n(give --base BASE)"};
}

DownloadedModel::~DownloadedModel() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

namespace {

using Fill = std::function<Status(uint64_t off, size_t n, uint8_t* buf)>;

// Writes `size` bytes, produced chunk by chunk by `fill`, to the new file
// `path` (inside the download directory, which is removed as a whole when
// anything fails).
Status write_file(const std::string& path, uint64_t size, const Fill& fill,
                  const std::function<void(uint64_t, uint64_t)>& progress) {
  OutFileWriter w;
  TP_RETURN_IF_ERROR(w.open(path));
  std::vector<uint8_t> buf(static_cast<size_t>(std::min<uint64_t>(size, 8u << 20)));
  for (uint64_t off = 0; off < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    TP_RETURN_IF_ERROR(fill(off, n, buf.data()));
    TP_RETURN_IF_ERROR(w.write(buf.data(), n));
    off += n;
    if (progress) progress(off, size);
  }
  return w.close();
}

Status download_file(BlockSource& src, const std::string& path, const std::function<void(uint64_t, uint64_t)>& progress) {
  return write_file(path, src.size(), [&](uint64_t off, size_t n, uint8_t* b) { return src.read(off, n, b); }, progress);
}

}  // namespace

Result<std::unique_ptr<DownloadedModel>> download_model_dir(const std::string& loc, const std::string& near,
                                                            const std::function<void(uint64_t, uint64_t)>& progress) {
  fs::path parent = fs::absolute(fs::path(near)).parent_path();
  std::string tmpl = (parent / ".tenpak-download-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) return Status{Errc::io, tmpl + ": cannot create a download directory: " + std::strerror(errno)};
  auto model = std::make_unique<DownloadedModel>(tmpl);
  // Which files: the shards the index names, else model.safetensors.
  std::vector<std::string> required;
  std::set<std::string> optional = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                    "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt"};
  const std::string index = "model.safetensors.index.json";
  if (std::string file = remote_file_name(loc); !file.empty()) {
    // The URL of one model file: that file alone, as a local file path.
    auto src = open_source(loc);
    if (!src.ok()) return Status{src.status().code(), "base " + loc + ": " + src.status().message()};
    TP_RETURN_IF_ERROR(download_file(**src, model->dir() + "/" + file, progress));
    return model;
  }
  if (auto src = open_source(join_location(loc, index)); src.ok()) {
    // Read once, into memory: parsed here, then written for the builder.
    constexpr uint64_t kMaxIndex = 64u << 20;
    if ((*src)->size() > kMaxIndex)
      return Status{Errc::invalid, join_location(loc, index) + ": larger than 64 MiB: not a safetensors index"};
    std::string text((*src)->size(), '\0');
    TP_RETURN_IF_ERROR((*src)->read(0, text.size(), reinterpret_cast<uint8_t*>(text.data())));
    TP_RETURN_IF_ERROR(write_file(model->dir() + "/" + index, text.size(), [&](uint64_t off, size_t n, uint8_t* b) {
      std::memcpy(b, text.data() + off, n);
      return Status::Ok();
    }, {}));
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return Status{Errc::invalid, join_location(loc, index) + ": not a safetensors index (no weight_map)"};
    std::set<std::string> shards;
    for (auto& [name, file] : j["weight_map"].items())
      if (file.is_string()) shards.insert(file.get<std::string>());
    for (auto& s : shards) {
      if (!is_safe_relative_path(s))  // the rule the manifest's file names follow
        return Status{Errc::invalid, join_location(loc, index) + ": unsafe shard name '" + s + "'"};
      required.push_back(s);
    }
  } else if (src.status().code() == Errc::invalid) {
    required.push_back("model.safetensors");  // no index (404): a single file
  } else {
    return src.status();
  }
  for (auto& name : required) {
    auto src = open_source(join_location(loc, name));
    if (!src.ok()) return Status{src.status().code(), "base " + loc + ": " + src.status().message()};
    fs::create_directories(fs::path(model->dir() + "/" + name).parent_path());
    TP_RETURN_IF_ERROR(download_file(**src, model->dir() + "/" + name, progress));
  }
  for (auto& name : optional) {
    auto src = open_source(join_location(loc, name));
    if (!src.ok()) {
      if (src.status().code() == Errc::invalid) continue;  // absent (4xx): fine
      return src.status();
    }
    TP_RETURN_IF_ERROR(download_file(**src, model->dir() + "/" + name, progress));
  }
  return model;
}

}  // namespace tenpak::cli
