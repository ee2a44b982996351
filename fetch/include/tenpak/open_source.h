// Locations: where TenPak finds a delta or base file. Today a local path;
// http(s) URLs and hub ids (org/name[@revision]) plug in here, so callers
// (the mount, the offline tools) never care which kind a location is.
#pragma once
#include <memory>
#include <string>

#include "tenpak/block_source.h"
#include "tenpak/status.h"

namespace tenpak {

// Opens one file at `location` (a path or, once supported, a URL).
Result<std::unique_ptr<BlockSource>> open_source(const std::string& location);

// The location of `name` (a safe relative path) inside the directory at
// `dir_location`: "dir/name" for paths and URLs alike.
std::string join_location(const std::string& dir_location, const std::string& name);

// True when `location` names something remote (not a local path).
bool is_remote_location(const std::string& location);

}  // namespace tenpak
