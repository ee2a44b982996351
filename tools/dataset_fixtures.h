// Generated base/derived data set pairs that mimic real revisions, for the
// dataset tests and bench/dataset_bench.sh: `tenpak fixture ds-KIND OUT`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tenpak/status.h"

namespace tenpak::fixtures {

// ds-append ds-delete ds-edit ds-reorder ds-addfield ds-shards ds-csv ds-conll
const std::vector<std::string>& dataset_fixture_kinds();
bool is_dataset_fixture_kind(const std::string& kind);

// Writes OUT/base/ and OUT/derived/ (streamed: memory does not grow with
// size_mb, the approximate size of the base). Deterministic in `seed`.
Status generate_dataset_pair(const std::string& kind, uint64_t size_mb, uint64_t seed, const std::string& out);

}  // namespace tenpak::fixtures
