// The dashboard as a person sees it: headless Chromium loads `/` from `swarm api` in front of a
// real 3-peer swarm, runs its script (virtual time, so the page's fetch of /api/swarm completes),
// and the DOM it renders must show the three peers, their blocks and the route of a request.
// Chromium also takes a screenshot (a PNG in the test's temporary folder, or in
// $SWARM_SCREENSHOT_DIR when set) for a person to look at. Skipped only when Chromium is absent.
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "local_swarm.h"

namespace swarm::gateway::swarm_test {
namespace {

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The text of the element with this id, as Chromium serialised it (no nested markup assumed).
std::string ElementText(const std::string& dom, const std::string& id) {
  const std::string key = absl::StrCat("id=\"", id, "\">");
  const size_t at = dom.find(key);
  if (at == std::string::npos) return "";
  const size_t begin = at + key.size();
  return dom.substr(begin, dom.find('<', begin) - begin);
}

class DashboardChromium : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"chromium", "chromium-browser"}) {
      chromium_ = FindProgram(name);
      if (!chromium_.empty()) break;
    }
    if (chromium_.empty()) {
      GTEST_SKIP() << "Chromium is not installed (scripts/setup.sh installs Debian's chromium)";
    }
    profile_ = absl::StrCat(::testing::TempDir(), "chromium-profile-", ::getpid());
  }
  void TearDown() override {
    std::error_code ec;
    if (!profile_.empty()) std::filesystem::remove_all(profile_, ec);
  }

  // Runs headless Chromium on `url` with `mode` (--dump-dom, --screenshot=FILE); its stdout.
  std::string Chromium(const std::string& mode, const std::string& url) {
    Subprocess::Options options;
    options.argv = {chromium_,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    "--user-data-dir=" + profile_,
                    "--window-size=1280,900",
                    "--virtual-time-budget=5000",
                    mode,
                    url};
    options.stderr_path = profile_ + ".log";
    auto process = Subprocess::Start(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return "";
    auto out = (*process)->ReadAll(std::chrono::seconds(60));
    EXPECT_TRUE(out.ok()) << out.status() << "\n" << ReadFile(profile_ + ".log");
    auto code = (*process)->Wait(std::chrono::seconds(10));
    EXPECT_TRUE(code.ok() && *code == 0) << ReadFile(profile_ + ".log");
    return out.ok() ? *out : "";
  }

  std::string chromium_;
  std::string profile_;
};

TEST_F(DashboardChromium, RendersThePeersBlocksAndRoutes) {
  LocalSwarm swarm;
  const absl::Status started = swarm.Start();
  ASSERT_TRUE(started.ok()) << started;
  {
    // A request, so that the page has a route to show.
    Client c(swarm.api_port());
    ASSERT_EQ(c.Post("/v1/completions", {{"prompt", "Once"}, {"max_tokens", 24}}).result_int(),
              200);
  }

  const std::string dom = Chromium("--dump-dom", swarm.url() + "/");
  ASSERT_NE(dom.find("<html"), std::string::npos) << dom;
  SCOPED_TRACE(dom);
  // The script ran and reached the gateway.
  EXPECT_NE(dom.find("<span class=\"dot\"></span>updated "), std::string::npos);
  EXPECT_EQ(ElementText(dom, "s-peers"), "3 / 3");
  EXPECT_EQ(ElementText(dom, "s-cover"), "5 / 5");
  EXPECT_EQ(ElementText(dom, "s-weak"), "1 peer");
  EXPECT_NE(ElementText(dom, "model").find("stories260K"), std::string::npos);
  // One cell per block of the bar, each coloured (served by one peer: amber).
  EXPECT_EQ(Count(dom, "class=\"block\""), 5u);
  EXPECT_EQ(
      Count(dom, "background: rgba(227, 162, 26, ") + Count(dom, "background: rgb(227, 162, 26)"),
      5u);
  // Every peer has its row: short id, address, state and span; and a hop in the request's route.
  for (const PeerProcess& p : swarm.peers()) {
    SCOPED_TRACE(p.ready.Blocks());
    const std::string short_id = p.ready.peer_id.substr(0, 8);
    EXPECT_NE(dom.find(absl::StrCat("title=\"", p.ready.peer_id, "\">", short_id)),
              std::string::npos);
    EXPECT_NE(dom.find(absl::StrCat(">", p.ready.address, "<")), std::string::npos);
    const std::vector<std::string> ab = absl::StrSplit(p.ready.Blocks(), ':');
    EXPECT_NE(dom.find(absl::StrCat(">[", ab[0], ":", ab[1], ")<")), std::string::npos);
    EXPECT_NE(dom.find(absl::StrCat(short_id, "… [", ab[0], ":", ab[1], ")")), std::string::npos);
  }
  EXPECT_EQ(Count(dom, "class=\"pill online\""), 3u);
  EXPECT_EQ(Count(dom, "class=\"pill done\""), 1u);

  // The screenshot, for a person to look at.
  const char* dir = std::getenv("SWARM_SCREENSHOT_DIR");
  const std::string png = dir != nullptr ? absl::StrCat(dir, "/dashboard.png")
                                         : absl::StrCat(profile_, "-dashboard.png");
  std::filesystem::remove(png);
  Chromium("--screenshot=" + png, swarm.url() + "/");
  const std::string bytes = ReadFile(png);
  ASSERT_GT(bytes.size(), 10000u) << png;
  EXPECT_EQ(bytes.substr(1, 3), "PNG");
  std::cout << "dashboard screenshot: " << png << "\n";
}

}  // namespace
}  // namespace swarm::gateway::swarm_test
