// golden_files.h, the generators' one way to write a golden file: a write
// that fails ends the generator (exit 1, naming the file) and leaves nothing
// under the final name, also when the failure shows only at close.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "golden_files.h"

namespace fs = std::filesystem;

namespace {

// A file smaller than the stream's buffer reaches the disk only in close();
// RLIMIT_FSIZE (with SIGXFSZ ignored, so write(2) fails with EFBIG) stands
// for a disk that fills there.
TEST(GoldenFilesDeathTest, WriteFailingAtCloseExitsNamingTheFile) {
  // "fast" (fork): the child writes the very path checked here (a re-run
  // child would name its own).
  GTEST_FLAG_SET(death_test_style, "fast");
  const fs::path dir = fs::temp_directory_path() / ("tenpak-golden-write-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string path = (dir / "short.bin").string();
  auto write_past_the_limit = [&] {
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit lim{256, 256};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    golden::write(path, std::string(1000, 'x'));
    std::exit(0);
  };
  EXPECT_EXIT(write_past_the_limit(), ::testing::ExitedWithCode(1), "cannot write .*short.bin");
  EXPECT_FALSE(fs::exists(path)) << "a short " << path << " was left";
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  fs::remove_all(dir);
}

// A file that cannot be opened is named with the open's reason (the errno
// was cleared after the open, so it read 'write failed'), and a folder that
// cannot be made is the same exit 1 (create_directories threw: abort).
// Found in review9a.
TEST(GoldenFilesDeathTest, OpenFailuresExitNamingTheFileAndTheReason) {
  GTEST_FLAG_SET(death_test_style, "fast");
  const fs::path dir = fs::temp_directory_path() / ("tenpak-golden-open-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "f.bin.tmp");  // the temporary name taken by a directory
  const std::string path = (dir / "f.bin").string();
  EXPECT_EXIT(golden::write(path, "x"), ::testing::ExitedWithCode(1), "cannot write .*f.bin: Is a directory");
  EXPECT_TRUE(fs::is_directory(dir / "f.bin.tmp")) << "a directory that was not the writer's was removed";
  EXPECT_FALSE(fs::exists(path));
  { std::ofstream(dir / "plain") << "x"; }
  const std::string under_file = (dir / "plain" / "sub" / "g.bin").string();
  EXPECT_EXIT(golden::write(under_file, "x"), ::testing::ExitedWithCode(1), "cannot write .*g.bin: Not a directory");
  fs::remove_all(dir);
}

TEST(GoldenFiles, WriteReplacesTheFileWhole) {
  const fs::path dir = fs::temp_directory_path() / ("tenpak-golden-write-ok-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string path = (dir / "sub" / "f.bin").string();
  golden::write(path, std::string(5000, 'a'));
  golden::write(path, "bc");
  EXPECT_EQ(fs::file_size(path), 2u);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  fs::remove_all(dir);
}

}  // namespace
