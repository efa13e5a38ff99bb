#include "peer/session_access.h"

#include "absl/strings/str_cat.h"
#include "base/absl_compat.h"
#include "base/status_macros.h"
#include "transport/route_seal.h"

namespace swarm::peer {

using transport::Capability;
using transport::RouteLayer;
using transport::Step;

namespace {

absl::Status Denied(const Session& session, absl::string_view why) {
  return absl::PermissionDeniedError(absl::StrCat("session ", session.id.ToString(), ": ", why));
}

absl::StatusOr<RouteLayer> OpenLayer(const Session& session, const Step& step) {
  auto layer = transport::OpenRouteLayer(session.capabilities.route_key, step.sealed_route);
  if (!layer.ok()) {
    // Whatever stops the layer from opening or decoding, the step is not the client's.
    return Denied(session, layer.status().message());
  }
  if (layer->step_id != step.step_id || layer->start_position != step.start_position ||
      layer->n_tokens != step.n_tokens) {
    return Denied(session, absl::StrCat("the route layer was sealed for step ", layer->step_id,
                                        " at positions [", layer->start_position, ", +",
                                        layer->n_tokens, "), not this one"));
  }
  return layer;
}

}  // namespace

absl::Status AuthorizeOwner(const Session& session, const Capability& presented,
                            std::string_view action) {
  if (session.capabilities.owner.Matches(presented)) return absl::OkStatus();
  return Denied(session,
                absl::StrCat("only the client that opened it may ", ToAbsl(action), " it (",
                             presented.empty() ? "no" : "wrong", " owner capability)"));
}

absl::StatusOr<AuthorizedStep> AuthorizeStep(const Session& session, const Step& step) {
  AuthorizedStep access;
  if (session.capabilities.owner.Matches(step.capability)) {
    access.sender = StepSender::kOwner;
    if (!step.sealed_route.empty()) {
      SWARM_ASSIGN_OR_RETURN(access.layer, OpenLayer(session, step));
    }
    return access;
  }
  if (!session.capabilities.push.Matches(step.capability)) {
    return Denied(session, step.capability.empty()
                               ? "a step without a capability"
                               : "a step with neither its owner's nor its push capability");
  }
  access.sender = StepSender::kUpstreamHop;
  if (step.sealed_route.empty()) {
    return Denied(session, "a pushed step without its route layer from the client");
  }
  SWARM_ASSIGN_OR_RETURN(access.layer, OpenLayer(session, step));
  // Step ids grow within a client's session: an older or repeated one is a layer used before.
  if (step.step_id <= session.last_pushed_step) {
    return Denied(session, absl::StrCat("step ", step.step_id, " was delivered before (step ",
                                        session.last_pushed_step, " is the latest)"));
  }
  return access;
}

void NoteAccepted(Session& session, const Step& step, const AuthorizedStep& access) {
  if (access.sender == StepSender::kUpstreamHop) session.last_pushed_step = step.step_id;
}

absl::Status CheckStepPosition(const Step& step, const AuthorizedStep& access, int64_t length) {
  if (step.start_position > length) {
    return absl::InvalidArgumentError(absl::StrCat("step starts at position ", step.start_position,
                                                   " but the session holds only ", length,
                                                   " positions"));
  }
  if (access.sender == StepSender::kUpstreamHop && step.start_position < length &&
      !(access.layer && access.layer->redo)) {
    return absl::PermissionDeniedError(
        absl::StrCat("a pushed step at position ", step.start_position, " would roll back the ",
                     length, " positions the session holds; only its client may"));
  }
  return absl::OkStatus();
}

}  // namespace swarm::peer
