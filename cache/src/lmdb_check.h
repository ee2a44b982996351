// A structural check of an LMDB data file, read with pread only (never
// through a map: a truncated or damaged file must give an answer, not
// SIGBUS or an LMDB assertion). Internal to tenpak_cache.
//
// What it checks, for the snapshot of one meta page: both meta pages (magic,
// version, page size: what LMDB itself refuses), that the file holds every
// page up to the meta's last page (a truncated file), and every branch and
// leaf page of the free-page database, the main database and each named
// database reachable from it: page number, flags, node offsets and sizes,
// child and overflow page numbers in range, no page reached twice, depth and
// page and entry counts equal to what the database record says. Overflow
// pages (the values) are checked by their number and length only; their
// headers are checked when a value is read or deleted
// (check_overflow_header). Layout: LMDB 0.9 (lmdb/mdb.c: MDB_page,
// MDB_meta, MDB_db, MDB_node), 64-bit.
#pragma once
#include <cstdint>
#include <string>

namespace tenpak::lmdbcheck {

struct FileCheck {
  std::string problem;      // empty: no damage found
  bool snapshot_found = true;  // false: no meta page has the txnid asked for (a writer moved on)
  uint32_t page_size = 0;
  uint64_t pages_read = 0;  // branch and leaf pages checked
};

// Checks the open data file `fd`. `txnid`: the snapshot to check (a read
// transaction held by the caller keeps its pages from being reused); 0: the
// newer of the two meta pages, as LMDB picks it.
FileCheck check_file(int fd, uint64_t txnid);

// Whether the `value_size` bytes that start at file offset `value_off` sit
// in a valid overflow run (page header right before them: its own page
// number, the overflow flag, the page count the size needs). Values small
// enough to live in a leaf page are not at a page's data start and pass.
// False also on a read error.
bool check_overflow_header(int fd, uint32_t page_size, uint64_t value_off, uint64_t value_size);

}  // namespace tenpak::lmdbcheck
