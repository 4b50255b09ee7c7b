// A standard layer tar built from two full trees (what export turns a reference layer
// into): moby's archive.ExportChanges, over driver::ComputeChanges.
#pragma once

#include <string>

#include "common/io.h"
#include "common/status.h"

namespace slacker::ctl {

// Writes to `out` the tar that, applied onto `old_root`'s tree ("" = empty), gives
// `new_root`'s: deleted paths as `.wh.<name>` whiteouts; added and modified paths as
// entries (regular files, dirs, symlinks, devices, fifos; a second name of an inode
// already written becomes a hardlink entry) with mode, uid, gid, mtime and xattrs (PAX
// SCHILY.xattr). Entries are in path order, parents first.
Status WriteChangesTar(const std::string& new_root, const std::string& old_root, ByteSink& out);

}  // namespace slacker::ctl
