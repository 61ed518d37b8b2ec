#include "protocol/startup_phase.hpp"

#include "protocol/framing.hpp"

#include <fmt/format.h>

namespace pglane::protocol {

namespace {

StartupStep refuse(StartupStep step, std::string_view sqlstate, std::string message, std::string_view reason) {
    step.action = StartupAction::refuse;
    step.sqlstate = sqlstate;
    step.message = std::move(message);
    step.reason = reason;
    return step;
}

}  // namespace

StartupStep StartupPhase::next(Bytes unread) {
    StartupStep step;
    Frame frame = frame_startup(unread, max_packet_length_);
    if (frame.status == FrameStatus::malformed)
        return refuse(std::move(step), sqlstate::protocol_violation,
                      fmt::format("invalid length of startup packet ({})", frame.length), "malformed_startup");
    if (frame.status == FrameStatus::need_more) {
        step.frame_size = frame.size;
        return step;
    }
    step.bytes = frame.size;
    step.packet = parse_startup(frame.body);
    switch (step.packet.kind) {
        case StartupKind::ssl_request:
        case StartupKind::gssenc_request: {
            bool ssl = step.packet.kind == StartupKind::ssl_request;
            bool& asked = ssl ? ssl_asked_ : gssenc_asked_;
            if (asked)
                return refuse(std::move(step), sqlstate::protocol_violation,
                              fmt::format("duplicate {} during startup", ssl ? "SSLRequest" : "GSSENCRequest"),
                              "malformed_startup");
            asked = true;
            step.action = StartupAction::encryption_request;
            return step;
        }
        case StartupKind::cancel_request:
            step.action = StartupAction::forward_cancel;
            return step;
        case StartupKind::unsupported_version: {
            std::string message = step.packet.error;
            return refuse(std::move(step), sqlstate::feature_not_supported, std::move(message), "unsupported_protocol");
        }
        case StartupKind::malformed: {
            std::string message = step.packet.error;
            return refuse(std::move(step), sqlstate::protocol_violation, std::move(message), "malformed_startup");
        }
        case StartupKind::startup:
            step.action = StartupAction::start_session;
            return step;
    }
    return refuse(std::move(step), sqlstate::internal_error, "unknown startup packet kind", "malformed_startup");
}

}  // namespace pglane::protocol
