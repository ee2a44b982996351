// What a lossy delta loses (docs/FORMAT.md, "Lossy deltas"): its lossy
// record, stored in the compact index (Manifest::lossy_record, covered by
// the index's checksum, so the files it describes are the index's own), or,
// in deltas written before the record existed, the side file
// `tenpak.lossy.json` beside the index. Read by `delta inspect`, `delta
// verify`, `delta apply` and the mount (stats.json, `tenpak stats`).
//
// Contract: a record is accepted only when it is format "tenpak.lossy"
// version 1 with a method and a quality object, and "qat_label_weight", when
// present, a number in [0, 1] (readers show it: a malformed one would show a
// delta trained on the text's labels as a reproduction). A side file must also list
// exactly the index's output files, each with the sha256 the index records
// for it; a record in the index may omit that list (it is implicit) and is
// checked the same way when it has one. Anything else is Errc::corrupt (it
// would report the quality of another delta). An index with a record is
// never paired with a side file (none is fetched). A delta with neither is
// not an error: its quality is unknown (std::nullopt), whether it is lossy
// (has_approx_frames) or not.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "tenpak/block_source.h"
#include "tenpak/format.h"
#include "tenpak/status.h"

namespace tenpak {

inline constexpr const char* kLossyFile = "tenpak.lossy.json";
// A side file larger than this is refused before it is read (a bound for
// readers' memory; a real one is a few KiB per hundred tensors).
inline constexpr uint64_t kMaxLossyFileBytes = 16u << 20;

// The summary every reader shows, and the file itself for --json output.
struct LossyInfo {
  std::string method;      // the method and setting chosen ("bitdelta", "lowrank:8")
  std::string eval_text;   // the text measured on, as recorded
  double ppl_ratio = 0;    // perplexity of the rebuilt model / the true fine-tune's
  double ppl_delta_pct = 0;
  double kl_mean = 0;      // nats per scored token, KL(P_finetune || P_rebuilt)
  double top1_agreement = 0;
  uint64_t scored_tokens = 0;
  uint64_t delta_bytes = 0, finetune_bytes = 0;  // 0 when not recorded
  // The weight of the calibration text's next tokens in the codes' training
  // (--qat-label-weight; the record's optional "qat_label_weight", absent
  // in records written before it and in deltas trained on the KL alone: 0).
  // Above 0 the delta was pulled towards that text, not only towards the
  // fine-tune: its quality is not that of a reproduction of the fine-tune.
  double qat_label_weight = 0;
  bool in_index = false;   // read from the index's record (not a side file)
  std::string json;        // the record's text as read
};

// Checks `text` (a side file, or with `in_index` the index's own record)
// against the index `m`; `what` names it in errors.
Result<LossyInfo> parse_lossy_info(std::string_view text, const Manifest& m, const std::string& what,
                                   bool in_index = false);

// Reads and checks the side file from `src`.
Result<LossyInfo> read_lossy_info(BlockSource& src, const Manifest& m);

// The record of the delta at `delta_loc` (path, URL or hub id) whose index
// is `m`: m.lossy_record when it has one (nothing fetched); else the side
// file, opened with open_source and passed through `wrap` when given (the
// mount puts its block cache there, as for the index). nullopt when the
// origin has none (Errc::not_found); other open errors (an origin that does
// not answer) are returned as they are.
using WrapSource = std::function<std::unique_ptr<BlockSource>(std::unique_ptr<BlockSource>)>;
Result<std::optional<LossyInfo>> load_lossy_info(const std::string& delta_loc, const Manifest& m,
                                                 const WrapSource& wrap = nullptr);

// True when the index has codec-11 (approx) frames: the delta is lossy.
bool has_approx_frames(const Manifest& m);

// One line for people: "LOSSY delta (METHOD): measured against ...".
std::string lossy_summary_line(const LossyInfo& li);

}  // namespace tenpak
