#include "tenpak/model.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "tenpak/pytorch.h"

namespace fs = std::filesystem;

namespace tenpak {

Result<std::unique_ptr<Mapping>> Mapping::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status{Errc::io, path + ": cannot open: " + std::strerror(errno)};
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Status{Errc::io, path + ": cannot stat: " + std::strerror(errno)};
  }
  std::unique_ptr<Mapping> m(new Mapping());
  m->size_ = static_cast<uint64_t>(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      return Status{Errc::io, path + ": cannot map: " + std::strerror(errno)};
    }
    ::madvise(p, m->size_, MADV_SEQUENTIAL);
    m->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return m;
}

Mapping::~Mapping() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

bool is_checkpoint_name(const std::string& name) {
  auto ends = [&](const char* s) { size_t n = std::strlen(s); return name.size() >= n && name.compare(name.size() - n, n, s) == 0; };
  return ends(".pt") || ends(".pth") || ends(".ckpt") || (ends(".bin") && name.find("pytorch_model") != std::string::npos);
}

std::string safetensors_name_for(const std::string& name) {
  std::string dir, base = name;
  if (auto s = name.rfind('/'); s != std::string::npos) { dir = name.substr(0, s + 1); base = name.substr(s + 1); }
  if (base.rfind("pytorch_model", 0) == 0 && base.size() > 4 && base.compare(base.size() - 4, 4, ".bin") == 0)
    return dir + "model" + base.substr(13, base.size() - 13 - 4) + ".safetensors";
  auto dot = base.rfind('.');
  return dir + base.substr(0, dot) + ".safetensors";
}

namespace {

bool ends_with(const std::string& s, const char* suf) {
  size_t n = std::strlen(suf);
  return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

Status load_file(ModelFile& f, const LoadOptions& opt) {
  auto m = Mapping::open(f.path);
  if (!m.ok()) return m.status();
  f.map = std::move(m.value());
  f.size = f.map->size();
  if (ends_with(f.name, ".safetensors")) {
    auto n = safetensors_header_len(f.map->data(), f.size, f.path);
    if (!n.ok()) return n.status();
    auto h = parse_safetensors_header(reinterpret_cast<const char*>(f.map->data()) + 8, *n, f.size, f.path);
    if (!h.ok()) return h.status();
    f.header = std::move(h.value());
    f.has_tensors = true;
  } else if (is_checkpoint_name(f.name)) {
    auto ck = read_pytorch_checkpoint(f.map->data(), f.size, f.path);
    if (!ck.ok()) return ck.status();
    if (opt.convert_checkpoints) {
      auto st = checkpoint_to_safetensors(*ck, f.map->data(), f.path);
      if (!st.ok()) return st.status();
      f.synthesized = std::move(st.value());
      f.name = safetensors_name_for(f.name);
      f.size = f.synthesized.size();
      auto n = safetensors_header_len(f.synthesized.data(), f.size, f.path);
      if (!n.ok()) return n.status();
      auto h = parse_safetensors_header(reinterpret_cast<const char*>(f.synthesized.data()) + 8, *n, f.size, f.path);
      if (!h.ok()) return h.status();
      f.header = std::move(h.value());
    } else if (opt.checkpoint_storages) {
      f.header.tensors = checkpoint_storage_ranges(*ck);
    } else {
      // Index tensors in place: each one is a contiguous range of the zip.
      for (auto& t : ck->tensors) {
        if (!t.contiguous_in_file) continue;
        TensorInfo ti;
        ti.name = t.name; ti.dtype = t.dtype; ti.shape = t.shape;
        ti.begin = t.file_offset; ti.end = t.file_offset + t.nbytes;
        f.header.tensors.push_back(std::move(ti));
      }
    }
    f.has_tensors = true;
  }
  return Status::Ok();
}

// With checkpoints converted to safetensors, their index must follow: a
// pytorch_model.bin.index.json names .bin shards the model no longer has,
// and transformers' from_pretrained would take it (it looks for the
// safetensors index first, then this one). It becomes
// model.safetensors.index.json with every shard name mapped as the shards
// themselves were (safetensors_name_for); metadata (total_size) stays: the
// tensors' bytes are the same. When the model has a safetensors index of
// its own, that one is kept and the .bin index dropped.
Status convert_checkpoint_indexes(Model& model) {
  const std::string bin_index = "pytorch_model.bin.index.json";
  for (size_t i = 0; i < model.files.size();) {
    ModelFile& f = *model.files[i];
    const size_t slash = f.name.rfind('/');
    const std::string dir = slash == std::string::npos ? "" : f.name.substr(0, slash + 1);
    if (f.name.substr(dir.size()) != bin_index) {
      ++i;
      continue;
    }
    const std::string st_index = dir + "model.safetensors.index.json";
    bool own = std::any_of(model.files.begin(), model.files.end(), [&](const auto& g) { return g->name == st_index; });
    if (own) {
      model.files.erase(model.files.begin() + static_cast<long>(i));
      continue;
    }
    auto j = nlohmann::ordered_json::parse(f.bytes(), f.bytes() + f.size, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return Status{Errc::corrupt, f.path + ": not a checkpoint index (no weight_map object)"};
    for (auto& [tensor, shard] : j["weight_map"].items()) {
      if (!shard.is_string()) return Status{Errc::corrupt, f.path + ": weight_map['" + tensor + "'] is not a file name"};
      if (is_checkpoint_name(shard.get<std::string>())) shard = safetensors_name_for(shard.get<std::string>());
    }
    std::string text = j.dump(2) + "\n";
    f.synthesized.assign(text.begin(), text.end());
    f.size = f.synthesized.size();
    f.name = st_index;
    ++i;
  }
  return Status::Ok();
}

}  // namespace

Result<Model> load_model(const std::string& path, const LoadOptions& opt) {
  Model model;
  model.root = path;
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return Status{Errc::invalid, path + ": no such file or directory"};
  if (fs::is_regular_file(st)) {
    auto f = std::make_unique<ModelFile>();
    f->name = fs::path(path).filename().string();
    f->path = path;
    TP_RETURN_IF_ERROR(load_file(*f, opt));
    model.files.push_back(std::move(f));
    return model;
  }
  if (!fs::is_directory(st)) return Status{Errc::invalid, path + ": not a file or directory"};
  // Files are named lexically, by their place in the directory, and
  // symbolic links followed for their content only where that stays within
  // reason: a target inside the model directory, or a blob of the Hugging
  // Face cache the directory is a snapshot of (.../snapshots/REV ->
  // .../blobs/HASH). Any other target (a link to /etc/shadow) is refused:
  // its content would go into the delta.
  const fs::path root = fs::weakly_canonical(path, ec);
  std::optional<fs::path> blobs;
  if (root.parent_path().filename() == "snapshots") blobs = root.parent_path().parent_path() / "blobs";
  auto under = [](const fs::path& p, const fs::path& dir) {
    auto [d, q] = std::mismatch(dir.begin(), dir.end(), p.begin(), p.end());
    return d == dir.end();
  };
  std::vector<std::string> names;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::string fname = it->path().filename().string();
    if (it->is_directory() && (fname == ".git" || fname == ".cache" || fname == ".huggingface")) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_symlink() && !fs::is_regular_file(it->path())) continue;
    if (!fs::is_regular_file(it->path())) continue;
    std::string name = it->path().lexically_relative(path).generic_string();
    if (it->is_symlink()) {
      std::error_code lec;
      fs::path target = fs::canonical(it->path(), lec);
      if (lec) continue;
      if (!under(target, root) && !(blobs && under(target, *blobs)))
        return Status{Errc::unsupported, (fs::path(path) / name).string() + ": a symbolic link to " + target.string() +
                                             ", outside the model directory (and not a Hugging Face cache blob); refused"};
      model.followed_links.push_back(name + " -> " + target.string());
    }
    names.push_back(std::move(name));
  }
  if (ec) return Status{Errc::io, path + ": cannot list: " + ec.message()};
  std::sort(names.begin(), names.end());
  for (auto& n : names) {
    auto f = std::make_unique<ModelFile>();
    f->name = n;
    f->path = (fs::path(path) / n).string();
    struct stat sb;
    if (::stat(f->path.c_str(), &sb) == 0) f->mode = sb.st_mode & 0777;
    TP_RETURN_IF_ERROR(load_file(*f, opt));
    model.files.push_back(std::move(f));
  }
  if (model.files.empty()) return Status{Errc::invalid, path + ": the directory holds no files"};
  if (opt.convert_checkpoints) TP_RETURN_IF_ERROR(convert_checkpoint_indexes(model));
  return model;
}

}  // namespace tenpak
