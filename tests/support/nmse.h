// The normalized mean squared error by which tests and benchmarks compare a result with its
// reference: sum((actual - expected)^2) / sum(expected^2), the plain squared error when the
// reference is all zero. Plain functions and a value-type accumulator; no shared state.
#pragma once

#include <cstddef>
#include <vector>

namespace swarm::test_support {

// Infinity when `actual` has a non-finite value where `expected` is finite.
double Nmse(const float* actual, const float* expected, size_t n);
// Infinity when the sizes differ.
double Nmse(const std::vector<float>& actual, const std::vector<float>& expected);

// The NMSE over many comparisons (e.g. every position of a generation): Add() each pair, read
// nmse() at the end.
class NmseAccumulator {
 public:
  void Add(const float* actual, const float* expected, size_t n);
  double nmse() const { return energy_ > 0 ? error_ / energy_ : error_; }

 private:
  double error_ = 0;
  double energy_ = 0;
};

}  // namespace swarm::test_support
