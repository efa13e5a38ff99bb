#include "transport/swarm_secret.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "transport/capability.h"

namespace swarm::transport {
namespace {

// A secret file is one line and a comment; anything much larger is not one.
constexpr size_t kMaxFileBytes = 4096;
constexpr char kHowToMake[] = "make one with `swarm secret -o FILE`";
// Every derived key is keyed BLAKE2b of "swarm.v1/" + purpose.
constexpr std::string_view kPurposePrefix = "swarm.v1/";

absl::StatusOr<CurveKeyPair> SeededCurvePair(const SwarmSecret& secret, std::string_view purpose) {
  const std::vector<uint8_t> seed = secret.Derive(purpose, crypto_box_SEEDBYTES);
  uint8_t pk[crypto_box_PUBLICKEYBYTES];
  uint8_t sk[crypto_box_SECRETKEYBYTES];
  static_assert(crypto_box_PUBLICKEYBYTES == 32 && crypto_box_SECRETKEYBYTES == 32);
  if (crypto_box_seed_keypair(pk, sk, seed.data()) != 0) {
    return absl::InternalError("crypto_box_seed_keypair failed");
  }
  char pk_z85[41];
  char sk_z85[41];
  const bool encoded =
      zmq_z85_encode(pk_z85, pk, sizeof pk) != nullptr && zmq_z85_encode(sk_z85, sk, sizeof sk);
  sodium_memzero(sk, sizeof sk);
  if (!encoded) return absl::InternalError("Z85 encoding of a CURVE key failed");
  CurveKeyPair pair{std::string(pk_z85, 40), std::string(sk_z85, 40)};
  sodium_memzero(sk_z85, sizeof sk_z85);
  return pair;
}

}  // namespace

SwarmSecret::~SwarmSecret() { sodium_memzero(bytes_.data(), bytes_.size()); }

absl::StatusOr<SwarmSecret> SwarmSecret::Generate() {
  InitSodium();  // transport/capability.h
  SwarmSecret secret;
  randombytes_buf(secret.bytes_.data(), secret.bytes_.size());
  return secret;
}

absl::StatusOr<SwarmSecret> SwarmSecret::Parse(std::string_view text) {
  std::string_view found;
  int secrets = 0;
  for (absl::string_view raw : absl::StrSplit(ToAbsl(text), '\n')) {
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line.front() == '#') continue;
    if (!absl::StartsWith(line, "swarm-secret-")) {
      return absl::InvalidArgumentError(absl::StrCat("not a swarm secret (expected a line \"",
                                                     ToAbsl(kPrefix), "<64 hex digits>\")"));
    }
    if (!absl::StartsWith(line, ToAbsl(kPrefix))) {
      return absl::InvalidArgumentError(
          absl::StrCat("a swarm secret of another version (\"", line.substr(0, line.find(':')),
                       "\"); this build reads ", ToAbsl(kPrefix.substr(0, kPrefix.size() - 1))));
    }
    found = std::string_view(line.data(), line.size());
    ++secrets;
  }
  if (secrets == 0) {
    return absl::InvalidArgumentError(absl::StrCat("no swarm secret in it (expected a line \"",
                                                   ToAbsl(kPrefix), "<64 hex digits>\")"));
  }
  if (secrets > 1) return absl::InvalidArgumentError("more than one swarm secret in it");
  const std::string_view hex = found.substr(kPrefix.size());
  if (hex.size() != 2 * kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("the secret has ", hex.size(), " hex digits, expected ", 2 * kSize));
  }
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("the secret is not hexadecimal");
    }
  }
  SwarmSecret secret;
  const std::string bytes = absl::HexStringToBytes(ToAbsl(hex));
  std::memcpy(secret.bytes_.data(), bytes.data(), kSize);
  return secret;
}

absl::StatusOr<SwarmSecret> SwarmSecret::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read the swarm secret ", path, ": ",
                                            std::strerror(errno), " (", kHowToMake, ")"));
  }
  std::string text(kMaxFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a swarm secret file: too large (", kHowToMake, ")"));
  }
  auto secret = Parse(text);
  sodium_memzero(text.data(), text.size());
  if (!secret.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a usable swarm secret file: ", secret.status().message(), " (",
                     kHowToMake, ")"));
  }
  return secret;
}

std::string SwarmSecret::Format() const {
  return absl::StrCat(
      "# Swarm secret: whoever holds this file can join this private swarm, read its records and\n"
      "# generate through it. Keep it private (mode 0600) and give it only to the swarm's "
      "members.\n",
      ToAbsl(kPrefix),
      absl::BytesToHexString(
          absl::string_view(reinterpret_cast<const char*>(bytes_.data()), bytes_.size())),
      "\n");
}

absl::Status SwarmSecret::Save(const std::string& path, bool overwrite) const {
  std::string text = Format();
  // A new file is created exclusively, so an existing secret is never clobbered by accident;
  // with `overwrite`, a temporary file is renamed over it (readers never see half a secret).
  const std::string target = overwrite ? path + ".tmp" : path;
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
  const int fd = ::open(target.c_str(), flags, 0600);
  if (fd < 0) {
    const int err = errno;
    sodium_memzero(text.data(), text.size());
    if (err == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          path,
          " exists; pass --force to replace it (members holding the old secret will no "
          "longer get in)"));
    }
    return absl::UnavailableError(absl::StrCat("cannot create ", target, ": ", std::strerror(err)));
  }
  // Whatever the umask and an existing file's mode, only the owner may read it.
  absl::Status status = ::fchmod(fd, 0600) == 0
                            ? absl::OkStatus()
                            : absl::UnavailableError(absl::StrCat("cannot chmod ", target, ": ",
                                                                  std::strerror(errno)));
  size_t written = 0;
  while (status.ok() && written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      status =
          absl::UnavailableError(absl::StrCat("cannot write ", target, ": ", std::strerror(errno)));
      break;
    }
    written += static_cast<size_t>(n);
  }
  sodium_memzero(text.data(), text.size());
  if (status.ok() && ::fsync(fd) != 0) {
    status =
        absl::UnavailableError(absl::StrCat("cannot write ", target, ": ", std::strerror(errno)));
  }
  if (::close(fd) != 0 && status.ok()) {
    status =
        absl::UnavailableError(absl::StrCat("cannot write ", target, ": ", std::strerror(errno)));
  }
  if (status.ok() && overwrite && ::rename(target.c_str(), path.c_str()) != 0) {
    status = absl::UnavailableError(
        absl::StrCat("cannot rename ", target, " to ", path, ": ", std::strerror(errno)));
  }
  if (!status.ok()) ::unlink(target.c_str());
  return status;
}

std::vector<uint8_t> SwarmSecret::Derive(std::string_view purpose, size_t bytes) const {
  // Out of range is a programming error: every caller names a constant size.
  if (bytes < crypto_generichash_BYTES_MIN) bytes = crypto_generichash_BYTES_MIN;
  if (bytes > crypto_generichash_BYTES_MAX) bytes = crypto_generichash_BYTES_MAX;
  const std::string message = absl::StrCat(ToAbsl(kPurposePrefix), ToAbsl(purpose));
  std::vector<uint8_t> out(bytes);
  crypto_generichash(out.data(), out.size(), reinterpret_cast<const uint8_t*>(message.data()),
                     message.size(), bytes_.data(), bytes_.size());
  return out;
}

std::string SwarmSecret::Fingerprint() const {
  const std::vector<uint8_t> id = Derive("fingerprint", 16);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(id.data()), 4));
}

absl::StatusOr<SwarmCurveKeys> DeriveCurveKeys(const SwarmSecret& secret) {
  InitSodium();  // transport/capability.h
  SWARM_RETURN_IF_ERROR(CheckCurveAvailable());
  SwarmCurveKeys keys;
  SWARM_ASSIGN_OR_RETURN(keys.server, SeededCurvePair(secret, "curve-server"));
  SWARM_ASSIGN_OR_RETURN(keys.client, SeededCurvePair(secret, "curve-client"));
  return keys;
}

CurveClientOptions SwarmCurveClient(const SwarmCurveKeys& keys) {
  return CurveClientOptions{.server_public_key = keys.server.public_key,
                            .public_key = keys.client.public_key,
                            .secret_key = keys.client.secret_key};
}

CurveServerOptions SwarmCurveServer(const SwarmCurveKeys& keys,
                                    const ZapAuthenticator* authenticator) {
  return CurveServerOptions{.secret_key = keys.server.secret_key, .authenticator = authenticator};
}

}  // namespace swarm::transport
