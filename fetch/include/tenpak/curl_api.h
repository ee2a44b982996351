// libcurl, loaded with dlopen when the first HTTP(S) request needs it rather
// than linked into `tenpak`.
//
// Why: linked, libcurl and the libraries it needs (TLS, SSH, LDAP, Kerberos,
// RTMP, IDN, PSL: about 30 shared objects) are mapped and relocated at the
// start of every `tenpak` process, about 5 ms of CPU before main(), which is
// a sixth of what a 16 MiB local data set rebuild may spend at 500 MB/s
// (docs/BENCHMARKS.md, "Dataset deltas"). Local-only commands never load it.
#pragma once
#include <curl/curl.h>

#include "tenpak/status.h"

namespace tenpak {

// libcurl's functions that TenPak calls, same signatures (the variadic
// setopt/getinfo are called directly, so libcurl reads each value with the
// type the caller passed, as when linked).
struct CurlApi {
  decltype(&::curl_global_init) global_init;
  decltype(&::curl_easy_init) easy_init;
  decltype(&::curl_easy_setopt) easy_setopt;
  decltype(&::curl_easy_getinfo) easy_getinfo;
  decltype(&::curl_easy_perform) easy_perform;
  decltype(&::curl_easy_reset) easy_reset;
  decltype(&::curl_easy_cleanup) easy_cleanup;
  decltype(&::curl_easy_strerror) easy_strerror;
  decltype(&::curl_share_init) share_init;
  decltype(&::curl_share_setopt) share_setopt;
  decltype(&::curl_slist_append) slist_append;
  decltype(&::curl_slist_free_all) slist_free_all;
};

// Loads libcurl (SONAME libcurl.so.4) and runs curl_global_init once per
// process; thread-safe. Every later call returns the first call's result.
// The error names the library and what dlopen/dlsym said.
Result<const CurlApi*> load_curl();

// The loaded functions; only after load_curl() succeeded.
const CurlApi& curl_api();

}  // namespace tenpak
