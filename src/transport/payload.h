// Payload: an immutable, shared byte buffer for wire frames, so a received ZeroMQ frame or an
// encoded tensor moves between the socket and the codec without copies. Copies share the bytes;
// the owner (a vector, a string, a zmq message) lives until the last copy is gone. Any thread may
// read a Payload; the bytes never change after construction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace swarm::transport {

class Payload {
 public:
  Payload() = default;

  static Payload Copy(std::span<const uint8_t> bytes) {
    return FromVector(std::vector<uint8_t>(bytes.begin(), bytes.end()));
  }
  static Payload Copy(std::string_view bytes) {
    return Copy(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
  static Payload FromVector(std::vector<uint8_t> bytes) {
    auto owner = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
    std::span<const uint8_t> view(owner->data(), owner->size());
    return Payload(std::move(owner), view);
  }
  static Payload FromString(std::string bytes) {
    auto owner = std::make_shared<const std::string>(std::move(bytes));
    std::span<const uint8_t> view(reinterpret_cast<const uint8_t*>(owner->data()), owner->size());
    return Payload(std::move(owner), view);
  }
  // Wraps bytes that `owner` keeps alive (e.g. a received zmq::message_t); no copy.
  static Payload Adopt(std::shared_ptr<const void> owner, std::span<const uint8_t> bytes) {
    return Payload(std::move(owner), bytes);
  }

  std::span<const uint8_t> bytes() const { return bytes_; }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  std::string_view view() const {
    return std::string_view(reinterpret_cast<const char*>(bytes_.data()), bytes_.size());
  }
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  Payload(std::shared_ptr<const void> owner, std::span<const uint8_t> bytes)
      : owner_(std::move(owner)), bytes_(bytes) {}

  std::shared_ptr<const void> owner_;
  std::span<const uint8_t> bytes_;
};

}  // namespace swarm::transport
