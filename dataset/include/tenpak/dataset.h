// Dataset deltas: a derived data set (a file or a directory of files) stored
// as a delta of its base in the ordinary TenPak container, so that apply,
// verify, inspect and the mount serve it exactly as they serve models.
// Every frame uses codec 10 (patch: ranges of one base file plus literals,
// tenpak/patch_codec.h), copy_base, zstd or store.
//
// Text files with records (JSON Lines, CSV/TSV, line- or blank-line-separated
// text) are matched record by record: each derived record is found in the
// base (same bytes, else the most similar record by shared content anchors,
// else the record after the previous match) and written as a copy, an edit
// of that record (copies of its pieces and new bytes), or new bytes. Other
// files are cut into content-defined chunks (gear hash, 8-64 KiB) found in
// the base by hash; new bytes are compressed by zstd with the frame's base
// ranges (the matched records, the neighbouring base region, a sample of the
// base as a dictionary) as its prefix.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tenpak/delta.h"
#include "tenpak/status.h"

namespace tenpak {

// Record matching numbers a base file's records in 32 bits (before, a base
// of 2^32 records or more never finished indexing: its 32-bit record counter
// wrapped before reaching the count).
constexpr uint64_t kMaxBaseRecords = 0xffffffffu;

struct DatasetBuildOptions {
  // Op and literal streams. Streams where the level asked costs more build
  // time than it saves get less (docs/FORMAT.md, "How TenPak's builder
  // writes it"): op streams at most 17; literals level 3 packs 8:1 at most
  // 9; without B as the literals' prefix, literals over 1/64 of their frame
  // at most 9 and over half of it 3, op streams over 1/64 of it 3; a
  // Parquet page frame's streams (codec 10 snappy pages) at most 6.
  int zstd_level = 19;
  // New bytes of a frame word-coded (codec 10 method bit 4) where that is
  // smaller than zstd: text records near i.i.d. words. Decodes slower.
  bool word_literals = true;
  unsigned threads = 0;    // 0: hardware concurrency; the delta's bytes do not depend on it
  Progress progress;       // bytes of the derived set processed
  unsigned sample_every = 1;  // estimate: encode one frame in N and extrapolate
  std::vector<std::string> base_locations;  // recorded; default: the base's absolute path
  // A derived text file whose base file has more records than this (and
  // than kMaxBaseRecords) goes the content-defined chunk route, as a binary
  // file does, instead of record matching; tests lower it.
  uint64_t max_base_records = kMaxBaseRecords;
  // A line about a file not handled as its kind asks (DatasetFileReport's
  // note, with the derived file's name); default: none (the library prints
  // nothing; `tenpak dataset build` writes it to stderr as 'tenpak: LINE').
  std::function<void(const std::string&)> log;
  // Derived bytes handled at a time: a record file's records are matched,
  // cut into frames, encoded and written a window of this many bytes after
  // the other (records whole: the record reaching past it ends the window;
  // matching carries over, frames end at the window's end), and any file's
  // frames are encoded and written in batches of at most this many bytes
  // (at least a frame), so that the build's memory is bounded by the
  // window and the base's index, not by the derived file. A file of at
  // most this many bytes is one window: its delta is the one a single
  // pass gives. 0 counts as 1; tests lower it.
  uint64_t window_bytes = uint64_t(64) << 20;
};

// How one derived file was handled (BuildReport::files holds the sizes).
struct DatasetFileReport {
  std::string name, mode, base;  // mode: "records" (lines|blocks) or "chunks"
  uint64_t records = 0, exact = 0, edited = 0, fresh = 0;  // records: copied, edited, new
  std::string note;  // why the mode, where it is not the one the file's kind asks (else empty)
};

struct DatasetBuildReport {
  BuildReport build;
  std::vector<DatasetFileReport> files;
};

// Builds the delta of `derived` against `base` (each a file or a directory)
// into `out_dir` (staged next to it, renamed when complete; refuses an
// existing non-empty out_dir). File names must be safe relative paths.
Result<DatasetBuildReport> build_dataset_delta(const std::string& base, const std::string& derived,
                                               const std::string& out_dir, const DatasetBuildOptions& opt);

// The same analysis, writing nothing: encodes one frame in opt.sample_every.
Result<DatasetBuildReport> estimate_dataset_delta(const std::string& base, const std::string& derived,
                                                  const DatasetBuildOptions& opt);

// ---- building blocks, public for tests ------------------------------------

// Record boundaries of a text file: the end offset of every record (each
// record keeps its terminator; the last may have none). `blocks`: records
// end at a blank line ("\n\n", also "\r\n\r\n"), else at every "\n".
std::vector<uint64_t> split_records(const uint8_t* p, uint64_t n, bool blocks);

// The record ends of p[0, n) after `from` (0 or a record end: a window of
// the file's records), as split_records gives them, up to the first at or
// past from + window (window 0 as 1), or the file's last: into `ends`
// (cleared first). Records stay whole: a window ends with the record that
// reaches its size.
void split_records_window(const uint8_t* p, uint64_t n, bool blocks, uint64_t from, uint64_t window,
                          std::vector<uint64_t>& ends);

// Whether a file looks like text with records (no NUL in its first 64 KiB),
// and whether blank lines separate its records (CoNLL-like).
bool looks_like_records(const std::string& name, const uint8_t* p, uint64_t n);
bool looks_like_blocks(const uint8_t* p, uint64_t n);

// Whether p[0, n) has at most `max` records as split_records splits it,
// counted without storing their ends, up to max + 1 (each record holds at
// least a byte: a file of at most `max` bytes fits without a look).
bool records_fit(const uint8_t* p, uint64_t n, bool blocks, uint64_t max);

// Content-defined chunk ends (gear hash; chunks of 8-64 KiB, 16 KiB on average).
std::vector<uint64_t> cdc_chunks(const uint8_t* p, uint64_t n);

}  // namespace tenpak
