// libcurl is loaded on the first HTTP(S) use, not at process start
// (tenpak/curl_api.h): a process that never opens an HTTP origin maps none
// of it. This binary links tenpak_fetch as `tenpak` does.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include "tenpak/curl_api.h"

namespace tenpak {
namespace {

bool curl_mapped() {
  void* h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_NOLOAD);
  if (h) dlclose(h);
  return h != nullptr;
}

TEST(CurlApi, LoadedOnFirstUseOnly) {
  EXPECT_FALSE(curl_mapped()) << "libcurl is mapped before any HTTP use: something links it again";
  auto api = load_curl();
  ASSERT_TRUE(api.ok()) << api.status().message();
  EXPECT_TRUE(curl_mapped());
  // Every function was found; a handle works and is freed through the table.
  CURL* c = (*api)->easy_init();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ((*api)->easy_setopt(c, CURLOPT_URL, "http://127.0.0.1:1/"), CURLE_OK);
  (*api)->easy_cleanup(c);
  EXPECT_STREQ((*api)->easy_strerror(CURLE_OK), "No error");
  // Later calls return the same table.
  auto again = load_curl();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *api);
}

}  // namespace
}  // namespace tenpak
