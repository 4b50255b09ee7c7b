// The snapshotter's catalog: containerd's snapshots on this host (name, kind, parent,
// driver layer, labels, sizes), persisted in <state>/catalog.json (replaced atomically,
// format below), with a lock per snapshot name and transactions.
//
// A call locks the names it works on (Transaction::LockExclusive for a name it creates,
// replaces or removes; LockShared for a parent that must stay), does its slow work
// (driver calls, I/O on the shared store) holding only those, then commits its changes
// in one step. So slow work on one name never blocks calls on another, and the catalog's
// own mutex is held only for map work and the save of a small host-local file. A
// transaction that is not committed rolls back when it is destroyed: its undo actions
// run (newest first; e.g. remove the driver layer it made) and its locks are released.
//
// catalog.json: {"format":1,"snapshots":[{"name","kind":"view|active|committed","parent",
// "layer","labels":{},"created","updated","bytes","inodes","base_bytes","base_inodes"}]}
// (the format of every release so far; fields missing in an older file read as empty/0).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "snapshotter/record.h"

namespace slacker::snapshotter {

class CatalogTransaction;

class Catalog {
 public:
  using Transaction = CatalogTransaction;

  // Loads `path` (absent: an empty catalog). EIO naming the file when it is damaged.
  static Result<std::unique_ptr<Catalog>> Open(std::string path);

  std::optional<Record> Find(const std::string& name) const EXCLUDES(mu_);
  std::vector<Record> List() const EXCLUDES(mu_);  // sorted by name
  // Whether a record names driver layer `layer`, or a transaction in progress made it.
  bool UsesLayer(const std::string& layer) const EXCLUDES(mu_);
  // Applies `edit` to record `name` and saves; nothing changes when `edit` or the save
  // fails. For fields no lock protects (labels): it needs no name lock. ENOENT: no record.
  Result<Record> Modify(const std::string& name, const std::function<Status(Record&)>& edit) EXCLUDES(mu_);

 private:
  friend class CatalogTransaction;
  struct Hold {
    int shared = 0;
    bool exclusive = false;
  };
  explicit Catalog(std::string path) : path_(std::move(path)) {}
  Status LoadLocked() REQUIRES(mu_);
  Status SaveLocked() REQUIRES(mu_);

  const std::string path_;
  mutable common::Mutex mu_;
  std::map<std::string, Record> records_ GUARDED_BY(mu_);
  std::map<std::string, Hold> holds_ GUARDED_BY(mu_);             // names locked by transactions
  std::multiset<std::string> inflight_layers_ GUARDED_BY(mu_);  // layers of open transactions
};

// One call's changes to the catalog. Not thread-safe itself (one call uses it); many
// transactions run at once. Locks are tried, never waited for: a name another
// transaction holds is EBUSY at once (the caller says what that means to its client).
class CatalogTransaction {
 public:
  explicit CatalogTransaction(Catalog& catalog) : catalog_(catalog) {}
  // Rolls back unless committed: runs the undo actions, newest first, then releases the
  // locks and the layers.
  ~CatalogTransaction();
  CatalogTransaction(const CatalogTransaction&) = delete;
  CatalogTransaction& operator=(const CatalogTransaction&) = delete;

  // Locks `name` for this transaction alone: it may Put or Erase it. EBUSY while another
  // transaction holds it in any way.
  Status LockExclusive(const std::string& name);
  // Locks `name` against other transactions' exclusive locks (it stays as it is while
  // this transaction needs it, e.g. as a parent). EBUSY while another holds it exclusively.
  Status LockShared(const std::string& name);
  // Driver layer `id` is being made by this transaction: UsesLayer is true for it until
  // the transaction ends (a concurrent Cleanup leaves it alone).
  void AddLayer(const std::string& id);
  // Runs if the transaction ends without Commit (not under the catalog's mutex).
  void OnRollback(std::function<void()> undo);

  // Staged until Commit. REQUIRES: `name` locked exclusively by this transaction.
  void Put(Record r);
  void Erase(const std::string& name);

  // Applies the staged changes and saves the catalog, all or nothing. Checks: every name
  // changed is locked by this transaction (EINVAL otherwise: a bug), a Put name is not in
  // use (EEXIST) and its parent exists (ENOENT), an Erased name exists (ENOENT) and no
  // remaining snapshot is based on it (EBUSY). On an error nothing changed and the
  // transaction stays open (its destructor rolls back).
  Status Commit();

 private:
  // The checks of Commit against `records` (the catalog's, under its mutex).
  Status Validate(const std::map<std::string, Record>& records) const;

  Catalog& catalog_;
  std::map<std::string, bool> locks_;  // name -> exclusive
  std::vector<std::string> layers_;
  std::vector<std::function<void()>> undo_;
  std::vector<Record> puts_;
  std::vector<std::string> erases_;
  bool committed_ = false;
};

}  // namespace slacker::snapshotter
