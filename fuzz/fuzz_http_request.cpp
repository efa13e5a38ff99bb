// libFuzzer target: the bytes a client sends the gateway (gateway/http_request.h): pipelined
// HTTP/1.1 requests through the server's parser limits and conversion, then, for the OpenAI
// endpoints, the body through the request parser the handler runs. Byte 0 picks tight or default
// limits. What comes out must respect the limits; an error must map to a 4xx answer.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_support.h"
#include "gateway/http_request.h"
#include "gateway/openai_protocol.h"

namespace {

namespace g = swarm::gateway;
using swarm::fuzz::Check;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  g::HttpServerOptions options;
  if (data[0] & 1) {
    options.max_header_bytes = 256;
    options.max_body_bytes = 64;
  }
  std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const g::ParsedRequests parsed = g::ParseHttpRequests(bytes, options);
  Check(parsed.consumed <= bytes.size(), "consumed more bytes than given");
  Check(parsed.error_status == 0 || parsed.error_status == 400 || parsed.error_status == 413 ||
            parsed.error_status == 431,
        "a parse error maps to an unexpected status");

  g::RequestLimits limits;
  limits.n_vocab = 512;
  limits.max_tokens_limit = 4096;
  for (const g::HttpRequest& r : parsed.requests) {
    Check(r.body.size() <= options.max_body_bytes, "a body beyond the limit was accepted");
    Check(r.target.compare(0, r.path.size(), r.path) == 0,
          "the path is not a prefix of the target");
    Check(r.path.find('?') == std::string_view::npos, "the path holds a query string");
    if (r.method == "POST" && (r.path == "/v1/completions" || r.path == "/v1/chat/completions")) {
      g::CompletionParams params;
      (void)g::ParseCompletionRequest(r.body, r.path == "/v1/chat/completions", limits, &params);
    }
  }
  return 0;
}
