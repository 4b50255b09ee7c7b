#include "storage_backend/store_index.h"

#include <fcntl.h>

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/log.h"

namespace slacker::storage_backend {
namespace {

using nlohmann::json;

constexpr size_t kMaxEntryBytes = 64 << 10;  // an entry is < 1 KiB; more is not ours
constexpr unsigned kDirMode = 0700;
constexpr unsigned kFileMode = 0600;

std::string StringField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

uint64_t CountField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

void WarnSkipped(const std::string& path, const Status& why) {
  log::Warn("store_index_entry_skipped",
            {{"file", path}, {"err", why.message()}, {"action", "remove the file if no slacker wrote it"}});
}

}  // namespace

Result<std::string> StoreIndex::ReadEntry(const std::string& rel) const {
  std::string path = JoinPath(root_, rel);
  SLACKER_ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularBeneath(root_fd_, rel, O_RDONLY));
  return ReadFdAtMost(fd.get(), kMaxEntryBytes, path);
}

Result<std::vector<std::string>> StoreIndex::ListEntryNames(const std::string& dir) const {
  auto fd = OpenBeneath(root_fd_, dir, O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) {
    if (fd.status().code() == ENOENT) return std::vector<std::string>{};
    return fd.status().Context("list index " + JoinPath(root_, dir));
  }
  SLACKER_ASSIGN_OR_RETURN(auto names, ListDirFd(fd->get(), JoinPath(root_, dir)));
  std::erase_if(names, [](const std::string& n) { return IsTempName(n); });
  std::sort(names.begin(), names.end());
  return names;
}

Status StoreIndex::WriteEntry(const std::string& dir, const std::string& name, const std::string& text) {
  SLACKER_ASSIGN_OR_RETURN(UniqueFd fd, MakeDirsBeneath(root_fd_, dir, kDirMode));
  return AtomicWriteFileAt(fd.get(), name, text, kFileMode);
}

Result<std::string> StoreIndex::LookupChain(const std::string& key) const {
  if (!IsValidChainKey(key)) return Errorf(EINVAL, "look up chain {:?}: invalid chain key", key);
  std::string rel = ChainFile(key);
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadEntry(rel));
  std::string snap = text.substr(0, text.find('\n'));
  if (!IsValidSnapshotId(snap))
    return Errorf(EIO, "chain index entry {} does not hold a snapshot id (damaged)", JoinPath(root_, rel));
  return snap;
}

Status StoreIndex::RecordChain(const std::string& key, const std::string& snap) {
  if (!IsValidChainKey(key) || !IsValidSnapshotId(snap))
    return Errorf(EINVAL, "record chain {:?} as snapshot {:?}: invalid chain key or snapshot id", key, snap);
  return WriteEntry(kChainsDir, key, snap + "\n").Context("record chain " + key);
}

Result<std::vector<ChainEntry>> StoreIndex::ListChains() const {
  SLACKER_ASSIGN_OR_RETURN(auto names, ListEntryNames(kChainsDir));
  std::vector<ChainEntry> out;
  for (const auto& n : names) {
    auto snap = IsValidChainKey(n) ? LookupChain(n)
                                   : Result<std::string>(Errorf(EINVAL, "{:?} is not a chain key", n));
    if (!snap.ok()) {
      WarnSkipped(JoinPath(root_, JoinPath(kChainsDir, n)), snap.status());
      continue;
    }
    out.push_back({n, *snap});
  }
  return out;
}

Result<bool> StoreIndex::RemoveChain(const std::string& key, const std::string& snap) {
  auto now = LookupChain(key);
  if (!now.ok()) {
    if (now.status().code() == ENOENT) return false;
    return now.status();
  }
  if (*now != snap) return false;
  SLACKER_ASSIGN_OR_RETURN(ParentDir p, OpenParentBeneath(root_fd_, ChainFile(key)));
  SLACKER_RETURN_IF_ERROR(UnlinkAtIfExists(p.dir.get(), p.name, JoinPath(root_, ChainFile(key))));
  return true;
}

Result<NameEntry> StoreIndex::ReadNameFile(const std::string& rel) const {
  SLACKER_ASSIGN_OR_RETURN(std::string text, ReadEntry(rel));
  json j = json::parse(text, nullptr, false);
  NameEntry e;
  if (j.is_object()) {
    e.ns = StringField(j, "namespace");
    e.name = StringField(j, "name");
    e.snapshot = StringField(j, "snapshot");
    e.bytes = CountField(j, "bytes");
    e.inodes = CountField(j, "inodes");
    e.host = StringField(j, "host");
  }
  if (e.name.empty() || !IsValidSnapshotId(e.snapshot))
    return Errorf(EIO, "name index entry {} is not a JSON object with \"name\" and \"snapshot\" (damaged)",
                  JoinPath(root_, rel));
  return e;
}

Status StoreIndex::PublishName(const NameEntry& e) {
  if (e.name.empty() || !IsValidSnapshotId(e.snapshot))
    return Errorf(EINVAL, "publish snapshot name {:?}: empty name or invalid snapshot id {:?}", e.name, e.snapshot);
  json j = {{"name", e.name},   {"namespace", e.ns},     {"snapshot", e.snapshot},
            {"bytes", e.bytes}, {"inodes", e.inodes}, {"host", e.host}};
  return WriteEntry(kNamesDir, NameFileName(e.ns, e.name), j.dump() + "\n")
      .Context("publish snapshot name " + e.name);
}

Result<NameEntry> StoreIndex::LookupName(const std::string& ns, const std::string& name) const {
  std::string rel = NameFile(ns, name);
  auto e = ReadNameFile(rel);
  if (!e.ok()) {
    if (e.status().code() == ENOENT) return Errorf(ENOENT, "{} is not published on the shared store", name);
    return e.status().Context("look up snapshot name " + name);
  }
  if (e->name != name)
    return Errorf(EIO, "name index entry {} for {} names {:?} (damaged)", JoinPath(root_, rel), name, e->name);
  return e;
}

Result<std::vector<NameEntry>> StoreIndex::ListNames() const {
  SLACKER_ASSIGN_OR_RETURN(auto names, ListEntryNames(kNamesDir));
  std::vector<NameEntry> out;
  for (const auto& n : names) {
    std::string rel = JoinPath(kNamesDir, n);
    auto e = ReadNameFile(rel);
    if (e.ok() && NameFileName(e->ns, e->name) != n)
      e = Errorf(EIO, "its name {:?} in namespace {:?} files under another file name (damaged)", e->name, e->ns);
    if (!e.ok()) {
      WarnSkipped(JoinPath(root_, rel), e.status());
      continue;
    }
    out.push_back(std::move(e).value());
  }
  return out;
}

Result<bool> StoreIndex::RemoveName(const std::string& ns, const std::string& name, const std::string& snap) {
  auto now = LookupName(ns, name);
  if (!now.ok()) {
    if (now.status().code() == ENOENT) return false;
    return now.status();
  }
  if (now->snapshot != snap) return false;
  std::string rel = NameFile(ns, name);
  SLACKER_ASSIGN_OR_RETURN(ParentDir p, OpenParentBeneath(root_fd_, rel));
  SLACKER_RETURN_IF_ERROR(UnlinkAtIfExists(p.dir.get(), p.name, JoinPath(root_, rel)));
  return true;
}

}  // namespace slacker::storage_backend
