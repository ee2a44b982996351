// decode_floor: the CPU cost of rebuilding a delta's frames in process, the
// floor for the mount daemon's CPU-seconds per GB served cold
// (bench/mount_bench.sh prints both side by side).
//
//   decode_floor DELTA_DIR BASE [--file NAME | --all] [--reps N] [--reader-only] [--json]
//
// For one output file (default: the largest; --all: every file, totals),
// every frame, on one thread, in frame order, N times over (--reps, default
// 1) with the delta and base opened once, as the mount daemon rebuilds what
// reads ask for; CPU time of this thread (CLOCK_THREAD_CPUTIME_ID), summed
// over the N passes:
//   decode:      decode_frame alone, payload and base range already in
//                memory (read with pread before each frame, not timed);
//   decode+hash: the same plus the frame's xxh3-128 check, as every reader
//                does before serving a byte (xxh128(), as DeltaReader calls it);
//   reader:      DeltaReader::read_frame (base read from the page cache,
//                decode, check): what the daemon runs per frame, without
//                FUSE, the frame cache and its threads.
//   reader+sha256: reader plus each file's sha256 over its rebuilt frames
//                in order, checked against the index at the file's end: what
//                `dataset apply`/`verify` add per byte (no write, no process
//                start, the base's sha256 not counted: its hash cache has it).
// "first" figures are the first pass alone (buffers faulted in, the
// decoders' tables built); the mount pays them once per daemon.
// Also the base bytes the frames read (a codec 10 frame's extents, another
// frame's base range): what the mount fetches from the base's origin (one
// pass; not counted with --reader-only, which times the reader alone).
// The base is attached without its sha256 check; its file should be in
// the page cache (the bench reads it once first) so that no time is I/O.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tenpak/delta.h"
#include "tenpak/frame_codec.h"
#include "tenpak/hash.h"
#include "tenpak/patch_codec.h"

using namespace tenpak;

namespace {

double thread_cpu() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

bool pread_all(int fd, uint8_t* p, size_t n, uint64_t off) {
  while (n) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return true;
}

int fail(const std::string& m) {
  std::fprintf(stderr, "decode_floor: %s\n", m.c_str());
  return 1;
}

// num / den, or none where den is not above zero: nothing rebuilt (empty
// files) or no CPU time on the clock, where the rate would be inf or NaN,
// which JSON cannot hold. JSON gets null, the text "-".
std::optional<double> rate(double num, double den) { return den > 0 ? std::optional<double>(num / den) : std::nullopt; }
nlohmann::ordered_json json_rate(std::optional<double> r) { return r ? nlohmann::ordered_json(*r) : nlohmann::ordered_json(nullptr); }
std::string text_rate(std::optional<double> r, int decimals) {
  if (!r) return "-";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, *r);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage = "usage: decode_floor DELTA_DIR BASE [--file NAME | --all] [--reps N] [--reader-only] [--json]";
  std::string dir, base, file;
  bool json = false, all = false, reader_only = false;
  long reps = 1;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--file" && i + 1 < argc) file = argv[++i];
    else if (s == "--reps" && i + 1 < argc) {
      char* e = nullptr;
      reps = std::strtol(argv[++i], &e, 10);
      if (!e || *e || reps < 1 || reps > 1000000) return fail(std::string("--reps: not a count from 1: ") + argv[i]);
    } else if (s == "--json") json = true;
    else if (s == "--all") all = true;
    else if (s == "--reader-only") reader_only = true;
    else if (s == "--help" || s == "-h") {
      std::printf("%s\n", usage);
      return 0;
    } else if (dir.empty()) dir = s;
    else if (base.empty()) base = s;
    else return fail("unexpected argument " + s + " (--help)");
  }
  if (dir.empty() || base.empty()) return fail(usage);
  auto r = open_delta_dir(dir);
  if (!r.ok()) return fail(r.status().message());
  DeltaReader& rd = **r;
  if (Status st = attach_local_base(rd, base, false); !st.ok()) return fail(st.message());
  const Manifest& m = rd.manifest();
  uint32_t fi = 0;
  bool found = false;
  for (uint32_t i = 0; i < m.out_files.size(); ++i) {
    if (file.empty() ? (!found || m.out_files[i].size > m.out_files[fi].size) : m.out_files[i].name == file) {
      fi = i;
      found = true;
    }
  }
  if (!found && !all) return fail("no output file " + file + " in " + dir);
  std::vector<uint32_t> files;
  if (all)
    for (uint32_t i = 0; i < m.out_files.size(); ++i) files.push_back(i);
  else
    files.push_back(fi);
  const std::string what = all ? "(all " + std::to_string(files.size()) + " files)" : m.out_files[fi].name;

  // Base files by manifest index, opened as the reader would find them.
  const bool base_is_dir = ::access((base + "/.").c_str(), F_OK) == 0;
  std::vector<int> bfd(m.base_files.size(), -1);
  for (uint32_t i = 0; i < m.base_files.size(); ++i) {
    const std::string p = base_is_dir ? base + "/" + m.base_files[i].name : base;
    bfd[i] = ::open(p.c_str(), O_RDONLY);
  }
  const int dfd = ::open((dir + "/" + kDataFile).c_str(), O_RDONLY);
  if (dfd < 0) return fail(dir + "/" + kDataFile + ": cannot open");

  std::vector<uint8_t> payload, braw, out(kMaxFrameOut);
  std::vector<uint8_t> rbuf(kMaxFrameOut + 4 * BlockSource::kReadInAlign + BlockSource::kReadInAlign);
  uint8_t* lent = rbuf.data() + (BlockSource::kReadInAlign -
                                 reinterpret_cast<uintptr_t>(rbuf.data()) % BlockSource::kReadInAlign) %
                                    BlockSource::kReadInAlign;
  double t_dec = 0, t_hash = 0, t_reader = 0, t_sha = 0, first_reader = 0, first_sha = 0;
  uint64_t bytes = 0, frames = 0, base_read = 0;  // base_read: base bytes the frames read (codec 10: their extents)
  for (long rep = 0; rep < reps; ++rep) {
    for (uint32_t file_i : files) {
      const OutFile& of = m.out_files[file_i];
      Sha256Hasher sha;
      for (uint32_t k = of.first_frame; k < of.first_frame + of.frame_count; ++k) {
        const Frame& f = m.frames[k];
        double t2 = thread_cpu();
        // The decoder alone, from a payload and base range read here (not
        // timed); skipped with --reader-only, so that the reader's figures
        // do not find this frame's base range and payload already in cache.
        if (!reader_only) {
          payload.resize(f.data_len);
          if (f.data_len && !pread_all(dfd, payload.data(), f.data_len, f.data_offset)) return fail("short read of tenpak.dat");
          const uint8_t* b = nullptr;
          if (f.codec == Codec::patch) {
            auto ext = patch_extents(f, payload.data());
            if (!ext.ok()) return fail(ext.status().message());
            braw.clear();
            for (const PatchExtent& e : *ext) {
              const size_t at = braw.size();
              braw.resize(at + e.len);
              if (rep == 0) base_read += e.len;
              if (!pread_all(bfd[f.base_file], braw.data() + at, e.len, e.offset)) return fail("short base read");
            }
            b = braw.data();
          } else if (f.base_file != kNoBase && codec_needs_base(f.codec)) {
            braw.resize(f.base_len);
            if (rep == 0) base_read += f.base_len;
            if (bfd[f.base_file] < 0 || !pread_all(bfd[f.base_file], braw.data(), f.base_len, f.base_offset))
              return fail("base file " + m.base_files[f.base_file].name + ": cannot read");
            b = braw.data();
          }
          {
            const double t0 = thread_cpu();
            Status st = decode_frame(f, payload.data(), b, out.data());
            double t1 = thread_cpu();
            const bool ok = st.ok() && xxh128(out.data(), f.out_len) == f.hash;
            t2 = thread_cpu();
            if (!ok) return fail("frame " + std::to_string(k) + " does not rebuild: " + st.message());
            t_dec += t1 - t0;
            t_hash += t2 - t0;
          }
        }
        auto rr = rd.read_frame_in(k, lent);
        double t3 = thread_cpu();
        if (!rr.ok()) return fail(rr.status().message());
        sha.update(*rr, f.out_len);
        double t4 = thread_cpu();
        t_reader += t3 - t2;
        t_sha += t4 - t3;
        bytes += f.out_len;
        ++frames;
      }
      double t5 = thread_cpu();
      if (of.frame_count == 0) sha.update("", 0);
      const bool same = sha.finish() == of.sha256;
      t_sha += thread_cpu() - t5;
      if (!same) return fail("file " + of.name + ": rebuilt bytes do not match its sha256");
    }
    if (rep == 0) {
      first_reader = t_reader;
      first_sha = t_sha;
    }
  }
  const double gb = static_cast<double>(bytes) / 1e9, first_gb = gb / static_cast<double>(reps);
  const double t_rsha = t_reader + t_sha, first_rsha = first_reader + first_sha;
  if (json) {
    // Names from the index are the user's: escaped, bytes that are not UTF-8 as U+FFFD.
    nlohmann::ordered_json j = {{"file", what},
                                {"reps", reps},
                                {"bytes", bytes},
                                {"frames", frames},
                                {"decode_cpu_s", t_dec},
                                {"decode_hash_cpu_s", t_hash},
                                {"reader_cpu_s", t_reader},
                                {"reader_sha256_cpu_s", t_rsha},
                                {"first_reader_cpu_s", first_reader},
                                {"first_reader_sha256_cpu_s", first_rsha},
                                {"decode_cpu_s_per_gb", json_rate(rate(t_dec, gb))},
                                {"decode_hash_cpu_s_per_gb", json_rate(rate(t_hash, gb))},
                                {"reader_cpu_s_per_gb", json_rate(rate(t_reader, gb))},
                                {"reader_sha256_cpu_s_per_gb", json_rate(rate(t_rsha, gb))},
                                {"base_bytes_read", base_read}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s: %ld pass(es), %llu frames, %.3f GB; CPU-s per GB: decode %s, decode+hash %s, reader %s, "
                "reader+sha256 %s (first pass: %s, %s); MB per CPU-s: reader %s, reader+sha256 %s; base bytes read %llu\n",
                what.c_str(), reps, (unsigned long long)frames, gb, text_rate(rate(t_dec, gb), 3).c_str(),
                text_rate(rate(t_hash, gb), 3).c_str(), text_rate(rate(t_reader, gb), 3).c_str(),
                text_rate(rate(t_rsha, gb), 3).c_str(), text_rate(rate(first_reader, first_gb), 3).c_str(),
                text_rate(rate(first_rsha, first_gb), 3).c_str(), text_rate(rate(gb * 1e3, t_reader), 0).c_str(),
                text_rate(rate(gb * 1e3, t_rsha), 0).c_str(), (unsigned long long)base_read);
  }
  return 0;
}
