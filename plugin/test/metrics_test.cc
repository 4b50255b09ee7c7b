// The metrics text format, and the endpoint in front of a plugin server.
#include "plugin/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <thread>

#include "common/fd.h"
#include "plugin/metrics_server.h"
#include "plugin/test/server_fixture.h"

namespace slacker::plugin {
namespace {

// A driver that reports metrics, as SlackerDriver does.
class ReportingDriver : public FakeGraphDriver {
 public:
  std::vector<std::pair<std::string, double>> samples;
  std::vector<std::pair<std::string, double>> Metrics() override { return samples; }
};

// The whole exposition for a known state, byte for byte.
TEST(PluginMetrics, RendersGoldenText) {
  PluginMetrics m;
  m.RecordRequest("Get", 200, 0.5);
  m.RecordRequest("Get", 500, 0.25);
  m.AddApplyBytes(1000);
  m.AddDiffBytes(24);
  std::string text = m.Render({{"slacker_layers", 3}, {"slacker_store_size_bytes", 1e12}});
  EXPECT_EQ(
      text,
      R"(# HELP slacker_requests_total Graphdriver requests handled by the plugin, by method and HTTP status.
# TYPE slacker_requests_total counter
slacker_requests_total{method="Get",status="200"} 1
slacker_requests_total{method="Get",status="500"} 1
# HELP slacker_request_duration_seconds Time from reading a request's header to sending its reply, by method.
# TYPE slacker_request_duration_seconds histogram
slacker_request_duration_seconds_bucket{method="Get",le="0.0005"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.001"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.002"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.003"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.005"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.0075"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.01"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.015"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.02"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.03"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.05"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.075"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.1"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.15"} 0
slacker_request_duration_seconds_bucket{method="Get",le="0.25"} 1
slacker_request_duration_seconds_bucket{method="Get",le="0.5"} 2
slacker_request_duration_seconds_bucket{method="Get",le="1"} 2
slacker_request_duration_seconds_bucket{method="Get",le="2.5"} 2
slacker_request_duration_seconds_bucket{method="Get",le="5"} 2
slacker_request_duration_seconds_bucket{method="Get",le="10"} 2
slacker_request_duration_seconds_bucket{method="Get",le="+Inf"} 2
slacker_request_duration_seconds_sum{method="Get"} 0.75
slacker_request_duration_seconds_count{method="Get"} 2
# HELP slacker_apply_bytes_total Bytes of ApplyDiff request bodies received.
# TYPE slacker_apply_bytes_total counter
slacker_apply_bytes_total 1000
# HELP slacker_diff_bytes_total Bytes of Diff replies sent.
# TYPE slacker_diff_bytes_total counter
slacker_diff_bytes_total 24
# HELP slacker_layers Layers known to the driver.
# TYPE slacker_layers gauge
slacker_layers 3
# HELP slacker_store_size_bytes Size of the file system holding the store.
# TYPE slacker_store_size_bytes gauge
slacker_store_size_bytes 1000000000000
)");
}

// Each bucket counts every request at or below its bound, so counts never decrease.
TEST(PluginMetrics, HistogramBucketsAreCumulative) {
  PluginMetrics m;
  for (double s : {0.0005, 0.001, 0.003, 0.3, 20.0}) m.RecordRequest("Diff", 200, s);
  std::string text = m.Render({});
  auto bucket = [&](const char* le) {
    std::string key =
        fmt::format("slacker_request_duration_seconds_bucket{{method=\"Diff\",le=\"{}\"}} ", le);
    auto at = text.find(key);
    return at == std::string::npos
               ? "missing"
               : text.substr(at + key.size(), text.find('\n', at) - at - key.size());
  };
  EXPECT_EQ(bucket("0.0005"), "1");
  EXPECT_EQ(bucket("0.001"), "2");  // the bound itself is inside
  EXPECT_EQ(bucket("0.002"), "2");
  EXPECT_EQ(bucket("0.003"), "3");
  EXPECT_EQ(bucket("0.0075"), "3");
  EXPECT_EQ(bucket("0.5"), "4");
  EXPECT_EQ(bucket("10"), "4");
  EXPECT_EQ(bucket("+Inf"), "5");
}

// A driver bug must not make the whole exposition unparsable.
TEST(PluginMetrics, SkipsInvalidAndRepeatedDriverNames) {
  std::string text = PluginMetrics().Render({{"bad name", 1},
                                             {"slacker_layers", 2},
                                             {"slacker_layers", 3},
                                             {"slacker_diff_bytes_total", 4}});
  EXPECT_EQ(text.find("bad name"), std::string::npos);
  EXPECT_NE(text.find("slacker_layers 2\n"), std::string::npos);
  EXPECT_EQ(text.find("slacker_layers 3"), std::string::npos);
  EXPECT_EQ(text.find("slacker_diff_bytes_total 4"), std::string::npos);
}

TEST(MetricsAddress, ParsesFlagForms) {
  struct Case {
    const char* text;
    std::string path, host;
    uint16_t port;
  };
  for (const Case& c :
       {Case{"unix:/run/m.sock", "/run/m.sock", "", 0}, Case{"9464", "", "127.0.0.1", 9464},
        Case{":9464", "", "127.0.0.1", 9464}, Case{"localhost:1", "", "127.0.0.1", 1},
        Case{"0.0.0.0:9464", "", "0.0.0.0", 9464}, Case{"[::1]:9464", "", "::1", 9464}}) {
    SCOPED_TRACE(c.text);
    auto a = ParseMetricsAddress(c.text);
    ASSERT_TRUE(a.ok()) << a.status().message();
    EXPECT_EQ(a->unix_path, c.path);
    EXPECT_EQ(a->host, c.host);
    EXPECT_EQ(a->port, c.port);
  }
  for (const char* bad : {"unix:", "", "host:", "1.2.3.4:99999", "::1:80", "1.2.3.4:80x"}) {
    EXPECT_EQ(ParseMetricsAddress(bad).status().code(), EINVAL) << bad;
  }
}

// A plugin server counting into the metrics a MetricsServer on a unix socket serves.
class MetricsEndpoint : public PluginServerTest {
 protected:
  void SetUp() override {
    opts_.metrics = std::make_shared<PluginMetrics>();
    PluginServerTest::SetUp();
    metrics_path_ = dir_ + "/metrics.sock";
    metrics_server_ = std::make_unique<MetricsServer>(driver_, opts_.metrics,
                                                      MetricsAddress{.unix_path = metrics_path_});
    Status s = metrics_server_->Start();
    ASSERT_TRUE(s.ok()) << s.message();
  }
  void TearDown() override {
    metrics_server_.reset();
    PluginServerTest::TearDown();
  }

  HttpReply Scrape(std::string_view method = "GET", std::string_view target = "/metrics") {
    return TestClient(metrics_path_).Send(method, target, "");
  }

  ReportingDriver driver_;
  std::string metrics_path_;
  std::unique_ptr<MetricsServer> metrics_server_;
};

TEST_F(MetricsEndpoint, CountsRequestsThroughThePluginSocket) {
  fake_.diff_data = std::string(5000, 'd');
  fake_.apply_size = 0;  // the ApplyDiff body is not a tar
  fake_.AddLayer("l1");
  driver_.samples = {{"slacker_layers", 7}};
  TestClient client = Client();
  EXPECT_EQ(client.Post("/GraphDriver.Get", R"({"ID":"l1"})").status, 200);
  EXPECT_EQ(client.Post("/GraphDriver.Get", R"({"ID":"l1"})").status, 200);
  EXPECT_EQ(client.Post("/GraphDriver.Get", "{").status, 400);
  EXPECT_EQ(client.PostChunked("/GraphDriver.ApplyDiff?id=l2", std::string(3000, 't'), 1000).status,
            200);
  EXPECT_EQ(client.Post("/GraphDriver.Diff", R"({"ID":"l2"})").status, 200);
  EXPECT_EQ(client.Post("/no/such/route", "{}").status, 404);

  // A request is counted after its reply is written, so the client can see the reply of
  // the last one before the server has counted it: scrape until it shows (or 5 s pass).
  const std::string last = "slacker_requests_total{method=\"unknown\",status=\"404\"} 1\n";
  HttpReply r = Scrape();
  for (int i = 0; i < 500 && r.status == 200 && r.body.find(last) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    r = Scrape();
  }
  ASSERT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  for (const char* line : {
           "slacker_requests_total{method=\"Get\",status=\"200\"} 2\n",
           "slacker_requests_total{method=\"Get\",status=\"400\"} 1\n",
           "slacker_requests_total{method=\"ApplyDiff\",status=\"200\"} 1\n",
           "slacker_requests_total{method=\"Diff\",status=\"200\"} 1\n",
           "slacker_requests_total{method=\"unknown\",status=\"404\"} 1\n",
           "slacker_request_duration_seconds_count{method=\"Get\"} 3\n",
           "slacker_apply_bytes_total 3000\n",
           "slacker_diff_bytes_total 5000\n",
           "slacker_layers 7\n",
       }) {
    EXPECT_NE(r.body.find(line), std::string::npos) << "missing " << line << "in\n" << r.body;
  }
}

TEST_F(MetricsEndpoint, OtherPathsAre404) {
  EXPECT_EQ(Scrape("GET", "/").status, 404);
  EXPECT_EQ(Scrape("GET", "/GraphDriver.Get").status, 404);
  EXPECT_EQ(Scrape("POST", "/metrics").status, 405);
  EXPECT_EQ(Scrape("GET", "/metrics?name=x").status, 200);
}

// TCP on an ephemeral loopback port, read with a bare socket as a scraper would.
TEST(MetricsServerTcp, ServesOnLoopback) {
  ReportingDriver driver;
  MetricsServer server(driver, std::make_shared<PluginMetrics>(), {.host = "127.0.0.1"});
  Status s = server.Start();
  ASSERT_TRUE(s.ok()) << s.message();
  std::string addr = server.address();
  ASSERT_TRUE(addr.starts_with("127.0.0.1:")) << addr;
  int port = std::stoi(addr.substr(10));
  ASSERT_GT(port, 0);

  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::write(fd.get(), req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string reply;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof buf)) > 0;) reply.append(buf, n);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 200 OK\r\n")) << reply;
  EXPECT_NE(reply.find("\r\n\r\n# HELP slacker_requests_total"), std::string::npos) << reply;
}

}  // namespace
}  // namespace slacker::plugin
