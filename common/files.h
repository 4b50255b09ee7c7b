// Small host file helpers used by every module (not privileged: no Os seam needed).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace slacker {

// Crash-safe replace: write `path.tmp-<pid>`, fsync, rename over `path`, fsync the
// directory. With durable=false the fsyncs are skipped (still atomic against a process
// crash, not against power loss).
Status AtomicWriteFile(const std::string& path, std::string_view content, bool durable = true,
                       unsigned mode = 0644);
Result<std::string> ReadFileToString(const std::string& path);
// mkdir -p with `mode` for created directories.
Status MakeDirs(const std::string& path, unsigned mode = 0755);
// Directory entry names (no "." or ".."); ENOENT if the directory does not exist.
Result<std::vector<std::string>> ListDir(const std::string& path);
// Removes a file; a missing file is OK.
Status RemoveFileIfExists(const std::string& path);
// rm -rf without crossing mount points (fails with EBUSY on a mount point inside).
Status RemoveTree(const std::string& path);
bool PathExists(const std::string& path);
// 2*nbytes lowercase hex characters from the kernel's CSPRNG.
std::string RandomHex(size_t nbytes);
std::string JoinPath(std::string_view a, std::string_view b);
// Parses sizes like "50M", "10G", "4096", "1.5GiB" (binary units, as docker's RAMInBytes).
Result<uint64_t> ParseSize(std::string_view text);
// The pieces of `text` between `sep`s, empty ones dropped: "a,,b," gives {"a", "b"}.
std::vector<std::string> SplitNonEmpty(std::string_view text, char sep);

}  // namespace slacker
