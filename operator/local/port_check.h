// Whether the ports local mode will hand out are free on this machine, checked before
// any worker starts (and before a group restarts), so that another process on one of
// them is refused by name instead of being mistaken for a group (the supervisor would
// otherwise take a stranger's /readyz for its own rank's).
//
// A port is free when a socket can bind host:port with SO_REUSEADDR, as the servers
// themselves bind: a listener or a bound socket of another process makes it taken,
// connections of ours left in TIME_WAIT do not. The probe socket is closed at once, so
// a port can still be taken between the check and the worker's bind (the worker then
// fails to bind and exits, and its group restarts). Thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "operator/local/local_plan.h"

namespace moeserve::local {

// ok when `host` (an IPv4 or IPv6 literal) can bind `port`; failed_precondition naming
// the port, its use and the flag to change when something else holds it;
// invalid_argument for a host that is not an IP literal.
Status check_port_free(const std::string& host, const PlannedPort& port);
// The first port of `ports` that is not free, as above.
Status check_ports_free(const std::string& host, const std::vector<PlannedPort>& ports);

}  // namespace moeserve::local
