// containerd's filter syntax (github.com/containerd/containerd/filters) for the
// snapshots service's List: what `ctr snapshots ls` callers, containerd's remote
// snapshotter helpers and other direct clients of the socket send in
// ListSnapshotsRequest.filters.
//
//   filters   : any one of them matches (OR); none = everything
//   filter    := selector ("," selector)*                 (AND)
//   selector  := fieldpath [("==" | "!=" | "~=") value]   (no operator: field present)
//   fieldpath := field ("." field)*
//   field     := quoted | [A-Za-z][A-Za-z0-9_]*
//   value     := quoted | [^\s,]+
//   quoted    := "…" (with \" \\ \n \t escapes) | /…/ | |…|   (\/ \| escape the delimiter)
//
// Fields of a snapshot, as containerd's metadata adaptor (metadata/adaptors.go) has them:
// `kind` (active, view, committed), `name`, `parent`, `labels.<key>` (the rest of the
// path joined with "."; quote keys with dots or slashes: labels."containerd.io/gc.root").
// `~=` is a regular expression (ECMAScript, std::regex; containerd's is RE2: the
// common subset agrees), matched anywhere in the value as Go's MatchString does.
#pragma once

#include <regex>
#include <string>
#include <vector>

#include "common/status.h"
#include "snapshotter/snapshot_service.h"

namespace slacker::snapshotter {

class ListFilter {
 public:
  // EINVAL with the position and reason for a malformed filter or regular expression.
  static Result<ListFilter> Parse(const std::vector<std::string>& filters);
  bool Match(const Info& info) const;

 private:
  enum class Op { kPresent, kEqual, kNotEqual, kMatches };
  struct Selector {
    std::vector<std::string> path;
    Op op = Op::kPresent;
    std::string value;
    std::regex re;
  };
  static Result<std::vector<Selector>> ParseOne(const std::string& s);
  static bool MatchSelector(const Selector& sel, const Info& info);
  std::vector<std::vector<Selector>> any_;  // empty: match all
};

}  // namespace slacker::snapshotter
