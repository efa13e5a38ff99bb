// The batch scheduler's rules, on descriptions of queued steps: arrival order, one step per
// session, the token budget (skipped steps are no barrier, the first step always runs), and the
// grouping of the chosen steps into one forward per block range.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "peer/batch_scheduler.h"

namespace swarm::peer {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const transport::SessionId kA{0, 1};
const transport::SessionId kB{0, 2};
const transport::SessionId kC{0, 3};

TEST(ChooseBatch, NothingQueuedNothingChosen) { EXPECT_THAT(ChooseBatch({}, 2048), IsEmpty()); }

TEST(ChooseBatch, TakesEveryStepInArrivalOrderWhenTheyFit) {
  const std::vector<QueuedStep> queue = {{kB, 1}, {kA, 1}, {kC, 4}};
  EXPECT_THAT(ChooseBatch(queue, 2048), ElementsAre(0, 1, 2));
}

TEST(ChooseBatch, TakesOneStepPerSessionTheEarliest) {
  const std::vector<QueuedStep> queue = {{kA, 1}, {kA, 1}, {kB, 1}, {kA, 1}, {kB, 1}};
  EXPECT_THAT(ChooseBatch(queue, 2048), ElementsAre(0, 2));
}

TEST(ChooseBatch, StaysWithinTheTokenBudgetAndSkipsWhatDoesNotFit) {
  // A (3) fits, B (3 more: 6) does not, C (2 more: 5) still does.
  const std::vector<QueuedStep> queue = {{kA, 3}, {kB, 3}, {kC, 2}};
  EXPECT_THAT(ChooseBatch(queue, 5), ElementsAre(0, 2));
}

TEST(ChooseBatch, AStepThatFillsTheBudgetExactlyFits) {
  const std::vector<QueuedStep> queue = {{kA, 2}, {kB, 3}};
  EXPECT_THAT(ChooseBatch(queue, 5), ElementsAre(0, 1));
}

TEST(ChooseBatch, TheFirstStepRunsEvenWhenLongerThanTheBudget) {
  const std::vector<QueuedStep> queue = {{kA, 100}, {kB, 1}};
  EXPECT_THAT(ChooseBatch(queue, 8), ElementsAre(0));
  // Alone, it runs by itself rather than never.
  const std::vector<QueuedStep> alone = {{kB, 100}};
  EXPECT_THAT(ChooseBatch(alone, 8), ElementsAre(0));
}

TEST(GroupByBlocks, NoStepsNoGroups) { EXPECT_THAT(GroupByBlocks({}), IsEmpty()); }

TEST(GroupByBlocks, OneForwardPerRangeOrderedByRangeStepsInTheirOrder) {
  const std::vector<StepBlocks> steps = {{0, 2}, {1, 2}, {0, 2}, {0, 1}, {1, 2}};
  const std::vector<ForwardGroup> groups = GroupByBlocks(steps);
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].first_block, 0u);
  EXPECT_EQ(groups[0].last_block, 1u);
  EXPECT_THAT(groups[0].steps, ElementsAre(3));
  EXPECT_EQ(groups[1].first_block, 0u);
  EXPECT_EQ(groups[1].last_block, 2u);
  EXPECT_THAT(groups[1].steps, ElementsAre(0, 2));
  EXPECT_EQ(groups[2].first_block, 1u);
  EXPECT_EQ(groups[2].last_block, 2u);
  EXPECT_THAT(groups[2].steps, ElementsAre(1, 4));
}

TEST(GroupByBlocks, SessionsOnTheSameBlocksShareOneForward) {
  const std::vector<StepBlocks> steps = {{2, 5}, {2, 5}, {2, 5}};
  const std::vector<ForwardGroup> groups = GroupByBlocks(steps);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_THAT(groups[0].steps, ElementsAre(0, 1, 2));
}

}  // namespace
}  // namespace swarm::peer
