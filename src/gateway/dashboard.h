// The swarm dashboard: one self-contained HTML page (inline CSS and JS, no external assets) that
// polls GET /api/swarm, and the JSON that endpoint returns. Pure functions: any thread.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "gateway/completion_engine.h"
#include "gateway/request_log.h"
#include "nlohmann/json.hpp"

namespace swarm::gateway {

struct BlockCoverage {
  int32_t peers = 0;      // serving peers (online or local) whose span holds the block
  double throughput = 0;  // sum of their throughputs
};

// Per block of [0, n_blocks); peers' ranges are clipped to it (they come from the network).
std::vector<BlockCoverage> ComputeCoverage(const SwarmView& view, int32_t n_blocks);

// {model, server, blocks: [{index, peers, throughput}], peers: [...], requests: [...]}
nlohmann::json SwarmJson(const ModelInfo& info, const SwarmView& view, const RequestLog& log,
                         const nlohmann::json& server);

std::string_view DashboardHtml();

}  // namespace swarm::gateway
