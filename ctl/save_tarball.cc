#include "ctl/save_tarball.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <set>

#include "common/fd.h"
#include "common/files.h"
#include "ctl/file_stream.h"
#include "ctl/image.h"
#include "registry_shim/tar.h"

namespace slacker::ctl {

using registry_shim::TarEntry;

namespace {
bool SafeName(const std::string& name) {
  if (name.empty() || name.front() == '/') return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0) return false;
    start = end + 1;
  }
  return true;
}
}  // namespace

Status ExtractSaveTarball(const std::string& tarball, const std::string& dir) {
  UniqueFd in(::open(tarball.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return Status::FromErrno(errno, "open " + tarball);
  FdSource src(in.get());
  registry_shim::TarReader reader(src);
  TarEntry e;
  for (;;) {
    SLACKER_ASSIGN_OR_RETURN(bool more, reader.Next(&e));
    if (!more) break;
    if (!e.IsRegular()) continue;
    if (!SafeName(e.name)) return Errorf(EINVAL, "{}: entry {} escapes the tarball", tarball, e.name);
    std::string path = JoinPath(dir, e.name);
    SLACKER_RETURN_IF_ERROR(MakeDirs(path.substr(0, path.rfind('/'))));
    UniqueFd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!out.valid()) return Status::FromErrno(errno, "create " + path);
    FdSink sink(out.get());
    char buf[1 << 16];
    for (;;) {
      SLACKER_ASSIGN_OR_RETURN(size_t n, reader.ReadBody(buf, sizeof buf));
      if (n == 0) break;
      SLACKER_RETURN_IF_ERROR(sink.Write(buf, n).Context("write " + path));
    }
  }
  return Status::Ok();
}

Status WriteSaveTarball(const std::string& out_path, const std::string& config_bytes,
                        const std::string& repo_tag, const std::vector<SaveLayer>& layers) {
  std::string tmp = out_path + ".tmp-" + RandomHex(4);
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out.valid()) return Status::FromErrno(errno, "create " + tmp);
  FdSink sink(out.get());
  registry_shim::TarWriter tar(sink);

  auto add = [&](const std::string& name, char type, std::string_view body) {
    TarEntry e;
    e.name = name;
    e.typeflag = type;
    e.mode = type == registry_shim::kTarDirectory ? 0755 : 0644;
    return tar.Add(e, body);
  };
  SaveManifest m;
  m.config = Sha256Hex(config_bytes) + ".json";
  m.repo_tags = {repo_tag};
  std::set<std::string> written;
  Status s;
  for (const auto& l : layers) {
    std::string hex = l.diff_id.substr(l.diff_id.find(':') + 1);
    m.layers.push_back(hex + "/layer.tar");
    if (!written.insert(hex).second) continue;  // the same tar twice (e.g. equal references)
    s = add(hex + "/", registry_shim::kTarDirectory, {});
    if (s.ok() && l.file.empty()) s = add(hex + "/layer.tar", registry_shim::kTarRegular, l.bytes);
    if (s.ok() && !l.file.empty()) {
      auto mapped = MappedFile::Open(l.file);
      s = mapped.ok() ? add(hex + "/layer.tar", registry_shim::kTarRegular, mapped->bytes()) : mapped.status();
    }
    if (!s.ok()) break;
  }
  if (s.ok()) s = add(m.config, registry_shim::kTarRegular, config_bytes);
  if (s.ok()) s = add("manifest.json", registry_shim::kTarRegular, EncodeSaveManifest(m));
  if (s.ok()) s = tar.Finish();
  if (s.ok() && ::fsync(out.get()) != 0) s = Status::FromErrno(errno, "fsync " + tmp);
  if (s.ok() && ::rename(tmp.c_str(), out_path.c_str()) != 0) s = Status::FromErrno(errno, "rename to " + out_path);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s.Context("write docker-save tarball " + out_path);
  }
  return Status::Ok();
}

}  // namespace slacker::ctl
