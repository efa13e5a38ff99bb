// The shared test model and its reference output, which tests find through SWARM_SHARED_DIR (set
// for every test by swarm_test). Constants only.
#pragma once

#include <string>

namespace swarm::test_support {

// stories260K: a tiny Llama-architecture model with a SentencePiece tokenizer.
inline const std::string kSharedModel = SWARM_SHARED_DIR "/models/stories260K.gguf";
// Its greedy continuation of BOS, 200 tokens: `swarm generate -p "" --temp 0 -n 200`'s stdout.
inline const std::string kSharedReferenceText =
    SWARM_SHARED_DIR "/models/stories260K.greedy-200.txt";

}  // namespace swarm::test_support
