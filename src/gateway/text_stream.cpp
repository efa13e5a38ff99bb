#include "gateway/text_stream.h"

#include <algorithm>

namespace swarm::gateway {
TextStream::TextStream(const model::Tokenizer& tokenizer, std::vector<std::string> stops,
                       bool at_start, bool trim_leading_space)
    : decoder_(tokenizer, at_start), trim_leading_space_(trim_leading_space) {
  for (std::string& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string TextStream::Push(int32_t token) {
  if (stopped_) return {};
  text_ += decoder_.Push(token);
  return Release();
}

std::string TextStream::Finish() {
  if (stopped_) return {};
  text_ += decoder_.Finish();
  std::string out = Release();
  if (stopped_) return out;
  out += text_;  // a partial stop sequence that never completed is ordinary text
  text_.clear();
  return out;
}

std::string TextStream::Release() {
  if (trim_leading_space_ && !seen_visible_) {
    size_t first = text_.find_first_not_of(' ');
    text_.erase(0, first == std::string::npos ? text_.size() : first);
    if (!text_.empty()) seen_visible_ = true;
  }
  // Every stop sequence starts inside text_: earlier text was released only once no suffix of it
  // could begin one.
  size_t stop_at = std::string::npos;
  for (const std::string& s : stops_) stop_at = std::min(stop_at, text_.find(s));
  if (stop_at != std::string::npos) {
    std::string out = text_.substr(0, stop_at);
    text_.clear();
    stopped_ = true;
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop sequence.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(text_.size(), s.size() - 1); k > hold; --k) {
      if (std::string_view(text_).substr(text_.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  std::string out = text_.substr(0, text_.size() - hold);
  text_.erase(0, text_.size() - hold);
  return out;
}

}  // namespace swarm::gateway
