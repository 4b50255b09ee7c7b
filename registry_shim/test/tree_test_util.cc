#include "registry_shim/test/tree_test_util.h"

#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace slacker::registry_shim::testing {

ScratchDir::ScratchDir() {
  char tmpl[] = "/tmp/slacker-shim-XXXXXX";
  char* p = ::mkdtemp(tmpl);
  EXPECT_NE(p, nullptr);
  path_ = p != nullptr ? p : "/nonexistent";
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

TarEntry FileEntry(std::string name, uint32_t mode) {
  TarEntry e;
  e.name = std::move(name);
  e.mode = mode;
  e.mtime_sec = 1600000000;
  return e;
}

TarEntry DirEntry(std::string name, uint32_t mode) {
  TarEntry e = FileEntry(std::move(name), mode);
  e.typeflag = kTarDirectory;
  return e;
}

TarEntry SymlinkEntry(std::string name, std::string target) {
  TarEntry e = FileEntry(std::move(name), 0777);
  e.typeflag = kTarSymlink;
  e.linkname = std::move(target);
  return e;
}

TarEntry HardlinkEntry(std::string name, std::string target) {
  TarEntry e = FileEntry(std::move(name));
  e.typeflag = kTarHardlink;
  e.linkname = std::move(target);
  return e;
}

std::string MakeTar(const std::vector<std::pair<TarEntry, std::string>>& entries,
                    size_t record_size) {
  StringSink out;
  TarWriter w(out);
  for (const auto& [e, body] : entries) {
    Status s = w.Add(e, body);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_TRUE(w.Finish(record_size).ok());
  return out.data();
}

std::string ReadSource(ByteSource& src, std::string* error) {
  std::string out;
  std::string buf(7919, '\0');  // odd size: exercises reads across record boundaries
  for (;;) {
    auto n = src.Read(buf.data(), buf.size());
    if (!n.ok()) {
      *error = n.status().ToString();
      return out;
    }
    if (*n == 0) return out;
    out.append(buf.data(), *n);
  }
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFileOrDie(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  EXPECT_TRUE(out.good()) << path;
}

std::string Shell(const std::string& command, int* status) {
  FILE* f = ::popen(command.c_str(), "r");
  if (f == nullptr) {
    *status = -1;
    return "";
  }
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int rc = ::pclose(f);
  *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}


}  // namespace slacker::registry_shim::testing
