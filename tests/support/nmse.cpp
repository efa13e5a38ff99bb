#include "support/nmse.h"

#include <cmath>
#include <limits>

namespace swarm::test_support {

double Nmse(const float* actual, const float* expected, size_t n) {
  double err = 0.0;
  double ref = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double a = actual[i];
    const double b = expected[i];
    if (!std::isfinite(a) && std::isfinite(b)) return std::numeric_limits<double>::infinity();
    err += (a - b) * (a - b);
    ref += b * b;
  }
  return ref > 0.0 ? err / ref : err;
}

double Nmse(const std::vector<float>& actual, const std::vector<float>& expected) {
  return actual.size() == expected.size() ? Nmse(actual.data(), expected.data(), expected.size())
                                          : std::numeric_limits<double>::infinity();
}

void NmseAccumulator::Add(const float* actual, const float* expected, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(actual[i]) - expected[i];
    error_ += d * d;
    energy_ += static_cast<double>(expected[i]) * expected[i];
  }
}

}  // namespace swarm::test_support
