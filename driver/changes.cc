#include "driver/changes.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include "common/fd.h"
#include "common/files.h"

namespace slacker::driver {
namespace {

struct Node {
  struct stat st {};
  std::string capability;
  bool exists = false;
};

bool SameTime(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && (a.tv_nsec == b.tv_nsec || a.tv_nsec == 0 || b.tv_nsec == 0);
}

bool StatDifferent(const Node& o, const Node& n) {
  if (o.st.st_mode != n.st.st_mode || o.st.st_uid != n.st.st_uid || o.st.st_gid != n.st.st_gid ||
      o.st.st_rdev != n.st.st_rdev)
    return true;
  if (!S_ISDIR(o.st.st_mode) && (!SameTime(o.st.st_mtim, n.st.st_mtim) || o.st.st_size != n.st.st_size))
    return true;
  return o.capability != n.capability;
}

Status Load(const std::string& path, Node* node) {
  node->exists = false;
  if (::lstat(path.c_str(), &node->st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, "stat " + path);
  }
  node->exists = true;
  node->capability.clear();
  if (S_ISREG(node->st.st_mode)) {
    char buf[256];
    ssize_t n = ::lgetxattr(path.c_str(), "security.capability", buf, sizeof buf);
    if (n > 0) node->capability.assign(buf, static_cast<size_t>(n));
  }
  return Status::Ok();
}

Result<std::vector<std::string>> Children(const std::string& dir, bool top) {
  auto names = ListDir(dir);
  if (!names.ok()) return names.status();
  std::vector<std::string> out;
  for (auto& n : *names) {
    if (top && n == "lost+found") continue;
    out.push_back(std::move(n));
  }
  std::sort(out.begin(), out.end());
  return out;
}

class Walker {
 public:
  Walker(std::string new_root, std::string old_root)
      : new_root_(std::move(new_root)), old_root_(std::move(old_root)) {}

  // `rel` is "" for the root, else "/a/b". `old_node` may not exist.
  Status Walk(const std::string& rel, const Node& new_node, const Node& old_node, bool node_added) {
    size_t size_at_entry = changes_.size();
    bool top = rel.empty();
    if (S_ISDIR(new_node.st.st_mode)) {
      auto new_children = Children(new_root_ + rel, top);
      if (!new_children.ok()) return new_children.status();
      std::set<std::string> old_children;
      if (old_node.exists && S_ISDIR(old_node.st.st_mode) && !old_root_.empty()) {
        auto oc = Children(old_root_ + rel, top);
        if (!oc.ok()) return oc.status();
        old_children.insert(oc->begin(), oc->end());
      }
      for (const auto& name : *new_children) {
        std::string child = rel + "/" + name;
        Node n, o;
        SLACKER_RETURN_IF_ERROR(Load(new_root_ + child, &n));
        if (!n.exists) continue;  // raced with a delete
        bool added = false;
        if (old_children.count(name)) {
          SLACKER_RETURN_IF_ERROR(Load(old_root_ + child, &o));
          if (o.exists && StatDifferent(o, n)) {
            changes_.push_back({child, ChangeKind::kModify});
            added = true;
          }
          old_children.erase(name);
        } else {
          changes_.push_back({child, ChangeKind::kAdd});
          added = true;
        }
        SLACKER_RETURN_IF_ERROR(Walk(child, n, o, added));
      }
      for (const auto& name : old_children) changes_.push_back({rel + "/" + name, ChangeKind::kDelete});
      if (changes_.size() > size_at_entry && !node_added && !top) {
        changes_.insert(changes_.begin() + static_cast<long>(size_at_entry), {rel, ChangeKind::kModify});
      }
    }
    return Status::Ok();
  }

  std::vector<Change> Take() { return std::move(changes_); }

 private:
  std::string new_root_, old_root_;
  std::vector<Change> changes_;
};

}  // namespace

Result<std::vector<Change>> ComputeChanges(const std::string& new_root, const std::string& old_root) {
  Walker w(new_root, old_root);
  Node n, o;
  SLACKER_RETURN_IF_ERROR(Load(new_root, &n));
  if (!n.exists) return Errorf(ENOENT, "layer root {} does not exist", new_root);
  if (!old_root.empty()) SLACKER_RETURN_IF_ERROR(Load(old_root, &o));
  SLACKER_RETURN_IF_ERROR(w.Walk("", n, o, false));
  auto changes = w.Take();
  std::stable_sort(changes.begin(), changes.end(),
                   [](const Change& a, const Change& b) { return a.path < b.path; });
  return changes;
}

int64_t ChangesSize(const std::string& new_root, const std::vector<Change>& changes) {
  int64_t size = 0;
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const auto& c : changes) {
    if (c.kind == ChangeKind::kDelete) continue;
    struct stat st;
    if (::lstat((new_root + c.path).c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
    if (st.st_nlink > 1 && !seen.insert({st.st_dev, st.st_ino}).second) continue;
    size += st.st_size;
  }
  return size;
}

}  // namespace slacker::driver
