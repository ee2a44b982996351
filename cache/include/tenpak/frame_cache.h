// The persistent frame cache as a decorator of a FrameSource: a frame found
// in a BlockCache (keyed by frame_cache_key(hash)) and matching its hash is
// served from there; any other frame is read from the inner source and,
// when the policy says so, stored. The mount puts it around each model's
// frames; the frame service below it knows nothing of caches or codecs.
//
// - A miss, an entry that fails its hash (dropped, counted as rejected) or a
//   broken cache is never an error: the inner source answers. Only the inner
//   source's errors are returned.
// - Lookups happen under every policy (frames shared with other fine-tunes,
//   or stored by an earlier mount under another policy, are served).
#pragma once
#include <memory>
#include <optional>
#include <string_view>

#include "tenpak/cache.h"
#include "tenpak/frame_source.h"

namespace tenpak {

// Which rebuilt frames are stored in the persistent cache.
enum class FrameCachePolicy : uint8_t {
  // Only frames that rebuild slower than they read back from the cache:
  // not copy_base (the frame is base bytes), store (delta bytes) or
  // sub_lanes (decodes faster than an LMDB read, roughly). Their inputs,
  // the base and delta blocks, are what a remote mount caches instead.
  slow,
  all,   // every rebuilt frame (frames shared by several fine-tunes, slow disks)
  none,  // no frame: the cache holds only what the origins' decorators put there
};
// "slow", "all", "none".
const char* frame_cache_policy_name(FrameCachePolicy p);
std::optional<FrameCachePolicy> parse_frame_cache_policy(std::string_view s);
// Whether a frame rebuilt by the codec named `codec` (FrameDesc::codec) is
// stored under policy `p`. Codecs unknown to this list count as slow
// (stored under `slow`).
bool frame_cache_policy_stores(FrameCachePolicy p, std::string_view codec);

// `inner` decorated with the persistent cache `cache` under policy `p`.
// A null `cache` passes every read through and reports only the policy
// (FrameSourceStats::persistent false): a mount without a cache says so
// the same way as one with.
std::unique_ptr<FrameSource> cache_frames(std::unique_ptr<FrameSource> inner, std::shared_ptr<BlockCache> cache,
                                          FrameCachePolicy p);

}  // namespace tenpak
