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
#include "tenpak/format.h"
#include "tenpak/open_source.h"
#include "tenpak/out_file.h"

namespace tenpak::cli {

namespace fs = std::filesystem;

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
  auto parent = download_parent(near);
  if (!parent.ok()) return parent.status();
  std::string tmpl = (fs::path(*parent) / ".tenpak-download-XXXXXX").string();
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
  } else if (src.status().code() == Errc::not_found) {
    required.push_back("model.safetensors");  // no index (404): a single file
  } else {
    return src.status();
  }
  for (auto& name : required) {
    auto src = open_source(join_location(loc, name));
    if (!src.ok()) return Status{src.status().code(), "base " + loc + ": " + src.status().message()};
    std::error_code ec;
    fs::create_directories(fs::path(model->dir() + "/" + name).parent_path(), ec);
    if (ec) return Status{Errc::io, model->dir() + "/" + name + ": cannot create its directory: " + ec.message()};
    TP_RETURN_IF_ERROR(download_file(**src, model->dir() + "/" + name, progress));
  }
  for (auto& name : optional) {
    auto src = open_source(join_location(loc, name));
    if (!src.ok()) {
      if (src.status().code() == Errc::not_found) continue;  // absent (4xx): fine
      return src.status();
    }
    TP_RETURN_IF_ERROR(download_file(**src, model->dir() + "/" + name, progress));
  }
  return model;
}

}  // namespace tenpak::cli
