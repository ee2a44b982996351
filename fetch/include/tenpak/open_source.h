// Locations: where TenPak finds a delta or base file. Three kinds, so callers
// (the mount, the offline tools) never care which kind a location is:
//   - a local path;
//   - an http(s) URL;
//   - a hub id: "hf://org/name[@revision]/path/in/repo", or the same without
//     "hf://" (a bare id) when it cannot be a local path: nothing exists at
//     that path, nor at its first component ("org"), and it does not start
//     with "/", "~", "./" or "../". So with a local "models/" directory,
//     "models/llama/delta" is a local path (a missing one fails with "No such
//     file or directory", no network try); "hf://" always means the hub.
//     A hub id resolves like the Hugging Face hub:
//     {HF_ENDPOINT}/{org}/{name}/resolve/{revision}/{path} (HF_ENDPOINT
//     defaults to https://huggingface.co, revision to "main"), with HF_TOKEN, when set,
//     sent as a bearer token (never logged).
// A directory location (a delta directory, a base model directory) is the
// same with no file part; join_location() appends a file name to any kind.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tenpak/block_source.h"
#include "tenpak/http_source.h"
#include "tenpak/status.h"

namespace tenpak {

struct SourceOptions {
  // When set, a file of any other size is refused (Errc::mismatch): a delta
  // records its base files' sizes, so a changed origin is never mixed in.
  std::optional<uint64_t> expected_size;
  // Tuning of HTTP origins (timeouts, retries). bearer_token is filled from
  // HF_TOKEN for hub ids and URLs under HF_ENDPOINT when left empty.
  HttpOptions http;
  // How local files are read (open_local_file).
  LocalFileOptions local;
};

// Opens one file at `location` (any kind above).
Result<std::unique_ptr<BlockSource>> open_source(const std::string& location);
Result<std::unique_ptr<BlockSource>> open_source(const std::string& location, const SourceOptions& opt);

// Opens one file available at several mirrors (most preferred first). HTTP
// mirrors are tried in order on open and on failures; local paths are tried
// in order at open only. Mixed kinds are allowed.
Result<std::unique_ptr<BlockSource>> open_source_mirrors(const std::vector<std::string>& locations,
                                                         const SourceOptions& opt = {});

// The location of `name` (a safe relative path) inside the directory at
// `dir_location`: "dir/name" for paths, URLs and hub ids alike (a URL's
// query string, if any, stays at the end).
std::string join_location(const std::string& dir_location, const std::string& name);

// `text` with the user info of every URL in it ("scheme://user:password@")
// replaced by "***@": for every message, log line, label and name shown.
// Credentials stay only in what is sent to the origin.
std::string redact_urls(const std::string& text);

// True when `location` names something remote (an URL or a hub id).
bool is_remote_location(const std::string& location);

// The URL a location resolves to ("" for local paths), e.g. for messages.
std::string resolve_url(const std::string& location);

// The name of the one model file a remote location names (the URL or hub
// path of a .safetensors, .bin, .pt, .pth or .ckpt file: a base given as a
// file, like a local file path), else "" (a model directory, or a local path).
std::string remote_file_name(const std::string& location);

struct HubRef {
  std::string org, name, revision = "main", path;  // path: the file in the repo ("" for the repo itself)
};
// Parses "hf://org/name[@rev][/path]" always, and the bare form
// "org/name[@rev][/path]" when it cannot be a local path (rule above).
std::optional<HubRef> parse_hub_location(const std::string& location);
// {HF_ENDPOINT}/{org}/{name}/resolve/{revision}/{path}
std::string hub_url(const HubRef& ref);

}  // namespace tenpak
