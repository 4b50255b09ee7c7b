#include "snapshotter/list_filter.h"

#include <cctype>

namespace slacker::snapshotter {
namespace {

class Scanner {
 public:
  explicit Scanner(const std::string& s) : s_(s) {}
  void SkipSpace() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool AtEnd() const { return pos_ >= s_.size(); }
  char Peek() const { return AtEnd() ? '\0' : s_[pos_]; }
  bool Consume(const char* tok) {
    const std::string t(tok);
    if (s_.compare(pos_, t.size(), t) != 0) return false;
    pos_ += t.size();
    return true;
  }
  Status Error(const std::string& why) const {
    return Errorf(EINVAL, "filter {:?}: {} at offset {}", s_, why, pos_);
  }
  static bool IsQuote(char c) { return c == '"' || c == '/' || c == '|'; }

  // A quoted string; REQUIRES IsQuote(Peek()).
  Result<std::string> Quoted() {
    const char q = s_[pos_++];
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != q) {
      char c = s_[pos_++];
      if (c == '\\') {
        if (pos_ >= s_.size()) break;
        c = s_[pos_++];
        if (q == '"') {
          switch (c) {
            case 'n':
              c = '\n';
              break;
            case 't':
              c = '\t';
              break;
            case 'r':
              c = '\r';
              break;
            case '"':
            case '\\':
              break;
            default:
              return Error(std::string("unsupported escape \\") + c);
          }
        } else if (c != q) {
          out += '\\';  // /…/ and |…| keep other escapes for the regular expression
        }
      }
      out += c;
    }
    if (pos_ >= s_.size()) return Error("unterminated quoted string");
    ++pos_;
    return out;
  }
  Result<std::string> Field() {
    if (IsQuote(Peek())) return Quoted();
    const size_t start = pos_;
    if (!std::isalpha(static_cast<unsigned char>(Peek()))) return Error("expected a field name");
    while (pos_ < s_.size() &&
           (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_'))
      ++pos_;
    return s_.substr(start, pos_ - start);
  }
  Result<std::string> Value() {
    if (IsQuote(Peek())) return Quoted();
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' &&
           !std::isspace(static_cast<unsigned char>(s_[pos_])))
      ++pos_;
    if (pos_ == start) return Error("expected a value");
    return s_.substr(start, pos_ - start);
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;
};

// The adaptor of containerd's metadata/adaptors.go (adaptSnapshot).
bool Field(const Info& info, const std::vector<std::string>& path, std::string* value) {
  if (path.empty()) return false;
  const std::string& f = path[0];
  if (f == "kind") {
    *value = info.kind == Kind::kActive ? "active"
             : info.kind == Kind::kView ? "view"
                                        : "committed";
    return true;
  }
  if (f == "name") return *value = info.name, true;
  if (f == "parent") return *value = info.parent, true;
  if (f == "labels") {
    std::string key;
    for (size_t i = 1; i < path.size(); ++i) key += (i > 1 ? "." : "") + path[i];
    auto it = info.labels.find(key);
    if (it == info.labels.end()) return false;
    return *value = it->second, true;
  }
  return false;
}

}  // namespace

Result<std::vector<ListFilter::Selector>> ListFilter::ParseOne(const std::string& s) {
  Scanner sc(s);
  std::vector<Selector> out;
  for (;;) {
    Selector sel;
    sc.SkipSpace();
    for (;;) {
      SLACKER_ASSIGN_OR_RETURN(std::string f, sc.Field());
      sel.path.push_back(std::move(f));
      if (!sc.Consume(".")) break;
    }
    sc.SkipSpace();
    if (sc.Consume("==")) {
      sel.op = Op::kEqual;
    } else if (sc.Consume("!=")) {
      sel.op = Op::kNotEqual;
    } else if (sc.Consume("~=")) {
      sel.op = Op::kMatches;
    }
    if (sel.op != Op::kPresent) {
      sc.SkipSpace();
      SLACKER_ASSIGN_OR_RETURN(sel.value, sc.Value());
      if (sel.op == Op::kMatches) {
        // std::regex reports a bad pattern by exception: the one place it is caught.
        try {
          sel.re = std::regex(sel.value, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          return sc.Error("bad regular expression " + sel.value + ": " + e.what());
        }
      }
    }
    out.push_back(std::move(sel));
    sc.SkipSpace();
    if (sc.AtEnd()) return out;
    if (!sc.Consume(",")) return sc.Error("expected ',' or an operator (==, !=, ~=)");
  }
}

Result<ListFilter> ListFilter::Parse(const std::vector<std::string>& filters) {
  ListFilter f;
  for (const auto& s : filters) {
    if (s.empty()) {  // containerd: an empty filter matches everything
      f.any_.clear();
      return f;
    }
    SLACKER_ASSIGN_OR_RETURN(auto sels, ParseOne(s));
    f.any_.push_back(std::move(sels));
  }
  return f;
}

bool ListFilter::MatchSelector(const Selector& sel, const Info& info) {
  std::string value;
  const bool present = Field(info, sel.path, &value);
  switch (sel.op) {
    case Op::kPresent:
      return present;
    case Op::kEqual:
      return present && value == sel.value;
    case Op::kNotEqual:
      return value != sel.value;
    case Op::kMatches:
      return std::regex_search(value, sel.re);
  }
  return false;
}

bool ListFilter::Match(const Info& info) const {
  if (any_.empty()) return true;
  for (const auto& conj : any_) {
    bool all = true;
    for (const auto& sel : conj) {
      if (!MatchSelector(sel, info)) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

}  // namespace slacker::snapshotter
