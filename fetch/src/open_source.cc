#include "tenpak/open_source.h"

#include <sys/stat.h>

#include <cctype>
#include <cstdlib>
#include <cstring>

namespace tenpak {
namespace {

bool is_url(const std::string& s) { return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0; }

bool local_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

bool hub_component_ok(const std::string& c) {
  if (c.empty() || c == "." || c == ".." || c.size() > 96) return false;
  for (char ch : c)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) return false;
  return true;
}

std::string env_or(const char* k, const std::string& dflt) {
  const char* v = std::getenv(k);
  return v && *v ? std::string(v) : dflt;
}

std::string hf_endpoint() {
  std::string e = env_or("HF_ENDPOINT", "https://huggingface.co");
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

// Percent-encodes what cannot appear raw in a URL path segment list.
std::string encode_path(const std::string& s, bool keep_slash) {
  static const char* hexd = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hexd[c >> 4];
      out += hexd[c & 15];
    }
  }
  return out;
}

// HF_TOKEN goes to the hub only: hub ids, and URLs under HF_ENDPOINT.
HttpOptions http_options_for(const std::string& url, const SourceOptions& opt) {
  HttpOptions h = opt.http;
  if (opt.expected_size) h.expected_size = opt.expected_size;
  if (h.bearer_token.empty() && url.rfind(hf_endpoint() + "/", 0) == 0) h.bearer_token = env_or("HF_TOKEN", "");
  return h;
}

Result<std::unique_ptr<BlockSource>> open_local_checked(const std::string& path, const SourceOptions& opt) {
  auto r = open_local_file(path, opt.local);
  if (!r.ok()) return r;
  if (opt.expected_size && (*r)->size() != *opt.expected_size)
    return Status{Errc::mismatch, path + ": the file is " + std::to_string((*r)->size()) + " bytes, expected " +
                                      std::to_string(*opt.expected_size)};
  return r;
}

}  // namespace

namespace {

// The hub-id syntax alone, "org/name[@rev][/path]" (no "hf://"), with no look
// at the local file system.
std::optional<HubRef> parse_hub_syntax(const std::string& s) {
  size_t a = s.find('/');
  if (a == std::string::npos) return std::nullopt;
  size_t b = s.find('/', a + 1);
  HubRef r;
  r.org = s.substr(0, a);
  std::string name = s.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  r.path = b == std::string::npos ? "" : s.substr(b + 1);
  size_t at = name.find('@');
  if (at != std::string::npos) {
    r.revision = name.substr(at + 1);
    name = name.substr(0, at);
    if (r.revision.empty()) return std::nullopt;
  }
  r.name = name;
  if (!hub_component_ok(r.org) || !hub_component_ok(r.name)) return std::nullopt;
  if (r.revision.find("..") != std::string::npos) return std::nullopt;
  // Bare ids must look like a hub file path, not like a typo of a local one.
  if (!r.path.empty() && (r.path.find("//") != std::string::npos || r.path.find("..") != std::string::npos))
    return std::nullopt;
  return r;
}

// True when a location without a scheme is a local path for sure, existing
// or not: absolute, "~", "./" or "../" first, or its first component exists
// here (then "models/llama/delta" with "models/" present is a local path
// with a missing part, never a hub id "models/llama").
bool local_looking(const std::string& s) {
  if (s.empty() || s[0] == '/' || s[0] == '~' || s.rfind("./", 0) == 0 || s.rfind("../", 0) == 0) return true;
  size_t a = s.find('/');
  return local_exists(a == std::string::npos ? s : s.substr(0, a));
}

}  // namespace

std::optional<HubRef> parse_hub_location(const std::string& location) {
  if (location.rfind("hf://", 0) == 0) return parse_hub_syntax(location.substr(5));
  if (is_url(location) || local_looking(location) || local_exists(location)) return std::nullopt;
  return parse_hub_syntax(location);
}

std::string hub_url(const HubRef& ref) {
  std::string u = hf_endpoint() + "/" + ref.org + "/" + ref.name + "/resolve/" + encode_path(ref.revision, false);
  if (!ref.path.empty()) u += "/" + encode_path(ref.path, true);
  return u;
}

std::string redact_urls(const std::string& text) {
  std::string out;
  size_t from = 0;
  for (size_t p = text.find("://"); p != std::string::npos; p = text.find("://", p + 3)) {
    size_t host = p + 3, end = host;
    while (end < text.size() && text[end] != '/' && text[end] != '?' && text[end] != '#' && !std::isspace(static_cast<unsigned char>(text[end])) &&
           text[end] != '"' && text[end] != '\'')
      ++end;
    size_t at = text.rfind('@', end == host ? host : end - 1);
    if (at == std::string::npos || at < host || at >= end) continue;
    out.append(text, from, host - from);
    out += "***";
    from = at;  // keeps the '@' and what follows
  }
  out.append(text, from, std::string::npos);
  return out;
}

bool is_remote_location(const std::string& location) {
  return is_url(location) || parse_hub_location(location).has_value();
}

std::string resolve_url(const std::string& location) {
  if (is_url(location)) return location;
  if (auto h = parse_hub_location(location)) return hub_url(*h);
  return "";
}

Result<std::unique_ptr<BlockSource>> open_source_mirrors(const std::vector<std::string>& locations, const SourceOptions& opt) {
  if (locations.empty()) return Status{Errc::invalid, "no location given"};
  std::vector<std::string> urls;
  std::string bare_hub;  // a location read as a hub id only because no such local path exists
  Status last;
  for (auto& loc : locations) {
    std::string url = resolve_url(loc);
    if (!url.empty()) {
      if (!is_url(loc) && loc.rfind("hf://", 0) != 0 && bare_hub.empty()) bare_hub = loc;
      urls.push_back(url);
      continue;
    }
    if (!urls.empty()) continue;  // a local path after URLs: the URLs win
    auto r = open_local_checked(loc, opt);
    if (r.ok()) return r;
    last = r.status();
    // Hub-shaped but local-looking (see local_looking): say how to mean the hub.
    if (!local_exists(loc) && loc[0] != '/' && parse_hub_syntax(loc))
      last = Status{last.code(), last.message() + " (a local path: for a Hugging Face hub id write hf://" + loc + ")"};
  }
  if (urls.empty()) return last;
  auto r = open_http_source(urls, http_options_for(urls.front(), opt));
  if (!r.ok()) {
    std::string msg = r.status().message();
    if (!bare_hub.empty()) msg = bare_hub + ": no such local file; as a hub id: " + msg;
    if (!last.ok()) msg = last.message() + "; " + msg;
    return Status{r.status().code(), msg};
  }
  return std::unique_ptr<BlockSource>(std::move(r.value()));
}

Result<std::unique_ptr<BlockSource>> open_source(const std::string& location, const SourceOptions& opt) {
  return open_source_mirrors({location}, opt);
}

Result<std::unique_ptr<BlockSource>> open_source(const std::string& location) { return open_source(location, SourceOptions{}); }

std::string join_location(const std::string& dir_location, const std::string& name) {
  if (dir_location.empty()) return name;
  std::string dir = dir_location, query;
  if (is_url(dir)) {
    size_t q = dir.find_first_of("?#");
    if (q != std::string::npos) {
      query = dir.substr(q);
      dir = dir.substr(0, q);
    }
  }
  if (dir.back() != '/') dir += "/";
  return dir + name + query;
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

}  // namespace tenpak
