// Who may do what to a session on this peer. The client that opened it holds its owner capability:
// only that opens it again, closes it, or sends it steps itself (at any position it holds, so a
// rollback too). The upstream hop of the client's chain holds its push capability and, with each
// step, a route layer the client sealed for this hop: it delivers that step and nothing else, at
// the session's next position (earlier only where the client marked the step a redo), never twice.
// Knowing a session's id grants nothing. Pure functions over a Session; the server loop's thread.
#pragma once

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "peer/session_table.h"
#include "transport/protocol.h"

namespace swarm::peer {

enum class StepSender {
  kOwner,        // the client, with the owner capability
  kUpstreamHop,  // the previous hop of the client's chain, with the push capability
};

struct AuthorizedStep {
  StepSender sender = StepSender::kOwner;
  // This hop's layer of the step's route, opened: where the output goes next (none: nowhere).
  std::optional<transport::RouteLayer> layer;
};

// PermissionDenied, saying why, for an opening again, a close, or anything else only the owner may
// do, when `presented` is not the session's owner capability. `action` names it ("close").
absl::Status AuthorizeOwner(const Session& session, const transport::Capability& presented,
                            std::string_view action);

// Checks a step's capability and route layer against its session, before anything about the step
// is acted on or reported to the session's client. PermissionDenied for: no capability or another
// one; a pushed step without a layer, or one that was not sealed with this session's route key,
// names another step, or was delivered before; a layer in an owner's step that does not open or
// names another step. Changes nothing: call NoteAccepted once the step is queued.
absl::StatusOr<AuthorizedStep> AuthorizeStep(const Session& session, const transport::Step& step);
void NoteAccepted(Session& session, const transport::Step& step, const AuthorizedStep& access);

// When the step is about to run on a cache of `length` positions: a pushed step starts at the
// session's next position, or earlier only where the client marked it a redo (PermissionDenied).
absl::Status CheckStepPosition(const transport::Step& step, const AuthorizedStep& access,
                               int64_t length);

}  // namespace swarm::peer
