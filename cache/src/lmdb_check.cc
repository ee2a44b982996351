// The pread-only structural check of an LMDB data file (see lmdb_check.h).
#include "lmdb_check.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>
#include <vector>

namespace tenpak::lmdbcheck {
namespace {

constexpr size_t kPageHdr = 16;  // PAGEHDRSZ
constexpr uint16_t kBranch = 0x01, kLeaf = 0x02, kOverflow = 0x04, kMeta = 0x08;
constexpr uint16_t kBigData = 0x01, kSubData = 0x02, kDupData = 0x04;  // node flags
constexpr uint32_t kMagic = 0xBEEFC0DE, kDataVersion = 1;
constexpr uint64_t kInvalidPage = ~0ull;
constexpr size_t kNodeHdr = 8, kDbSize = 48, kMetaSize = 136, kMaxKey = 511;
constexpr unsigned kMaxDepth = 32;

template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

bool pread_all(int fd, void* buf, size_t n, uint64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, static_cast<uint8_t*>(buf) + got, n - got, static_cast<off_t>(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

struct Db {  // MDB_db
  uint16_t flags = 0, depth = 0;
  uint64_t branch = 0, leaf = 0, overflow = 0, entries = 0, root = kInvalidPage;
};
Db read_db(const uint8_t* p) {
  return {get<uint16_t>(p + 4), get<uint16_t>(p + 6), get<uint64_t>(p + 8), get<uint64_t>(p + 16),
          get<uint64_t>(p + 24), get<uint64_t>(p + 32), get<uint64_t>(p + 40)};
}

struct Meta {
  uint32_t psize = 0;
  Db free_db, main_db;
  uint64_t last_pg = 0, txnid = 0;
};

class Walker {
 public:
  Walker(int fd, uint32_t psize, uint64_t npages) : fd_(fd), psize_(psize), npages_(npages), page_(psize) {}

  // Checks one database; `what` names it in the problem.
  bool walk_db(const Db& db, const std::string& what, bool is_free, bool is_main) {
    if (db.root == kInvalidPage) {
      if (db.entries || db.depth || db.branch || db.leaf || db.overflow) return fail(what + ": empty database with counts");
      return true;
    }
    if (db.depth == 0 || db.depth > kMaxDepth) return fail(what + ": bad depth " + std::to_string(db.depth));
    Count c;
    if (!walk(db.root, 1, db.depth, what, is_free, is_main, c)) return false;
    if (c.branch != db.branch || c.leaf != db.leaf || c.overflow != db.overflow || c.entries != db.entries)
      return fail(what + ": page or entry counts differ from its record (" + std::to_string(c.entries) + " entries found, " +
                  std::to_string(db.entries) + " recorded)");
    return true;
  }

  std::string problem;
  uint64_t pages_read = 0;
  std::vector<std::pair<std::string, Db>> subdbs;  // named databases found in the main database

 private:
  struct Count {
    uint64_t branch = 0, leaf = 0, overflow = 0, entries = 0;
  };
  bool fail(std::string m) {
    if (problem.empty()) problem = std::move(m);
    return false;
  }
  bool read_page(uint64_t pgno, std::vector<uint8_t>& buf) {
    if (pgno < 2 || pgno >= npages_) return fail("page number " + std::to_string(pgno) + " out of range");
    if (!pread_all(fd_, buf.data(), psize_, pgno * psize_)) return fail("page " + std::to_string(pgno) + " unreadable");
    return true;
  }

  bool walk(uint64_t pgno, unsigned depth, unsigned max_depth, const std::string& what, bool is_free, bool is_main, Count& c) {
    const std::string at = what + " page " + std::to_string(pgno);
    if (!seen_.insert(pgno).second) return fail(at + " reached twice");
    std::vector<uint8_t> buf(psize_);
    if (!read_page(pgno, buf)) return false;
    ++pages_read;
    const uint8_t* p = buf.data();
    if (get<uint64_t>(p) != pgno) return fail(at + ": header names page " + std::to_string(get<uint64_t>(p)));
    const uint16_t flags = get<uint16_t>(p + 10), lower = get<uint16_t>(p + 12), upper = get<uint16_t>(p + 14);
    const bool leaf = flags == kLeaf;
    if (flags != kBranch && !leaf) return fail(at + ": bad flags " + std::to_string(flags));
    if (leaf != (depth == max_depth)) return fail(at + ": leaf at the wrong depth");
    if (lower < kPageHdr || (lower & 1) || upper > psize_ || lower > upper) return fail(at + ": bad free-space bounds");
    const size_t n = (lower - kPageHdr) / 2;
    if (n == 0 && (!leaf || depth > 1)) return fail(at + ": empty page");
    leaf ? ++c.leaf : ++c.branch;
    for (size_t i = 0; i < n; ++i) {
      const uint16_t off = get<uint16_t>(p + kPageHdr + 2 * i);
      if (off < upper || off > psize_ - kNodeHdr || (off & 1)) return fail(at + ": node " + std::to_string(i) + " out of bounds");
      const uint8_t* nd = p + off;
      const uint16_t lo = get<uint16_t>(nd), hi = get<uint16_t>(nd + 2), nflags = get<uint16_t>(nd + 4),
                     ksize = get<uint16_t>(nd + 6);
      if (ksize > kMaxKey || off + kNodeHdr + ksize > psize_) return fail(at + ": key of node " + std::to_string(i) + " out of bounds");
      if (!leaf) {
        const uint64_t child = lo | (uint64_t(hi) << 16) | (uint64_t(nflags) << 32);
        if (!walk(child, depth + 1, max_depth, what, is_free, is_main, c)) return false;
        continue;
      }
      ++c.entries;
      const uint64_t dsize = lo | (uint64_t(hi) << 16);
      const uint8_t* data = nd + kNodeHdr + ksize;
      if (nflags & ~(kBigData | kSubData)) return fail(at + ": unexpected node flags " + std::to_string(nflags));
      if (nflags & kBigData) {
        if (off + kNodeHdr + ksize + 8 > psize_) return fail(at + ": node " + std::to_string(i) + " out of bounds");
        const uint64_t ov = get<uint64_t>(data), pages = (kPageHdr - 1 + dsize) / psize_ + 1;
        if (ov < 2 || ov >= npages_ || pages > npages_ - ov) return fail(at + ": value pages out of range");
        c.overflow += pages;
        if (is_free && !check_free_list_big(ov, dsize, at)) return false;
        continue;
      }
      if (off + kNodeHdr + ksize + dsize > psize_) return fail(at + ": value of node " + std::to_string(i) + " out of bounds");
      if (nflags & kSubData) {
        if (!is_main || dsize != kDbSize) return fail(at + ": bad database record");
        subdbs.emplace_back(std::string(reinterpret_cast<const char*>(nd + kNodeHdr), ksize), read_db(data));
      } else if (is_free && !check_free_list(data, dsize, at)) {
        return false;
      }
    }
    return true;
  }

  // A free-page list (IDL): a count, then that many page numbers in range.
  bool check_free_list(const uint8_t* d, uint64_t dsize, const std::string& at) {
    if (dsize < 8 || dsize % 8) return fail(at + ": bad free-page list");
    const uint64_t n = get<uint64_t>(d);
    if ((n + 1) * 8 != dsize) return fail(at + ": bad free-page list length");
    for (uint64_t i = 1; i <= n; ++i) {
      uint64_t pg = get<uint64_t>(d + 8 * i);
      if (pg < 2 || pg >= npages_) return fail(at + ": free page " + std::to_string(pg) + " out of range");
    }
    return true;
  }
  bool check_free_list_big(uint64_t ov, uint64_t dsize, const std::string& at) {
    std::vector<uint8_t> run(kPageHdr + dsize);
    if (!pread_all(fd_, run.data(), run.size(), ov * psize_)) return fail(at + ": free-page list unreadable");
    if (get<uint64_t>(run.data()) != ov || get<uint16_t>(run.data() + 10) != kOverflow) return fail(at + ": bad free-page list page");
    return check_free_list(run.data() + kPageHdr, dsize, at);
  }

  int fd_;
  uint32_t psize_;
  uint64_t npages_;
  std::vector<uint8_t> page_;
  std::unordered_set<uint64_t> seen_;
};

bool read_meta(int fd, uint64_t off, Meta& m, std::string& why) {
  uint8_t b[kPageHdr + kMetaSize];
  if (!pread_all(fd, b, sizeof b, off)) return why = "meta page unreadable", false;
  if (!(get<uint16_t>(b + 10) & kMeta)) return why = "meta page without the meta flag", false;
  const uint8_t* mm = b + kPageHdr;
  if (get<uint32_t>(mm) != kMagic) return why = "bad magic in a meta page", false;
  if (get<uint32_t>(mm + 4) != kDataVersion) return why = "unknown LMDB data version", false;
  m.free_db = read_db(mm + 24);
  m.main_db = read_db(mm + 72);
  m.psize = get<uint32_t>(mm + 24);  // mm_psize is the free database's md_pad
  m.last_pg = get<uint64_t>(mm + 120);
  m.txnid = get<uint64_t>(mm + 128);
  if (m.psize < 512 || m.psize > 65536 || (m.psize & (m.psize - 1))) return why = "bad page size in a meta page", false;
  return true;
}

}  // namespace

FileCheck check_file(int fd, uint64_t txnid) {
  FileCheck r;
  struct stat st;
  if (::fstat(fd, &st) != 0) return r.problem = std::string("cannot stat: ") + std::strerror(errno), r;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) return r;  // new: LMDB writes its meta pages
  Meta m[2];
  std::string why;
  if (!read_meta(fd, 0, m[0], why)) return r.problem = why, r;
  if (size < 2ull * m[0].psize) return r.problem = "truncated: smaller than its two meta pages", r;
  if (!read_meta(fd, m[0].psize, m[1], why)) return r.problem = why, r;
  if (m[1].psize != m[0].psize) return r.problem = "meta pages disagree on the page size", r;
  const Meta* use = nullptr;
  if (txnid == 0) use = m[1].txnid > m[0].txnid ? &m[1] : &m[0];
  else if (m[0].txnid == txnid) use = &m[0];
  else if (m[1].txnid == txnid) use = &m[1];
  if (!use) return r.snapshot_found = false, r;
  r.page_size = use->psize;
  const uint64_t npages = use->last_pg + 1;
  if (npages < 2 || npages > (1ull << 48) / use->psize) return r.problem = "bad last page in the meta page", r;
  if (size < npages * use->psize)
    return r.problem = "truncated: " + std::to_string(size) + " bytes, its last transaction needs " +
                       std::to_string(npages * use->psize),
           r;
  Walker w(fd, use->psize, npages);
  bool ok = w.walk_db(use->free_db, "free-page database", true, false) && w.walk_db(use->main_db, "main database", false, true);
  for (size_t i = 0; ok && i < w.subdbs.size(); ++i) {
    auto [name, db] = w.subdbs[i];
    ok = w.walk_db(db, "database '" + name + "'", false, false);
  }
  r.pages_read = w.pages_read;
  if (!ok) r.problem = w.problem;
  return r;
}

bool check_overflow_header(int fd, uint32_t psize, uint64_t value_off, uint64_t value_size) {
  if (psize == 0) return true;
  if (value_off % psize != kPageHdr) return value_size <= psize / 2;  // in a leaf page: only small values fit there
  uint8_t h[kPageHdr];
  if (!pread_all(fd, h, sizeof h, value_off - kPageHdr)) return false;
  const uint64_t pgno = value_off / psize, pages = (kPageHdr - 1 + value_size) / psize + 1;
  return get<uint64_t>(h) == pgno && get<uint16_t>(h + 10) == kOverflow && get<uint32_t>(h + 12) == pages;
}

}  // namespace tenpak::lmdbcheck
