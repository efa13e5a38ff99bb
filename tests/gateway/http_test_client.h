// Test support shared by the gateway tests: a blocking HTTP/1.1 client on one keep-alive
// connection (Boost.Beast), the `data:` payloads of a server-sent-event body, and the stories260K
// greedy reference text the gateway must reproduce.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "nlohmann/json.hpp"
#include "support/files.h"
#include "support/shared_model.h"

namespace swarm::gateway::test_http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using nlohmann::json;

using test_support::ReadFile;

// The greedy continuation of BOS, 200 tokens: `swarm generate`'s stdout less its final newline.
inline const std::string& kReferencePath = test_support::kSharedReferenceText;
inline std::string ReferenceText() {
  std::string text = ReadFile(kReferencePath);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

using Response = http::response<http::string_body>;

// A blocking HTTP/1.1 client on one keep-alive connection to 127.0.0.1.
class Client {
 public:
  explicit Client(uint16_t port) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(net::ip::address_v4::loopback(), port));
  }
  // From another loopback address (e.g. 127.0.0.2): another client, as the server counts them.
  Client(uint16_t port, const std::string& from) : socket_(ioc_) {
    socket_.open(tcp::v4());
    socket_.bind(tcp::endpoint(net::ip::make_address(from), 0));
    socket_.connect(tcp::endpoint(net::ip::address_v4::loopback(), port));
  }

  Response Send(http::verb verb, const std::string& target, const std::string& body = "",
                const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    http::write(socket_, req);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(socket_, buffer_, parser);
    return parser.release();
  }
  Response Post(const std::string& target, const json& body) {
    return Send(http::verb::post, target, body.dump());
  }
  Response Get(const std::string& target) { return Send(http::verb::get, target); }

  tcp::socket& socket() { return socket_; }
  beast::flat_buffer& buffer() { return buffer_; }

  // Reads until EOF or an error; true if the server closed the connection.
  bool WaitClosed() {
    beast::error_code ec;
    char buf[1024];
    while (!ec) socket_.read_some(net::buffer(buf), ec);
    return ec == net::error::eof || ec == net::error::connection_reset;
  }

 private:
  net::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

// The `data:` payloads of a server-sent-event body, in order.
inline std::vector<std::string> SseData(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string event = body.substr(pos, end - pos);
    if (absl::StartsWith(event, "data: ")) out.push_back(event.substr(6));
    pos = end + 2;
  }
  return out;
}

}  // namespace swarm::gateway::test_http
