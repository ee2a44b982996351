// sha256_of_local_file: the hash cache must never return a hash for other
// bytes than the file holds now, and must never be an error.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "temp_dir.h"
#include "tenpak/block_source.h"

using tenpak::fakes::TempDir;  // tests/support/temp_dir.h

using namespace tenpak;
namespace fs = std::filesystem;

namespace {

void write(const std::string& p, const std::string& data) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
}

Sha256 direct(const std::string& data) { return sha256(data.data(), data.size()); }

struct CacheEnv {
  explicit CacheEnv(const std::string& dir) { ::setenv("TENPAK_HASH_CACHE", dir.c_str(), 1); }
  ~CacheEnv() { ::unsetenv("TENPAK_HASH_CACHE"); }
};

}  // namespace

TEST(FileHash, SecondHashComesFromTheCacheAndMatches) {
  TempDir t;
  CacheEnv env(t.path + "/cache");
  const std::string f = t.path + "/model.safetensors", data(300000, 'x');
  write(f, data);
  bool cached = true;
  auto h1 = sha256_of_local_file(f, {}, &cached);
  ASSERT_TRUE(h1.ok());
  EXPECT_FALSE(cached);
  EXPECT_EQ(*h1, direct(data));
  uint64_t reported = 0;
  auto h2 = sha256_of_local_file(f, [&](uint64_t n) { reported += n; }, &cached);
  ASSERT_TRUE(h2.ok());
  EXPECT_TRUE(cached);
  EXPECT_EQ(*h2, *h1);
  EXPECT_EQ(reported, data.size());  // progress still sees the whole file
  // Through another path to the same file (a relative one): same entry.
  auto cwd = fs::current_path();
  fs::current_path(t.path);
  auto h3 = sha256_of_local_file("./model.safetensors", {}, &cached);
  fs::current_path(cwd);
  ASSERT_TRUE(h3.ok());
  EXPECT_TRUE(cached);
}

TEST(FileHash, ChangedOrReplacedFileIsHashedAgain) {
  TempDir t;
  CacheEnv env(t.path + "/cache");
  const std::string f = t.path + "/base.bin";
  std::string data(100000, 'a');
  write(f, data);
  ASSERT_TRUE(sha256_of_local_file(f).ok());
  bool cached = true;
  // Same size, one byte changed in place (mtime/ctime move on).
  data[5000] = 'b';
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(5000);
    io.put('b');
  }
  auto h = sha256_of_local_file(f, {}, &cached);
  ASSERT_TRUE(h.ok());
  EXPECT_FALSE(cached);
  EXPECT_EQ(*h, direct(data));
  // Replaced by another file (new inode) with the old timestamps restored.
  struct stat st;
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  const std::string other = t.path + "/other.bin";
  data[7] = 'c';
  write(other, data);
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, other.c_str(), ts, 0), 0);
  fs::rename(other, f);
  h = sha256_of_local_file(f, {}, &cached);
  ASSERT_TRUE(h.ok());
  EXPECT_FALSE(cached);
  EXPECT_EQ(*h, direct(data));
}

TEST(FileHash, BrokenOrMissingCacheIsNeverAnError) {
  TempDir t;
  const std::string f = t.path + "/w.bin", data(5000, 'z');
  write(f, data);
  {
    CacheEnv env(t.path + "/cache");
    ASSERT_TRUE(sha256_of_local_file(f).ok());
    // Garble every entry: a bad hash line, then a truncated entry.
    for (auto& e : fs::directory_iterator(t.path + "/cache")) {
      std::ifstream in(e.path());
      std::string key;
      std::getline(in, key);
      in.close();
      write(e.path().string(), key + "\n" + std::string(64, 'g') + "\n");
    }
    bool cached = true;
    auto h = sha256_of_local_file(f, {}, &cached);
    ASSERT_TRUE(h.ok());
    EXPECT_FALSE(cached);
    EXPECT_EQ(*h, direct(data));
    for (auto& e : fs::directory_iterator(t.path + "/cache")) write(e.path().string(), "tenpak");
    h = sha256_of_local_file(f, {}, &cached);
    ASSERT_TRUE(h.ok());
    EXPECT_FALSE(cached);
    EXPECT_EQ(*h, direct(data));
  }
  {
    // The cache directory cannot be created (its parent is a file).
    write(t.path + "/notadir", "");
    CacheEnv env(t.path + "/notadir/cache");
    auto h = sha256_of_local_file(f);
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(*h, direct(data));
  }
  {
    CacheEnv env("off");
    bool cached = true;
    ASSERT_TRUE(sha256_of_local_file(f, {}, &cached).ok());
    ASSERT_TRUE(sha256_of_local_file(f, {}, &cached).ok());
    EXPECT_FALSE(cached);
    EXPECT_FALSE(fs::exists("off"));
  }
  // A missing file is an error (that names it), cache or not.
  auto h = sha256_of_local_file(t.path + "/missing.bin");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("missing.bin"), std::string::npos);
}
