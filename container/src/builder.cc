// Delta building: match fine-tune tensors to base tensors, cut every output
// file into frames that never cross a tensor boundary, encode frames in
// parallel, write payloads in order, then the index.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>

#include "io_util.h"
#include "pipeline.h"
#include "tenpak/delta_builder.h"
#include "tenpak/lowrank_codec.h"
#include "tenpak/model.h"

namespace tenpak {
namespace {

struct BaseRef {
  uint32_t file;
  const TensorInfo* t;
};

// Finds the base tensor for a fine-tune tensor name: exactly, or when one side
// adds or drops leading name components ("model.", "base_model.model.", ...).
// Suffix matches need at least two components and must be unique.
class BaseIndex {
 public:
  void add(uint32_t file, const TensorInfo& t) {
    exact_.emplace(t.name, BaseRef{file, &t});
    for (auto& s : suffixes(t.name)) suffix_[s].push_back(BaseRef{file, &t});
  }
  const BaseRef* find(const std::string& name) const {
    if (auto it = exact_.find(name); it != exact_.end()) return &it->second;
    std::vector<std::string> cands{name};
    for (auto& s : suffixes(name)) cands.push_back(s);
    for (auto& c : cands) {  // fine-tune has an extra prefix
      if (auto it = exact_.find(c); it != exact_.end()) return &it->second;
    }
    for (auto& c : cands) {  // base has an extra prefix (or both differ)
      if (auto it = suffix_.find(c); it != suffix_.end() && it->second.size() == 1) return &it->second[0];
    }
    return nullptr;
  }

 private:
  static std::vector<std::string> suffixes(const std::string& n) {
    std::vector<std::string> out;
    size_t pos = 0;
    while ((pos = n.find('.', pos)) != std::string::npos) {
      std::string s = n.substr(pos + 1);
      if (std::count(s.begin(), s.end(), '.') < 1) break;
      out.push_back(s);
      ++pos;
    }
    return out;
  }
  std::unordered_map<std::string, BaseRef> exact_;
  std::unordered_map<std::string, std::vector<BaseRef>> suffix_;
};

struct Job {
  uint32_t file;
  uint64_t off;
  uint32_t len;
  DType dt = DType::U8, bdt = DType::U8;
  uint32_t base_file = kNoBase;
  uint64_t base_off = 0;
  uint32_t base_len = 0;
  int tensor = -1;  // index into report.tensors_detail
  int klass = 0;    // estimate class
  bool sampled = true;
  bool no_ctx = false;  // never sub_ctx (a file's small first frame)
  bool structure = false;  // zip/pickle bytes of a checkpoint served as it is
  FrameLayout layout;  // kernel layout hint for the sub_ctx predictor
};

void chunk_raw(std::vector<Job>& jobs, uint32_t file, uint64_t b, uint64_t e) {
  for (uint64_t p = b; p < e; p += kMaxFrameOut) {
    Job j;
    j.file = file;
    j.off = p;
    j.len = static_cast<uint32_t>(std::min<uint64_t>(kMaxFrameOut, e - p));
    jobs.push_back(j);
  }
}

// Plans the frames of one tensor. `base` may be null (no match).
void plan_tensor(std::vector<Job>& jobs, uint32_t file, const TensorInfo& t, const BaseRef* base, int tensor_idx,
                 std::string& match) {
  const size_t w = dtype_size(t.dtype);
  const uint64_t step = (kMaxFrameOut / w) * w;
  uint64_t overlap = 0;  // bytes of the fine-tune tensor that have a base counterpart
  DType bdt = t.dtype;
  match = "none";
  if (base) {
    const TensorInfo& b = *base->t;
    bool dtype_ok = b.dtype == t.dtype || can_convert_dtype(b.dtype, t.dtype);
    bool same_rank = b.shape.size() == t.shape.size();
    bool tail_same = same_rank && !t.shape.empty() && std::equal(t.shape.begin() + 1, t.shape.end(), b.shape.begin() + 1);
    // Dimensions of size 1 do not change the layout: a scalar saved as []
    // by torch and as [1] by another writer (num_batches_tracked) is the
    // same element.
    auto squeezed = [](const std::vector<uint64_t>& s) {
      std::vector<uint64_t> o;
      for (uint64_t d : s)
        if (d != 1) o.push_back(d);
      return o;
    };
    if (dtype_ok && (b.shape == t.shape || squeezed(b.shape) == squeezed(t.shape))) {
      overlap = t.nbytes();
      match = b.dtype == t.dtype ? "same" : "dtype";
    } else if (dtype_ok && tail_same) {
      // Rows added or removed along dim 0 (resized vocabulary, new head rows).
      uint64_t row = t.shape[0] ? t.nbytes() / t.shape[0] : 0;
      overlap = std::min(t.shape[0], b.shape[0]) * row;
      match = "resized";
    }
    bdt = b.dtype;
  }
  const size_t bw = dtype_size(bdt);
  int klass = (match == "none" ? 0 : 1) * 32 + static_cast<int>(t.dtype);
  // Conv-like weights [out, in, kh, kw, ...]: kernels are the last two dims.
  FrameLayout layout;
  if (t.shape.size() >= 3) {
    uint64_t kh = t.shape[t.shape.size() - 2], kw = t.shape[t.shape.size() - 1];
    if (kw >= 1 && kh >= 1 && kh * kw > 1 && kh * kw <= 255) {
      layout.kw = static_cast<uint32_t>(kw);
      layout.area = static_cast<uint32_t>(kh * kw);
    }
  }
  // Frames are 1 MiB, except a first frame that ends at the file's first
  // kHeadFrameEnd bytes: a loader's first read (the safetensors header)
  // reaches past the header into the first tensor (the kernel reads at least
  // a page, and reads ahead), so opening a model waits for the header frame
  // and this one, which is then quick to fetch and rebuild.
  constexpr uint64_t kHeadFrameEnd = 64 * 1024;
  auto emit = [&](uint64_t rel_b, uint64_t rel_e, bool with_base) {
    for (uint64_t p = rel_b, len; p < rel_e; p += len) {
      len = std::min<uint64_t>(step, rel_e - p);
      bool head_frame = false;
      if (t.begin + p < kHeadFrameEnd) {
        const uint64_t head = (kHeadFrameEnd - (t.begin + p)) / w * w;
        if (head > 0 && head < len) len = head, head_frame = true;
      }
      Job j;
      j.file = file;
      j.off = t.begin + p;
      j.len = static_cast<uint32_t>(len);
      j.dt = t.dtype;
      j.tensor = tensor_idx;
      j.klass = klass;
      j.layout = layout;
      j.layout.phase = static_cast<uint32_t>((p / w) % layout.area);
      j.no_ctx = head_frame;  // must rebuild fast: sub_ctx decodes ~50x slower
      if (with_base) {
        j.bdt = bdt;
        j.base_file = base->file;
        j.base_off = base->t->begin + p / w * bw;
        j.base_len = static_cast<uint32_t>(j.len / w * bw);
      } else {
        j.bdt = t.dtype;
      }
      jobs.push_back(j);
    }
  };
  emit(0, overlap, true);
  emit(overlap, t.nbytes(), false);
}

struct Encoded {
  EncodedFrame e;
  Xxh128 hash;
};

class Builder {
 public:
  Builder(const BuildOptions& opt) : opt_(opt) {}

  Result<BuildReport> run(const std::string& base_path, const std::string& ft_path, const std::string* out_dir) {
    auto t0 = std::chrono::steady_clock::now();
    LoadOptions bl;
    bl.convert_checkpoints = false;
    auto base = load_model(base_path, bl);
    if (!base.ok()) return base.status();
    LoadOptions fl;
    fl.convert_checkpoints = opt_.as_safetensors;
    fl.checkpoint_storages = !opt_.as_safetensors;
    auto ft = load_model(ft_path, fl);
    if (!ft.ok()) return ft.status();
    base_ = &base.value();
    ft_ = &ft.value();
    for (auto& l : base_->followed_links) report_.followed_links.push_back("base: " + l);
    for (auto& l : ft_->followed_links) report_.followed_links.push_back("fine-tune: " + l);
    m_.base_locations = opt_.base_locations;
    if (m_.base_locations.empty()) {
      std::error_code ec;
      std::filesystem::path bp = std::filesystem::absolute(base_path, ec);
      if (!ec && std::filesystem::is_regular_file(bp, ec)) bp = bp.parent_path();
      if (!ec) m_.base_locations.push_back(bp.lexically_normal().string());
    }
    if (m_.base_locations.size() > kMaxBaseLocations)
      return Status{Errc::invalid, "at most " + std::to_string(kMaxBaseLocations) + " base locations"};
    for (auto& l : m_.base_locations)
      if (l.empty() || l.size() > kMaxNameLen || l.find('\0') != std::string::npos)
        return Status{Errc::invalid, "invalid base location '" + l + "'"};

    for (uint32_t i = 0; i < base_->files.size(); ++i) {
      auto& f = *base_->files[i];
      for (auto& t : f.header.tensors) index_.add(i, t);
      BaseFile bf;
      bf.name = f.name;
      bf.size = f.map->size();
      m_.base_files.push_back(std::move(bf));
    }
    // Whole-file sha256s (every base file, every fine-tuned file) on a thread
    // of their own: a third of the build's CPU, sequential per file, and
    // independent of the frames, so they overlap the encoding instead of
    // stalling it. Joined (jthread) before the manifest is written or on any
    // early return.
    std::vector<Sha256> base_sha(base_->files.size()), ft_sha(ft_->files.size());
    std::jthread hasher;
    if (out_dir) {
      hasher = std::jthread([&] {
        // The base through the hash cache: many fine-tunes share one base.
        for (size_t i = 0; i < base_->files.size(); ++i) {
          auto h = sha256_of_local_file(base_->files[i]->path);
          base_sha[i] = h.ok() ? *h : sha256(base_->files[i]->map->data(), base_->files[i]->map->size());
        }
        for (size_t i = 0; i < ft_->files.size(); ++i)
          ft_sha[i] = sha256(ft_->files[i]->bytes(), ft_->files[i]->size);  // as served (converted checkpoints too)
      });
    }
    std::set<std::string> seen;
    for (auto& f : ft_->files) {
      if (!seen.insert(f->name).second)
        return Status{Errc::invalid, ft_path + ": two inputs map to the output file '" + f->name + "'"};
      report_.finetune_bytes += f->size;
    }

    StagingDir stage;
    OutFileWriter data;
    if (out_dir) {
      TP_RETURN_IF_ERROR(stage.create(*out_dir));
      TP_RETURN_IF_ERROR(data.open(stage.path() + "/" + kDataFile));
    }
    data_ = out_dir ? &data : nullptr;

    for (uint32_t fi = 0; fi < ft_->files.size(); ++fi) TP_RETURN_IF_ERROR(build_file(fi));
    if (out_dir) {
      hasher.join();
      for (size_t i = 0; i < base_sha.size(); ++i) m_.base_files[i].sha256 = base_sha[i];
      for (size_t i = 0; i < ft_sha.size(); ++i) m_.out_files[i].sha256 = ft_sha[i];
    }

    std::string idx = serialize_manifest(m_);
    report_.index_bytes = idx.size();
    report_.frames = m_.frames.size();
    if (out_dir) {
      TP_RETURN_IF_ERROR(data.close());
      OutFileWriter iw;
      TP_RETURN_IF_ERROR(iw.open(stage.path() + "/" + kIndexFile));
      TP_RETURN_IF_ERROR(iw.write(idx.data(), idx.size()));
      TP_RETURN_IF_ERROR(iw.close());
      TP_RETURN_IF_ERROR(stage.commit());
      report_.delta_bytes = data_pos_ + idx.size();
    } else {
      // Extrapolate per class from the sampled frames.
      double total = static_cast<double>(idx.size());
      for (auto& [k, c] : classes_) {
        double ratio = c.sampled_out ? static_cast<double>(c.sampled_delta) / c.sampled_out : 1.0;
        total += ratio * static_cast<double>(c.out);
      }
      report_.delta_bytes = static_cast<uint64_t>(total);
      report_.estimated = true;
    }
    report_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return report_;
  }

 private:
  struct Klass { uint64_t out = 0, sampled_out = 0, sampled_delta = 0; };

  Status build_file(uint32_t fi) {
    const ModelFile& f = *ft_->files[fi];
    OutFile of;
    of.name = f.name;
    of.size = f.size;
    of.mode = f.mode;
    of.first_frame = static_cast<uint32_t>(m_.frames.size());
    std::vector<Job> jobs;
    struct LowRankJob {
      const TensorInfo* t = nullptr;
      const BaseRef* b = nullptr;
      LowRankFactors f;
    };
    std::map<int, LowRankJob> lowrank;  // by tensor report index
    if (f.has_tensors) {
      // A checkpoint served as it is: a storage of at most kTinyStorage
      // bytes stays in the structure around it (its local header, the
      // next one's): as tensor frames it would cost two frames (its own
      // and the header's after it), 128 bytes of index, more than its
      // content. YOLOv5n (273 of 349 storages): 2,225,047 -> 2,189,778 B.
      constexpr uint64_t kTinyStorage = 256;
      const bool ckpt_as_is = !opt_.as_safetensors && f.synthesized.empty() && is_checkpoint_name(f.name);
      uint64_t pos = 0;
      for (auto& t : f.header.tensors) {
        if (ckpt_as_is && t.nbytes() <= kTinyStorage) {
          TensorReport tr;
          tr.file = f.name;
          tr.name = t.name.empty() ? "(storage at byte " + std::to_string(t.begin) + ")" : t.name;
          tr.dtype = dtype_name(t.dtype);
          tr.out_bytes = t.nbytes();
          tr.match = "structure";
          tr.codecs = "(in structure frames)";
          report_.tensors_detail.push_back(std::move(tr));
          continue;
        }
        if (t.begin > pos) chunk_raw(jobs, fi, pos, t.begin);
        // An unnamed range (a checkpoint storage only strided views read)
        // has no base counterpart.
        const BaseRef* b = t.name.empty() ? nullptr : index_.find(t.name);
        TensorReport tr;
        tr.file = f.name;
        tr.name = t.name.empty() ? "(storage at byte " + std::to_string(t.begin) + ")" : t.name;
        tr.dtype = dtype_name(t.dtype);
        tr.out_bytes = t.nbytes();
        ++report_.tensors;
        int idx = static_cast<int>(report_.tensors_detail.size());
        plan_tensor(jobs, fi, t, b, idx, tr.match);
        // Codec 12 candidates: 2-D float tensors matched whole to a base
        // tensor (merged LoRA adapters change such matrices only).
        if (opt_.allow_lowrank && (tr.match == "same" || tr.match == "dtype") && t.shape.size() == 2 &&
            (t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16))
          lowrank[idx] = LowRankJob{&t, b, {}};
        if (tr.match != "none") ++report_.tensors_matched;
        report_.tensors_detail.push_back(std::move(tr));
        pos = std::max(pos, t.end);
      }
      if (pos < f.size) chunk_raw(jobs, fi, pos, f.size);
      // A checkpoint served as it is: its structure bytes (data.pkl, zip
      // headers, attribute tensors outside the state_dict) are a small part
      // of the file and have no base counterpart worth a delta (YOLOv5n:
      // zstd --patch-from of the base's data.pkl saves 8%), so they get
      // zstd's strongest level.
      if (!opt_.as_safetensors && f.synthesized.empty() && is_checkpoint_name(f.name))
        for (auto& j : jobs)
          if (j.tensor < 0) j.structure = true;
    } else {
      chunk_raw(jobs, fi, 0, f.size);
      // config.json, tokenizer files...: a byte delta against the base's
      // file of the same name, where there is one (often identical).
      for (uint32_t bi = 0; bi < base_->files.size(); ++bi) {
        const ModelFile& bf = *base_->files[bi];
        if (bf.has_tensors || bf.name != f.name) continue;
        for (auto& j : jobs) {
          if (j.off + j.len > bf.size) break;
          j.base_file = bi;
          j.base_off = j.off;
          j.base_len = j.len;
        }
        break;
      }
    }
    if (opt_.sample_every > 1) {
      // Estimate: encode every k-th frame of each class (and all tiny files).
      std::map<int, uint64_t> counter;
      for (auto& j : jobs) j.sampled = (counter[j.klass]++ % opt_.sample_every) == 0;
    }
    for (auto& j : jobs) classes_[j.klass].out += j.len;

    const uint8_t* bytes = f.bytes();
    unsigned threads = opt_.threads ? opt_.threads : std::max(1u, std::thread::hardware_concurrency());
    if (!lowrank.empty()) {
      // Factors per candidate tensor, before its frames are encoded (every
      // frame of a tensor shares them); tensors in parallel.
      std::vector<LowRankJob*> todo;
      for (auto& [k, v] : lowrank) todo.push_back(&v);
      std::atomic<size_t> next{0};
      auto work = [&] {
        std::vector<uint8_t> conv;
        for (size_t k; (k = next++) < todo.size();) {
          LowRankJob& lj = *todo[k];
          const TensorInfo& t = *lj.t;
          const TensorInfo& bt = *lj.b->t;
          const uint64_t count = t.nbytes() / dtype_size(t.dtype);
          const uint8_t* base = base_->files[lj.b->file]->map->data() + bt.begin;
          if (bt.dtype != t.dtype) {
            conv.resize(t.nbytes());
            convert_dtype(base, bt.dtype, count, t.dtype, conv.data());
            base = conv.data();
          }
          LowRankOptions lo;
          lo.zstd_level = opt_.zstd_level;
          lj.f = find_lowrank_factors(bytes + t.begin, base, t.shape[0], t.shape[1], t.dtype, lo);
        }
      };
      std::vector<std::jthread> pool;
      for (unsigned i = 1; i < std::min<size_t>(threads, todo.size()); ++i) pool.emplace_back(work);
      work();
      pool.clear();
      for (auto it = lowrank.begin(); it != lowrank.end();)
        it = it->second.f.t.rank ? std::next(it) : lowrank.erase(it);
    }
    // Workers encode frames; this thread takes them in frame order (index,
    // data file). thread_local: each worker's scratch for dtype conversion.
    const size_t window = threads * 4;
    std::vector<Encoded> enc(window);
    uint64_t last_progress = 0;
    auto produce = [&](size_t k, size_t slot) {
      thread_local std::vector<uint8_t> conv;
      const Job& j = jobs[k];
      Encoded& e = enc[slot];
      const uint8_t* out = bytes + j.off;
      e.hash = xxh128(out, j.len);
      if (!j.sampled) {
        e.e = {};
      } else {
        const uint8_t* base = nullptr;
        if (j.base_file != kNoBase) {
          base = base_->files[j.base_file]->map->data() + j.base_off;
          if (j.bdt != j.dt) {
            conv.resize(j.len);
            convert_dtype(base, j.bdt, j.base_len / dtype_size(j.bdt), j.dt, conv.data());
            base = conv.data();
          }
        }
        EncodeOptions eo;
        eo.zstd_level = j.structure ? std::max(opt_.zstd_level, 19) : opt_.zstd_level;
        eo.layout = j.layout;
        eo.allow_ctx = opt_.allow_ctx && !j.no_ctx;
        e.e = encode_frame(out, j.len, j.dt, base, eo);
        // Codec 12 where its factors were found, kept only when smaller than
        // the codec chosen above.
        if (base && e.e.codec != Codec::copy_base) {
          if (auto it = lowrank.find(j.tensor); it != lowrank.end() && j.dt == it->second.t->dtype) {
            const uint64_t first = (j.off - it->second.t->begin) / dtype_size(j.dt);
            auto p = encode_lowrank_frame(it->second.f, first, out, base, j.len, j.dt, opt_.zstd_level);
            if (p.ok() && p->size() < e.e.payload.size()) e.e = {Codec::lowrank_lanes, std::move(*p)};
          }
        }
      }
    };
    auto consume = [&](size_t k, size_t slot) -> Status {
      Job& j = jobs[k];
      Encoded& e = enc[slot];
      Frame fr;
      fr.file = fi;
      fr.out_offset = j.off;
      fr.out_len = j.len;
      fr.codec = e.e.codec;
      fr.dtype = j.dt;
      fr.base_dtype = j.bdt;
      fr.hash = e.hash;
      if (codec_needs_base(e.e.codec)) {
        fr.base_file = j.base_file;
        fr.base_offset = j.base_off;
        fr.base_len = j.base_len;
      } else {
        fr.base_dtype = fr.dtype;
      }
      fr.data_offset = data_pos_;
      fr.data_len = static_cast<uint32_t>(e.e.payload.size());
      if (data_) TP_RETURN_IF_ERROR(data_->write(e.e.payload.data(), e.e.payload.size()));
      data_pos_ += e.e.payload.size();
      if (j.sampled) {
        auto& c = classes_[j.klass];
        c.sampled_out += j.len;
        c.sampled_delta += e.e.payload.size();
      }
      if (j.tensor >= 0) {
        auto& tr = report_.tensors_detail[j.tensor];
        tr.delta_bytes += e.e.payload.size();
        std::string cn = codec_name(e.e.codec);
        if (tr.codecs.find(cn) == std::string::npos) tr.codecs += (tr.codecs.empty() ? "" : ",") + cn;
      }
      m_.frames.push_back(fr);
      done_ += j.len;
      if (opt_.progress && (done_ - last_progress >= (64u << 20) || k + 1 == jobs.size())) {
        last_progress = done_;
        opt_.progress(done_, report_.finetune_bytes);
      }
      return Status::Ok();
    };
    TP_RETURN_IF_ERROR(ordered_pipeline(jobs.size(), threads, window, produce, consume));
    for (auto& tr : report_.tensors_detail)
      if (tr.file == f.name && tr.codecs == "copy_base") { tr.match = "identical"; ++report_.tensors_identical; }
    of.frame_count = static_cast<uint32_t>(m_.frames.size()) - of.first_frame;
    FileReport fr;
    fr.name = f.name;
    fr.out_bytes = f.size;
    fr.frames = of.frame_count;
    for (uint32_t k = of.first_frame; k < of.first_frame + of.frame_count; ++k) fr.delta_bytes += m_.frames[k].data_len;
    report_.files.push_back(fr);
    m_.out_files.push_back(std::move(of));
    return Status::Ok();
  }

  BuildOptions opt_;
  Model* base_ = nullptr;
  Model* ft_ = nullptr;
  BaseIndex index_;
  Manifest m_;
  BuildReport report_;
  OutFileWriter* data_ = nullptr;
  uint64_t data_pos_ = 0, done_ = 0;
  std::map<int, Klass> classes_;
};

}  // namespace

Result<BuildReport> build_delta(const std::string& base, const std::string& finetune, const std::string& out_dir,
                                const BuildOptions& opt) {
  Builder b(opt);
  return b.run(base, finetune, &out_dir);
}

Result<BuildReport> estimate_delta(const std::string& base, const std::string& finetune, const BuildOptions& opt) {
  BuildOptions o = opt;
  if (o.sample_every < 1) o.sample_every = 1;
  Builder b(o);
  return b.run(base, finetune, nullptr);
}

}  // namespace tenpak
