// The graphdriver protocol (PROTOCOL.md) as routes: each handler decodes its request,
// calls the driver and encodes the reply. Malformed requests answer 400, driver errors
// 500 with the driver's message.
#pragma once

#include <cstddef>

#include "common/status.h"
#include "driver/graph_driver.h"
#include "plugin/router.h"

namespace slacker::plugin {

// Adds /Plugin.Activate and every /GraphDriver.<Method> route to `router`. JSON request
// bodies longer than `max_json_body` answer 413.
// REQUIRES: `driver` outlives `router`.
Status AddGraphDriverRoutes(Router& router, driver::GraphDriver& driver, size_t max_json_body);

}  // namespace slacker::plugin
