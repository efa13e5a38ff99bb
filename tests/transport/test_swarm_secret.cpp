// transport::SwarmSecret and the CurveZMQ keys derived from it: the file format (a wrong file is a
// clear error), mode 0600 and no silent overwrite, independent derived keys; and real sockets on
// loopback: a member's DEALER talks to a member's ROUTER, while a client with another secret, a
// plain client, or a member against a plain peer is refused at the handshake, at once and saying
// why.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "transport/protocol.h"
#include "transport/request_reply.h"
#include "transport/swarm_secret.h"
#include "transport/zmq_curve.h"
#include "transport/zmq_socket.h"

namespace swarm::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kLong = 10s;  // only reached when something is broken

SwarmSecret NewSecret() { return SwarmSecret::Generate().value(); }

std::string TempPath(const std::string& name) {
  static std::atomic<int> counter{0};
  return testing::TempDir() + "/swarm_secret_" + std::to_string(::getpid()) + "_" +
         std::to_string(++counter) + "_" + name;
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

TEST(SwarmSecretTest, FormatParsesBackAndGeneratesDistinctSecrets) {
  const SwarmSecret a = NewSecret();
  const SwarmSecret b = NewSecret();
  EXPECT_FALSE(a == b);
  const std::string text = a.Format();
  EXPECT_NE(text.find(SwarmSecret::kPrefix), std::string::npos) << text;
  auto parsed = SwarmSecret::Parse(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(*parsed == a);
  EXPECT_EQ(parsed->Fingerprint(), a.Fingerprint());
  EXPECT_NE(a.Fingerprint(), b.Fingerprint());
  EXPECT_EQ(a.Fingerprint().size(), 8u);
}

TEST(SwarmSecretTest, WrongFilesAreClearErrors) {
  const std::string hex(64, 'a');
  struct Case {
    std::string text;
    std::string says;
  };
  const Case cases[] = {
      {"", "no swarm secret"},
      {"# only a comment\n\n", "no swarm secret"},
      {"-----BEGIN PRIVATE KEY-----\nMIIE...\n", "not a swarm secret"},
      {"swarm-secret-v2:" + hex + "\n", "another version"},
      {"swarm-secret-v1:abcd\n", "hex digits"},
      {"swarm-secret-v1:" + std::string(63, 'a') + "g\n", "not hexadecimal"},
      {"swarm-secret-v1:" + hex + "\nswarm-secret-v1:" + hex + "\n", "more than one"},
  };
  for (const Case& c : cases) {
    auto parsed = SwarmSecret::Parse(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.says), absl::string_view::npos)
        << parsed.status() << " for " << c.text;
  }
  // Surrounding comments, blank lines and whitespace are fine.
  EXPECT_TRUE(SwarmSecret::Parse("# mine\n\n  swarm-secret-v1:" + hex + "  \n").ok());

  // Load names the file and says how to make one.
  const std::string path = TempPath("wrong");
  WriteText(path, "hello\n");
  auto loaded = SwarmSecret::Load(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find(path), absl::string_view::npos) << loaded.status();
  EXPECT_NE(loaded.status().message().find("swarm secret -o"), absl::string_view::npos);
  auto missing = SwarmSecret::Load(path + ".absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  WriteText(path, std::string(10000, 'x'));
  EXPECT_FALSE(SwarmSecret::Load(path).ok());
  std::remove(path.c_str());
}

TEST(SwarmSecretTest, SavesOwnerOnlyAndRefusesToOverwrite) {
  const std::string path = TempPath("saved");
  const SwarmSecret a = NewSecret();
  ASSERT_TRUE(a.Save(path, /*overwrite=*/false).ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = SwarmSecret::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(*loaded == a);

  const SwarmSecret b = NewSecret();
  const absl::Status again = b.Save(path, /*overwrite=*/false);
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;
  EXPECT_NE(again.message().find("--force"), absl::string_view::npos);
  EXPECT_TRUE(SwarmSecret::Load(path).value() == a);  // untouched

  ::chmod(path.c_str(), 0644);
  ASSERT_TRUE(b.Save(path, /*overwrite=*/true).ok());
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(SwarmSecret::Load(path).value() == b);
  std::remove(path.c_str());
}

TEST(SwarmSecretTest, DerivedKeysAreDeterministicAndIndependent) {
  const SwarmSecret a = NewSecret();
  const SwarmSecret b = NewSecret();
  EXPECT_EQ(a.Derive("x", 32), a.Derive("x", 32));
  EXPECT_NE(a.Derive("x", 32), a.Derive("y", 32));
  EXPECT_NE(a.Derive("x", 32), b.Derive("x", 32));
  EXPECT_EQ(a.Derive("x", 20).size(), 20u);

  auto ka = DeriveCurveKeys(a);
  auto ka2 = DeriveCurveKeys(SwarmSecret::Parse(a.Format()).value());
  auto kb = DeriveCurveKeys(b);
  ASSERT_TRUE(ka.ok() && ka2.ok() && kb.ok()) << ka.status();
  for (const CurveKeyPair* pair : {&ka->server, &ka->client}) {
    EXPECT_TRUE(ValidateCurveKey(pair->public_key).ok());
    EXPECT_TRUE(ValidateCurveKey(pair->secret_key).ok());
    EXPECT_EQ(CurvePublicKeyFromSecret(pair->secret_key).value(), pair->public_key);
  }
  EXPECT_EQ(ka->server.secret_key, ka2->server.secret_key);
  EXPECT_EQ(ka->client.public_key, ka2->client.public_key);
  const std::set<std::string> keys = {ka->server.secret_key, ka->client.secret_key,
                                      kb->server.secret_key, kb->client.secret_key};
  EXPECT_EQ(keys.size(), 4u);
}

// A ROUTER answering Pings on its own thread, a member of `secret`'s swarm (or plain without).
class Peer {
 public:
  explicit Peer(const SwarmSecret* secret) {
    ServerOptions options;
    if (secret != nullptr) {
      const SwarmCurveKeys keys = DeriveCurveKeys(*secret).value();
      authenticator_ = ZapAuthenticator::Start(context_, {keys.client.public_key}).value();
      options.curve = SwarmCurveServer(keys, authenticator_.get());
      member_key_ = keys.client.public_key;
    }
    auto server = RouterServer::Bind(context_, "tcp://127.0.0.1:0", options);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return;
    endpoint_ = (*server)->endpoint();
    thread_ = std::thread([this, server = std::move(*server)]() mutable {
      while (!stop_.load()) {
        auto routed = server->Receive(20ms);
        if (!routed.ok() || !routed->message.ok()) continue;
        auto decoded = DecodeMessage(*routed->message);
        if (!decoded.ok()) continue;
        if (auto* ping = std::get_if<Ping>(&decoded->body)) {
          // Only the swarm's members get through, and they carry the members' key.
          if (!member_key_.empty() && routed->user_id != member_key_) continue;
          (void)server->Send(routed->routing_id,
                             EncodeMessage(decoded->request_id, Pong{ping->nonce, 0}).value());
        }
      }
    });
  }
  ~Peer() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }
  ZapAuthenticator* authenticator() { return authenticator_.get(); }

 private:
  zmq::context_t context_{1};
  std::unique_ptr<ZapAuthenticator> authenticator_;
  std::string member_key_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Pings `peer` as a member of `secret`'s swarm (or as a plain client without one).
absl::StatusOr<DecodedMessage> PingAs(const SwarmSecret* secret, const Peer& peer,
                                      bool watch_disconnects = false) {
  zmq::context_t context(1);
  ClientOptions options;
  options.watch_disconnects = watch_disconnects;
  if (secret != nullptr) options.curve = SwarmCurveClient(DeriveCurveKeys(*secret).value());
  auto client = DealerClient::Connect(context, peer.endpoint(), options);
  if (!client.ok()) return client.status();
  return Call(**client, EncodeMessage(7, Ping{42, 0}).value(), 7,
              {.deadline = Clock::now() + kLong, .resend_interval = 300ms});
}

TEST(SwarmCurveTest, MembersTalk) {
  const SwarmSecret secret = NewSecret();
  Peer peer(&secret);
  for (bool watch : {false, true}) {
    auto reply = PingAs(&secret, peer, watch);
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(std::get<Pong>(reply->body).nonce, 42u);
  }
}

// Each outsider is refused long before the deadline, with a reason that points at the secret.
void ExpectRefused(const SwarmSecret* client_secret, const Peer& peer, const std::string& says) {
  for (bool watch : {false, true}) {
    const auto start = Clock::now();
    auto reply = PingAs(client_secret, peer, watch);
    const auto took = Clock::now() - start;
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kPermissionDenied) << reply.status();
    EXPECT_NE(reply.status().message().find("handshake was refused"), absl::string_view::npos)
        << reply.status();
    EXPECT_NE(reply.status().message().find(says), absl::string_view::npos) << reply.status();
    EXPECT_LT(took, kLong / 2) << reply.status();
  }
}

TEST(SwarmCurveTest, ClientWithAnotherSecretIsRefused) {
  const SwarmSecret secret = NewSecret();
  const SwarmSecret other = NewSecret();
  Peer peer(&secret);
  ExpectRefused(&other, peer, "--swarm-secret");
  // The peer still serves its members.
  EXPECT_TRUE(PingAs(&secret, peer).ok());
}

TEST(SwarmCurveTest, PlainClientIsRefusedAndToldToUseTheSecret) {
  const SwarmSecret secret = NewSecret();
  Peer peer(&secret);
  ExpectRefused(nullptr, peer, "pass --swarm-secret");
  EXPECT_TRUE(PingAs(&secret, peer).ok());
}

TEST(SwarmCurveTest, MemberAgainstAPlainPeerIsToldItDoesNotEncrypt) {
  const SwarmSecret secret = NewSecret();
  Peer plain(nullptr);
  ExpectRefused(&secret, plain, "does not encrypt");
  EXPECT_TRUE(PingAs(nullptr, plain).ok());
}

// Right server key, wrong client key (someone who learnt the server's public key): ZAP refuses.
TEST(SwarmCurveTest, UnknownClientKeyIsRefusedByTheAuthenticator) {
  const SwarmSecret secret = NewSecret();
  Peer peer(&secret);
  const SwarmCurveKeys keys = DeriveCurveKeys(secret).value();
  const CurveKeyPair stranger = GenerateCurveKeyPair().value();
  zmq::context_t context(1);
  ClientOptions options;
  options.curve = CurveClientOptions{.server_public_key = keys.server.public_key,
                                     .public_key = stranger.public_key,
                                     .secret_key = stranger.secret_key};
  auto client = DealerClient::Connect(context, peer.endpoint(), options);
  ASSERT_TRUE(client.ok()) << client.status();
  auto reply =
      Call(**client, EncodeMessage(9, Ping{1, 0}).value(), 9, {.deadline = Clock::now() + kLong});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kPermissionDenied) << reply.status();
  EXPECT_NE(reply.status().message().find("did not admit"), absl::string_view::npos)
      << reply.status();
  EXPECT_GE(peer.authenticator()->denied_count(), 1u);
}

}  // namespace
}  // namespace swarm::transport
