// ListFilter: containerd's filter syntax over snapshot infos, table-driven. No root.
#include "snapshotter/list_filter.h"

#include <gtest/gtest.h>

namespace slacker::snapshotter {
namespace {

Info Snap(std::string name, Kind kind, std::string parent, Labels labels) {
  Info i;
  i.name = std::move(name);
  i.kind = kind;
  i.parent = std::move(parent);
  i.labels = std::move(labels);
  return i;
}

const std::vector<Info> kSnaps = {
    Snap("k8s.io/1/sha256:aa", Kind::kCommitted, "", {{"containerd.io/gc.root", "x"}}),
    Snap("k8s.io/2/sha256:bb", Kind::kCommitted, "k8s.io/1/sha256:aa",
         {{"containerd.io/snapshot.ref", "sha256:bb"}, {"team", "blue"}}),
    Snap("k8s.io/3/ctr-1", Kind::kActive, "k8s.io/2/sha256:bb", {{"team", "red"}}),
    Snap("default/4/view", Kind::kView, "k8s.io/2/sha256:bb", {}),
};

std::string Names(const std::vector<std::string>& filters) {
  auto f = ListFilter::Parse(filters);
  if (!f.ok()) return "error: " + f.status().message();
  std::string out;
  for (size_t i = 0; i < kSnaps.size(); ++i) {
    if (f->Match(kSnaps[i])) out += std::to_string(i + 1);
  }
  return out;
}

TEST(ListFilter, SelectsAsContainerdDoes) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "1234"},
      {{""}, "1234"},
      {{"kind==committed"}, "12"},
      {{"kind==active"}, "3"},
      {{"kind==view"}, "4"},
      {{"kind!=committed"}, "34"},
      {{"name==k8s.io/3/ctr-1"}, "3"},
      {{"parent==k8s.io/2/sha256:bb"}, "34"},
      {{"parent"}, "1234"},  // present even when empty, as in containerd's adaptor
      {{"labels.team"}, "23"},
      {{"labels.team==blue"}, "2"},
      {{"labels.team!=blue"}, "134"},  // absent counts as "not equal"
      {{R"(labels."containerd.io/gc.root")"}, "1"},
      {{R"(labels."containerd.io/snapshot.ref"==sha256:bb)"}, "2"},
      {{"kind==committed,labels.team"}, "2"},  // AND
      {{"kind==active", "kind==view"}, "34"},  // OR
      {{"kind==active", ""}, "1234"},          // an empty filter matches all
      {{"name~=^k8s\\.io/"}, "123"},
      {{"name~=/ctr-[0-9]+$/"}, "3"},  // quoted /…/ value
      {{"name~=|^default/|"}, "4"},    // quoted |…| value
      {{R"x(name~="sha256:(aa|bb)")x"}, "12"},
      {{"labels.team ~= ^r"}, "3"},  // spaces around operators
      {{"nosuchfield"}, ""},
      {{"nosuchfield!=x"}, "1234"},
  };
  for (const auto& [filters, want] : cases) {
    std::string joined;
    for (const auto& f : filters) joined += "[" + f + "]";
    EXPECT_EQ(Names(filters), want) << "filters " << joined;
  }
}

TEST(ListFilter, RejectsMalformedFiltersWithTheReason) {
  for (const std::string bad : {"kind==", "==x", "kind==a,", "kind=a", R"(labels."open)", "name~=(",
                                "1abc==x", R"(name=="bad\q")"}) {
    auto f = ListFilter::Parse({bad});
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_EQ(f.status().code(), EINVAL) << bad;
    EXPECT_NE(f.status().message().find("filter"), std::string::npos) << f.status().message();
  }
}

}  // namespace
}  // namespace slacker::snapshotter
