// A peer record as the DHT delivers it: an OpenDHT value stored by anyone. The check every
// record passes before a registry snapshot holds it; implemented in dht_registry.cpp, declared
// here so that the fuzz target reaches it. A pure function: any thread.
#pragma once

#include <opendht/infohash.h>
#include <opendht/value.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "registry/peer_record.h"
#include "registry/record_seal.h"

namespace swarm::registry {

// A value fetched from the DHT under `key`: signed, signature valid, (private swarm, `seal` not
// null) opens with the swarm's seal bound to `key`, signed by the key of the peer the record
// names, a well-formed record (ParsePeerRecord) for `model_id`, not expired at `now_ms`,
// expiring within `max_lifetime_ms`. PermissionDenied for a signature or seal problem,
// InvalidArgument / OutOfRange otherwise.
absl::StatusOr<PeerRecord> VerifyPeerRecordValue(const dht::Value& v, const dht::InfoHash& key,
                                                 const RecordSeal* seal,
                                                 const std::string& model_id, int64_t now_ms,
                                                 int64_t max_lifetime_ms);

}  // namespace swarm::registry
