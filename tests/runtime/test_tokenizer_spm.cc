// sentencepiece tokenizer.model through libsentencepiece: a BPE model
// trained here from TinyShakespeare with Debian's spm_train (Llama's
// settings: byte fallback, identity normalisation, whitespace kept), then
// our Tokenizer's ids compared with spm_encode's (a separate process, the
// library's own command-line encoder) on text the model never saw
// (WikiText-2 valid), and with our own llama2.c BPE run on the same
// vocabulary exported the way llama2.c's tokenizer.py exports it.
// Skips without libsentencepiece in the build, without spm_train/spm_encode
// (Debian package `sentencepiece`) or without ../shared/data.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "shared_data.h"
#include "temp_dir.h"
#include "../test_util.h"
#include "tenpak/tokenizer.h"

namespace fs = std::filesystem;
using namespace tenpak;

namespace {

using tptest::read_file;  // tests/test_util.h, as the codec tests use them
using tptest::write_file;

using fakes::shared_data;

bool on_path(const std::string& exe) {
  return std::system(("command -v " + exe + " >/dev/null 2>&1").c_str()) == 0;
}

// Removed with the object (tests/support/temp_dir.h).
struct TmpDir : fakes::TempDir {
  TmpDir() : fakes::TempDir("spm") {}
};

// A llama2.c tokenizer.bin of a sentencepiece vocabulary, as llama2.c's
// tokenizer.py writes it: pieces with U+2581 replaced by a space, <s> and
// </s> as "\n<s>\n" and "\n</s>\n", max_token_length first.
std::string llama2c_export(const rt::Tokenizer& t) {
  std::vector<std::string> pieces;
  int32_t maxlen = 0;
  for (int64_t i = 0; i < t.vocab_size(); ++i) {
    std::string p = t.piece(i);
    if (i == t.bos_id()) p = "\n<s>\n";
    else if (i == t.eos_id()) p = "\n</s>\n";
    std::string q;
    for (size_t k = 0; k < p.size();) {
      if (p.compare(k, 3, "\xE2\x96\x81") == 0) q += ' ', k += 3;
      else q += p[k++];
    }
    maxlen = std::max<int32_t>(maxlen, static_cast<int32_t>(q.size()));
    pieces.push_back(q);
  }
  std::string out(reinterpret_cast<const char*>(&maxlen), 4);
  for (int64_t i = 0; i < t.vocab_size(); ++i) {
    float s = t.score(i);
    int32_t n = static_cast<int32_t>(pieces[i].size());
    out.append(reinterpret_cast<const char*>(&s), 4);
    out.append(reinterpret_cast<const char*>(&n), 4);
    out += pieces[i];
  }
  return out;
}

}  // namespace

TEST(RuntimeTokenizerSpm, TrainedModelMatchesSpmEncode) {
  if (!rt::tokenizer_has_sentencepiece()) GTEST_SKIP() << "built without libsentencepiece (libsentencepiece-dev)";
  if (!on_path("spm_train") || !on_path("spm_encode"))
    GTEST_SKIP() << "spm_train / spm_encode not installed (Debian package sentencepiece)";
  const std::string shakespeare = shared_data() + "/text/tinyshakespeare.txt";
  const std::string wiki = shared_data() + "/text/wikitext-2/valid.txt";
  if (!fs::exists(shakespeare) || !fs::exists(wiki)) GTEST_SKIP() << shakespeare << " or " << wiki << " absent";
  TmpDir tmp;
  write_file(tmp / "train.txt", read_file(shakespeare).substr(0, 300000));
  const std::string train = "spm_train --input=" + (tmp / "train.txt") + " --model_prefix=" + (tmp / "tokenizer") +
                            " --vocab_size=600 --model_type=bpe --byte_fallback=true --character_coverage=1.0"
                            " --normalization_rule_name=identity --remove_extra_whitespaces=false"
                            " --num_threads=1 --minloglevel=2 > " + (tmp / "train.log") + " 2>&1";
  ASSERT_EQ(std::system(train.c_str()), 0) << read_file(tmp / "train.log");
  ASSERT_TRUE(fs::exists(tmp / "tokenizer.model"));

  // Held-out text: WikiText-2 lines plus characters the training text lacks.
  std::string text = read_file(wiki).substr(0, 40000);
  text = text.substr(0, text.rfind('\n') + 1);
  text += "na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x99\x82 \xE6\x97\xA5\xE6\x9C\xAC\n  two  spaces \n";
  write_file(tmp / "held.txt", text);
  const std::string enc = "spm_encode --model=" + (tmp / "tokenizer.model") + " --output_format=id < " +
                          (tmp / "held.txt") + " > " + (tmp / "ids.txt") + " 2>" + (tmp / "enc.log");
  ASSERT_EQ(std::system(enc.c_str()), 0) << read_file(tmp / "enc.log");

  // Loaded from the model directory, as the runtime finds it.
  auto tok = rt::Tokenizer::load(tmp.str());
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  EXPECT_TRUE(tok->is_sentencepiece());
  EXPECT_EQ(tok->vocab_size(), 600);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);

  // spm_encode encodes each input line by itself.
  std::istringstream lines(text), ids(read_file(tmp / "ids.txt"));
  std::string line, idline;
  int n = 0, bytes_fallback = 0;
  while (std::getline(lines, line)) {
    ASSERT_TRUE(std::getline(ids, idline)) << "spm_encode printed fewer lines";
    std::vector<int64_t> want;
    std::istringstream is(idline);
    for (int64_t v; is >> v;) want.push_back(v);
    auto got = tok->encode(line, /*bos=*/false);
    ASSERT_EQ(got, want) << "line " << n << ": " << line;
    for (auto v : got) bytes_fallback += (v >= 3 && v < 3 + 256);
    auto with_bos = tok->encode(line, true);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], 1);
    EXPECT_EQ(tok->decode(got), line) << "line " << n;
    ++n;
  }
  EXPECT_GT(n, 100);
  EXPECT_GT(bytes_fallback, 0) << "the held-out text should need byte fallback pieces";

  // Piece by piece decoding (what generate prints) gives the same text.
  auto first = tok->encode("  two  spaces", true);
  std::string pieced;
  for (size_t i = 1; i < first.size(); ++i) pieced += tok->piece_text(first[i - 1], first[i]);
  EXPECT_EQ(pieced, "  two  spaces");

  // The same vocabulary through llama2.c's format and our own BPE: the ids
  // agree with sentencepiece's on every held-out line.
  auto l2c = rt::Tokenizer::from_llama2c(llama2c_export(*tok), "export.bin");
  ASSERT_TRUE(l2c.ok()) << l2c.status().message();
  std::istringstream lines2(text);
  int same = 0, total = 0;
  while (std::getline(lines2, line)) {
    if (line.empty()) continue;
    ++total;
    same += l2c->encode(line, false) == tok->encode(line, false);
  }
  EXPECT_EQ(same, total);
}

TEST(RuntimeTokenizerSpm, CorruptModelAndHfJsonAreRefused) {
  TmpDir tmp;
  write_file(tmp / "tokenizer.model", std::string("\x0a\x05hello garbage", 15));
  auto r = rt::Tokenizer::load(tmp.str());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tokenizer.model"), std::string::npos) << r.status().message();
  EXPECT_EQ(r.status().code(), rt::tokenizer_has_sentencepiece() ? Errc::corrupt : Errc::unsupported);
  TmpDir hf;
  write_file(hf / "tokenizer.json", "{\"model\": {\"type\": \"BPE\"}}");
  r = rt::Tokenizer::load(hf.str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::unsupported);
  EXPECT_NE(r.status().message().find("tokenizer.json"), std::string::npos);
  EXPECT_NE(r.status().message().find("not supported"), std::string::npos);
}
