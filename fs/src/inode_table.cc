#include "inode_table.h"

namespace tenpak::fsi {

InodeTable::InodeTable() {
  Node root;
  root.is_dir = true;
  root.parent = ModelFs::kRootIno;
  nodes_.push_back(std::move(root));
}

FsAttr InodeTable::attr_of(uint64_t ino) const {
  const Node& n = nodes_[ino - 1];
  FsAttr a;
  a.ino = ino;
  a.is_dir = n.is_dir;
  a.mode = n.mode;
  if (n.is_dir) {
    a.nlink = 2;
    for (auto& [_, ch] : n.children)
      if (nodes_[ch - 1].is_dir) ++a.nlink;
  } else {
    a.size = n.control ? control_size_ : n.size;
  }
  return a;
}

Result<uint64_t> InodeTable::make_dir(const std::string& path) {
  uint64_t cur = ModelFs::kRootIno;
  size_t p = 0;
  while (p < path.size()) {
    size_t q = path.find('/', p);
    if (q == std::string::npos) q = path.size();
    std::string comp = path.substr(p, q - p);
    p = q + 1;
    auto it = nodes_[cur - 1].children.find(comp);
    if (it != nodes_[cur - 1].children.end()) {
      if (!nodes_[it->second - 1].is_dir)
        return Status{Errc::invalid, "'" + path + "': '" + comp + "' is a file of another model"};
      cur = it->second;
      continue;
    }
    Node d;
    d.name = comp;
    d.parent = cur;
    d.is_dir = true;
    nodes_.push_back(std::move(d));
    uint64_t ino = nodes_.size();
    nodes_[cur - 1].children.emplace(comp, ino);
    cur = ino;
  }
  return cur;
}

Status InodeTable::add_model(uint32_t model, const std::string& mdir, const std::vector<FileSpec>& files,
                             const std::string& who) {
  if (!mdir.empty()) {
    auto r = make_dir(mdir);
    if (!r.ok()) return r.status();
  }
  for (uint32_t fi = 0; fi < files.size(); ++fi) {
    const FileSpec& of = files[fi];
    std::string full = mdir.empty() ? of.name : mdir + "/" + of.name;
    size_t slash = full.rfind('/');
    auto dir = make_dir(slash == std::string::npos ? "" : full.substr(0, slash));
    if (!dir.ok()) return dir.status();
    std::string base = slash == std::string::npos ? full : full.substr(slash + 1);
    if (nodes_[*dir - 1].children.count(base))
      return {Errc::invalid, who + ": '" + full + "' is already used by another model or file"};
    Node f;
    f.name = base;
    f.parent = *dir;
    f.model = model;
    f.file = fi;
    f.size = of.size;
    f.mode = (of.mode & 0444) ? (of.mode & 0555) : 0444;  // read-only view of the recorded mode
    nodes_.push_back(std::move(f));
    nodes_[*dir - 1].children.emplace(base, nodes_.size());
  }
  return Status::Ok();
}

Status InodeTable::add_control(const char* dir, const char* stats, uint64_t stats_size) {
  if (nodes_[0].children.count(dir))
    return Status{Errc::invalid, std::string("a model has a file named '") + dir + "' at the root (reserved)"};
  control_size_ = stats_size;
  Node cd;
  cd.name = dir;
  cd.parent = ModelFs::kRootIno;
  cd.is_dir = true;
  cd.hidden = true;
  nodes_.push_back(std::move(cd));
  uint64_t cd_ino = nodes_.size();
  nodes_[0].children.emplace(dir, cd_ino);
  Node sf;
  sf.name = stats;
  sf.parent = cd_ino;
  sf.control = true;
  sf.mode = 0444;
  nodes_.push_back(std::move(sf));
  nodes_[cd_ino - 1].children.emplace(stats, nodes_.size());
  return Status::Ok();
}

std::optional<FsAttr> InodeTable::lookup(uint64_t parent, std::string_view name) const {
  const Node* p = node(parent);
  if (!p || !p->is_dir) return std::nullopt;
  auto it = p->children.find(name);
  if (it == p->children.end()) return std::nullopt;
  return attr_of(it->second);
}

std::optional<FsAttr> InodeTable::getattr(uint64_t ino) const {
  if (!node(ino)) return std::nullopt;
  return attr_of(ino);
}

std::optional<std::vector<FsDirEntry>> InodeTable::readdir(uint64_t ino) const {
  const Node* n = node(ino);
  if (!n || !n->is_dir) return std::nullopt;
  std::vector<FsDirEntry> out;
  for (auto& [name, ch] : n->children) {
    if (nodes_[ch - 1].hidden) continue;
    out.push_back({name, attr_of(ch)});
  }
  return out;
}

}  // namespace tenpak::fsi
