// The default run (scripts/run.sh's flags) on the bundled llama-small-outliers through
// the built `qcal run`: it finds exactly the planted layers as shadow layers, names the
// report in its last line, and the report renders in a real headless browser (Debian's
// chromium) with every section and the right figures, read back from the rendered DOM.
// Skipped, saying so, only when no browser is installed.
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e_util.h"
#include "tests/test_cluster.h"

namespace qcal {
namespace {

namespace fs = std::filesystem;
using namespace e2e;
using testing::ExitedZero;
using testing::ReadAll;
using testing::RunProgram;

// QCAL_BROWSER, else the first of chromium, chromium-browser, google-chrome on PATH.
std::string FindBrowser() {
  if (const char* b = std::getenv("QCAL_BROWSER"); b != nullptr && *b != '\0') return b;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
      const fs::path p = fs::path(dir) / name;
      if (::access(p.c_str(), X_OK) == 0) return p.string();
    }
  }
  return "";
}

int Count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
  return n;
}

// The value of attribute `attr` of every element whose opening tag contains `marker`.
std::vector<std::string> Attributes(const std::string& dom, const std::string& marker,
                                    const std::string& attr) {
  std::vector<std::string> out;
  const std::regex tag("<[^>]*" + marker + "[^>]*>");
  const std::regex value(attr + "=\"([^\"]*)\"");
  for (auto it = std::sregex_iterator(dom.begin(), dom.end(), tag); it != std::sregex_iterator(); ++it) {
    std::smatch m;
    const std::string t = it->str();
    if (std::regex_search(t, m, value)) out.push_back(m[1]);
  }
  return out;
}

TEST(ReportBrowserTest, DefaultRunFindsThePlantedLayersAndItsReportRenders) {
  const std::string browser = FindBrowser();
  if (browser.empty()) {
    GTEST_SKIP() << "no headless browser: install Debian's chromium (scripts/install-deps.sh "
                    "does) or set QCAL_BROWSER";
  }
  const std::string dir = TempDir("report");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string model = kData + "/models/llama-small-outliers";
  const std::string out = dir + "/qcal-out";
  // scripts/run.sh's flags.
  const int status = RunProgram(
      {QCAL_CLI_BIN, "run", "--model", model, "--corpus", kData + "/" + kCorpus, "--num-samples",
       "128", "--seq-len", "256", "--eval-corpus", kData + "/" + kEvalCorpus, "--budget-metric",
       "ppl", "--budget", "0.04", "--out", out},
      "", dir + "/run.out", dir + "/run.err", std::chrono::seconds(600));
  const std::string printed = ReadAll(dir + "/run.out");
  ASSERT_TRUE(ExitedZero(status))
      << printed << ReadAll(dir + "/run.err");

  // The planted layers, from the record the planting tool wrote.
  const auto planted = nlohmann::json::parse(ReadAll(model + "/planted_outliers.json"));
  std::vector<std::string> layers;
  for (const auto& [layer, channels] : planted["layers"].items()) layers.push_back(layer);
  std::string want_set = "{";
  for (size_t i = 0; i < layers.size(); ++i) want_set += (i ? ", " : "") + layers[i];
  want_set += "}";
  ASSERT_EQ(want_set, "{1, 4}");
  const std::regex final_line("recommended threshold ([0-9.e+]+), shadow layers (\\{[0-9, ]*\\})\n");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(printed, m, final_line)) << printed;
  const std::string threshold = m[1];
  EXPECT_EQ(m[2], want_set) << printed;
  EXPECT_NE(printed.find("report: " + out + "/report.html  (open it in a browser)\n"),
            std::string::npos)
      << printed;
  EXPECT_EQ(printed.substr(printed.rfind("\n", printed.size() - 2) + 1).rfind("report: ", 0), 0u)
      << "the last line names the report:\n" << printed;

  // Figures to expect, from the run's other files.
  const auto dist = nlohmann::json::parse(ReadAll(out + "/act_scales_distribution_abs.json"));
  const int linears = static_cast<int>(dist["ori"].size());
  const auto res_acc = nlohmann::json::parse(ReadAll(out + "/model_res_acc.json"));
  const int thresholds = static_cast<int>(res_acc.begin()->size());
  ASSERT_EQ(linears, 43);
  ASSERT_EQ(thresholds, 11);

  // Render it.
  const int rendered = RunProgram({browser, "--headless", "--no-sandbox", "--disable-gpu",
                                   "--user-data-dir=" + dir + "/browser", "--dump-dom",
                                   "file://" + out + "/report.html"},
                                  "", dir + "/dom.html", dir + "/browser.err", std::chrono::seconds(120));
  ASSERT_TRUE(ExitedZero(rendered))
      << ReadAll(dir + "/browser.err");
  const std::string dom = ReadAll(dir + "/dom.html");
  ASSERT_NE(dom.find("data-rendered=\"1\""), std::string::npos) << "the script did not finish";
  for (const char* id : {"summary", "heatmap", "curves", "strip", "tensors", "experts", "exports"}) {
    EXPECT_NE(dom.find(std::string("<section id=\"") + id + "\">"), std::string::npos) << id;
  }
  EXPECT_NE(dom.find("<code id=\"shadow-set\">" + want_set + "</code>"), std::string::npos);
  EXPECT_NE(dom.find("<span id=\"recommended-threshold\">" + threshold + "</span>"), std::string::npos)
      << threshold;
  EXPECT_NE(dom.find("id=\"copy-shadow\""), std::string::npos);
  // One heat-map cell per linear and side, each linear's name on two of them.
  EXPECT_EQ(Count(dom, "class=\"cell\""), 2 * linears);
  const auto cell_linears = Attributes(dom, "class=\"cell\"", "data-linear");
  EXPECT_EQ(std::set<std::string>(cell_linears.begin(), cell_linears.end()).size(),
            static_cast<size_t>(linears));
  EXPECT_NE(dom.find("id=\"threshold-line\""), std::string::npos);
  EXPECT_NE(dom.find("id=\"mode-mllm\""), std::string::npos);
  // One point per threshold on each of the two curves; the recommended one marked.
  EXPECT_EQ(Count(dom, "class=\"point"), 2 * thresholds);
  const auto marked = Attributes(dom, "class=\"point recommended\"", "data-threshold");
  ASSERT_EQ(marked.size(), 2u);
  EXPECT_EQ(marked[0], threshold);
  EXPECT_EQ(Attributes(dom, "class=\"point recommended\"", "data-shadow")[0], "2");
  EXPECT_NE(dom.find("class=\"budget-band\""), std::string::npos);
  EXPECT_NE(dom.find("class=\"float-baseline\""), std::string::npos);
  // The strip: 6 layers x thresholds, the planted layers lit at the recommended one.
  EXPECT_EQ(Count(dom, "class=\"strip-cell\""), 6 * thresholds);
  int lit = 0;
  for (const std::string& layer : layers) {
    lit += Count(dom, "data-layer=\"" + layer + "\" data-threshold=\"" + threshold + "\" data-shadow=\"1\"");
  }
  EXPECT_EQ(lit, 2);
  // A SQNR bar per tensor; a channel profile for each not-clipped down_proj input,
  // whose outlier channels include the planted ones.
  EXPECT_EQ(Count(dom, "class=\"sqnr\""), 2 * linears);
  for (const auto& [layer, channels] : planted["layers"].items()) {
    const std::string linear = "model.layers." + layer + ".mlp.down_proj";
    const std::regex profile("class=\"profile\"[^>]*data-linear=\"" + std::regex_replace(linear, std::regex("\\."), "\\.") +
                             "\" data-side=\"input\" data-outlier-channels=\"([0-9,]*)\"");
    std::smatch pm;
    ASSERT_TRUE(std::regex_search(dom, pm, profile)) << linear;
    const std::string list = "," + pm[1].str() + ",";
    for (int c : channels) EXPECT_NE(list.find("," + std::to_string(c) + ","), std::string::npos) << linear << " " << c;
  }
  EXPECT_NE(dom.find("no mixture-of-experts layers"), std::string::npos);
  EXPECT_EQ(Count(dom, "<tr class=\"export\">"), 2);
  // The page carries its data as JSON (what `qcal report --json` prints).
  const std::string html = ReadAll(out + "/report.html");
  const size_t a = html.find("id=\"qcal-report\">") + 17, b = html.find("</script>", a);
  const auto data = nlohmann::json::parse(html.substr(a, b - a));
  EXPECT_EQ(data["format"], "qcal-report/1");
  EXPECT_EQ(data["recommended"]["shadow_layers_set"], want_set);
  EXPECT_EQ(data["linears"].size(), static_cast<size_t>(linears));
  // Nothing to fetch: the only URLs are XML namespace names.
  EXPECT_EQ(Count(html, "http://"), Count(html, "http://www.w3.org/"));
  EXPECT_EQ(Count(html, "https://"), 0);
  std::printf("%s", printed.substr(printed.find("recommended threshold " + threshold)).c_str());
}

}  // namespace
}  // namespace qcal
