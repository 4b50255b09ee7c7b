// What a SlackerDriver on FakeOs starts from, shared by the driver's fake-OS tests
// (driver_fake_test.cc) and the GraphDriver contract suite
// (plugin/test/graph_driver_contract_test.cc): a scratch directory, a local store in it,
// and the options of a default install with small layer files.
#pragma once

#include <stdlib.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "driver/slacker_driver.h"
#include "os/os.h"
#include "storage_backend/local_backend.h"

namespace slacker::driver {

// A fresh directory under /tmp named `prefix` + a random suffix; "" if it cannot be made.
inline std::string MakeScratchDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + ".XXXXXX";
  return ::mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
}

// The store of a fake-OS driver: `<dir>/store`, opened as host "hostA".
inline Result<std::unique_ptr<storage_backend::Backend>> OpenScratchStore(os::Os& os,
                                                                          const std::string& dir) {
  return storage_backend::OpenLocalStore(os, dir + "/store", "hostA");
}

// A default install's options (the store's key "store-key", no opt-out) with host state
// in `<dir>/state`, and small layer files: FakeOs copies bytes for FICLONE.
inline DriverOptions ScratchDriverOptions(const std::string& dir) {
  DriverOptions o;
  o.state_dir = dir + "/state";
  o.host_id = "hostA";
  o.default_size = 32ull << 20;
  o.trust = registry_shim::ReferenceTrust{{"store-key"}, false};
  return o;
}

}  // namespace slacker::driver
