#include "common/nfs_url.h"

namespace slacker {

Result<NfsUrl> ParseNfsUrl(std::string_view url) {
  if (!url.starts_with("nfs://")) return Errorf(EINVAL, "{:?} is not nfs://HOST/EXPORT", url);
  std::string_view rest = url.substr(6);
  rest = rest.substr(0, rest.find('?'));
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return Errorf(EINVAL, "{:?} is not nfs://HOST/EXPORT", url);
  NfsUrl out{std::string(rest.substr(0, slash)), std::string(rest.substr(slash))};
  while (out.export_path.size() > 1 && out.export_path.back() == '/') out.export_path.pop_back();
  return out;
}

}  // namespace slacker
