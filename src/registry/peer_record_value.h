// A peer record as the DHT delivers it: an OpenDHT value stored by anyone. The check every
// record passes before a registry snapshot holds it; implemented in dht_registry.cpp, declared
// here so that the fuzz target reaches it. A pure function: any thread.
#pragma once

#include <opendht/value.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "registry/peer_record.h"

namespace swarm::registry {

// Signed, signature valid, signed by the key of the peer the record names, a well-formed record
// (ParsePeerRecord) for `model_id`, not expired at `now_ms`, expiring within `max_lifetime_ms`.
// PermissionDenied for a signature problem, InvalidArgument / OutOfRange otherwise.
absl::StatusOr<PeerRecord> VerifyPeerRecordValue(const dht::Value& v, const std::string& model_id,
                                                 int64_t now_ms, int64_t max_lifetime_ms);

}  // namespace swarm::registry
