// libcurl loaded on first use: see tenpak/curl_api.h.
#include "tenpak/curl_api.h"

#include <dlfcn.h>

#include <string>
#include <type_traits>

namespace tenpak {
namespace {

// libcurl's SONAME since 7.16 (2006): its ABI number, not its version.
constexpr const char* kCurlSoname = "libcurl.so.4";

CurlApi g_api{};

Status load_once() {
  void* h = dlopen(kCurlSoname, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    return {Errc::io, std::string("cannot load ") + kCurlSoname + " for HTTP(S) origins: " + (e ? e : "dlopen failed")};
  }
  std::string missing;
  auto get = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
    if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  get(g_api.global_init, "curl_global_init");
  get(g_api.easy_init, "curl_easy_init");
  get(g_api.easy_setopt, "curl_easy_setopt");
  get(g_api.easy_getinfo, "curl_easy_getinfo");
  get(g_api.easy_perform, "curl_easy_perform");
  get(g_api.easy_reset, "curl_easy_reset");
  get(g_api.easy_cleanup, "curl_easy_cleanup");
  get(g_api.easy_strerror, "curl_easy_strerror");
  get(g_api.share_init, "curl_share_init");
  get(g_api.share_setopt, "curl_share_setopt");
  get(g_api.slist_append, "curl_slist_append");
  get(g_api.slist_free_all, "curl_slist_free_all");
  if (!missing.empty()) return {Errc::io, std::string(kCurlSoname) + " lacks " + missing};
  // Before any other libcurl call and before threads use it (libcurl's rule).
  if (CURLcode rc = g_api.global_init(CURL_GLOBAL_DEFAULT); rc != CURLE_OK)
    return {Errc::io, std::string("curl_global_init failed: ") + g_api.easy_strerror(rc)};
  return Status::Ok();
}

}  // namespace

Result<const CurlApi*> load_curl() {
  static const Status st = load_once();  // once, thread-safe (magic static)
  if (!st.ok()) return st;
  return &g_api;
}

const CurlApi& curl_api() { return g_api; }

}  // namespace tenpak
