#include "transport/zmq_status.h"

#include <zmq.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"

namespace swarm::transport {

absl::Status ZmqErrorToStatus(int zmq_errno, std::string_view what) {
  const std::string message = absl::StrCat(ToAbsl(what), ": ", zmq_strerror(zmq_errno));
  switch (zmq_errno) {
    case EAGAIN:
      return absl::DeadlineExceededError(message);
    case EHOSTUNREACH:
    case ETERM:
    case ENOTCONN:
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case ENETDOWN:
    case ENETUNREACH:
    case ETIMEDOUT:
    case EINTR:
      return absl::UnavailableError(message);
    case EMSGSIZE:
    case ENOBUFS:
    case ENOMEM:
    case EMFILE:
      return absl::ResourceExhaustedError(message);
    case EINVAL:
    case EPROTONOSUPPORT:
    case ENOCOMPATPROTO:
    case EADDRNOTAVAIL:
    case ENODEV:
      return absl::InvalidArgumentError(message);
    case EADDRINUSE:
      return absl::AlreadyExistsError(message);
    case ENOTSUP:
    case EFSM:
      return absl::FailedPreconditionError(message);
    case ENOTSOCK:
    case EFAULT:
      return absl::InternalError(message);
    default:
      return absl::UnknownError(message);
  }
}

}  // namespace swarm::transport
