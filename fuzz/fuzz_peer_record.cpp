// libFuzzer target: peer records as the DHT delivers them (registry/peer_record.h,
// registry/peer_record_value.h). Byte 0 picks the input's form:
//   even: a packed OpenDHT value (msgpack) from anyone, through VerifyPeerRecordValue: the
//         signature check, then the record decoder;
//   odd:  record bytes through ParsePeerRecord; an accepted record must serialize back to a
//         record equal to it, and, published under this process's key as a peer would (signed,
//         packed, unpacked), must pass VerifyPeerRecordValue, and fail it with one byte changed.
#include <opendht/crypto.h>
#include <opendht/value.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>

#include "registry/dht_registry.h"
#include "registry/peer_record.h"
#include "registry/peer_record_value.h"

namespace {

namespace r = swarm::registry;

constexpr int64_t kNowMs = 1'700'000'000'000;
constexpr int64_t kMaxLifetimeMs = 10 * 60 * 1000;
const std::string kModel = "stories260K";

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_peer_record: %s\n", what);
    std::abort();
  }
}

// One RSA key for the whole run (1024 bits: fast to make and to sign with).
const dht::crypto::PrivateKey& Key() {
  static const auto* key = new dht::crypto::PrivateKey(dht::crypto::PrivateKey::generate(1024));
  return *key;
}

r::PeerId KeyPeerId() {
  const dht::InfoHash id = Key().getPublicKey().getId();
  std::array<uint8_t, r::PeerId::kSize> bytes{};
  std::memcpy(bytes.data(), id.data(), bytes.size());
  return r::PeerId(bytes);
}

void FromNetwork(std::string_view packed) {
  std::shared_ptr<dht::Value> value;
  try {
    // What OpenDHT does with a value in a reply: unpack, then hand it to our callback. msgpack
    // allocates for the element counts a header declares, before reading the elements (a map of
    // 2^32 entries asks for 256 GiB); no element takes less than a byte, so counts beyond the
    // input's size are refused up front. The DHT's own packet decoding is OpenDHT's.
    const size_t n = packed.size();
    msgpack::object_handle handle = msgpack::unpack(packed.data(), n, nullptr, nullptr,
                                                    msgpack::unpack_limit(n, n, n, n, n, 64));
    value = std::make_shared<dht::Value>(handle.get());
  } catch (const std::exception&) {
    return;  // OpenDHT drops a value it cannot unpack
  }
  (void)r::VerifyPeerRecordValue(*value, dht::InfoHash(), nullptr, kModel, kNowMs, kMaxLifetimeMs);
}

void FromRecordBytes(std::string_view bytes) {
  auto record = r::ParsePeerRecord(bytes);
  if (!record.ok()) return;
  Check(r::ValidatePeerRecord(*record).ok(), "ParsePeerRecord accepted an invalid record");
  auto again = r::ParsePeerRecord(r::SerializePeerRecord(*record));
  Check(again.ok() && *again == *record, "a parsed record does not serialize back to itself");

  // Published by its owner: it must verify, and one changed byte must make it fail.
  record->peer_id = KeyPeerId();
  record->model_id = kModel;
  record->expiry_unix_ms = kNowMs + 1000;
  const std::string serialized = r::SerializePeerRecord(*record);
  dht::Value value(dht::ValueType::USER_DATA.id, dht::Blob(serialized.begin(), serialized.end()));
  value.user_type = std::string(r::kPeerRecordUserType);
  value.sign(Key());
  const dht::Blob packed = value.getPacked();
  msgpack::object_handle handle =
      msgpack::unpack(reinterpret_cast<const char*>(packed.data()), packed.size());
  dht::Value received(handle.get());
  auto verified =
      r::VerifyPeerRecordValue(received, dht::InfoHash(), nullptr, kModel, kNowMs, kMaxLifetimeMs);
  Check(verified.ok() && *verified == *record, "a record signed by its peer does not verify");
  received.data[bytes.size() % received.data.size()] ^= 1;
  Check(
      !r::VerifyPeerRecordValue(received, dht::InfoHash(), nullptr, kModel, kNowMs, kMaxLifetimeMs)
           .ok(),
      "a record changed after signing still verifies");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    FromNetwork(rest);
  } else {
    FromRecordBytes(rest);
  }
  return 0;
}
