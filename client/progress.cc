#include "client/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/json_output.h"
#include "proto/qcal/v1/job_state.h"

namespace qcal::client {
namespace {

constexpr int kBarWidth = 24;

bool HasTime(const google::protobuf::Timestamp& t) {
  return t.seconds() != 0 || t.nanos() != 0;
}

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

std::string Rate(const ProgressFigures& f) {
  return f.tokens_per_second ? FormatCount(*f.tokens_per_second) : "-";
}

std::string Samples(const v1::JobProgress& p) {
  if (p.samples_total() > 0) return absl::StrCat(p.samples_done(), "/", p.samples_total());
  return absl::StrCat(p.samples_done());
}

}  // namespace

std::string ShortStateName(v1::JobState state) {
  const std::string& name = v1::JobState_Name(state);
  if (name.empty()) return absl::StrCat("STATE_", static_cast<int>(state));
  if (name.rfind("JOB_", 0) == 0) return name.substr(4);
  return name;
}

std::string FormatElapsed(absl::Duration d) {
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 0) s = 0;
  const int64_t h = s / 3600, m = (s / 60) % 60, sec = s % 60;
  if (h > 0) return absl::StrFormat("%dh%02dm%02ds", h, m, sec);
  if (m > 0) return absl::StrFormat("%dm%02ds", m, sec);
  return absl::StrFormat("%ds", sec);
}

std::string FormatCount(double value) {
  if (!std::isfinite(value) || value < 0) return "-";
  static constexpr struct {
    double scale;
    const char* suffix;
  } kUnits[] = {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}};
  for (const auto& unit : kUnits) {
    // Rounded to 3 significant digits, 999.5 k shows as 1.00M.
    if (value >= unit.scale * 0.9995) {
      const double v = value / unit.scale;
      if (v >= 99.95) return absl::StrFormat("%.0f%s", v, unit.suffix);
      if (v >= 9.995) return absl::StrFormat("%.1f%s", v, unit.suffix);
      return absl::StrFormat("%.2f%s", v, unit.suffix);
    }
  }
  return absl::StrFormat("%.0f", value);
}

std::string FormatBar(int64_t done, int64_t total, int width) {
  int filled = 0;
  if (total > 0 && done > 0) {
    const double fraction = std::min(1.0, static_cast<double>(done) / total);
    filled = static_cast<int>(fraction * width);
  }
  return absl::StrCat("[", std::string(filled, '#'), std::string(width - filled, '.'),
                      "]");
}

std::string FormatProgressLine(const v1::Job& job, const ProgressFigures& f) {
  const v1::JobProgress& p = job.progress();
  return absl::StrCat(job.id(), " ", ShortStateName(job.state()), " ",
                      FormatBar(p.shards_done(), p.shards_total(), kBarWidth), " ",
                      p.shards_done(), "/", p.shards_total(), " shards  ", Samples(p),
                      " samples  ", Rate(f), " tok/s  ", FormatElapsed(f.elapsed));
}

std::string FormatPlainLine(const v1::Job& job, const ProgressFigures& f) {
  const v1::JobProgress& p = job.progress();
  return absl::StrCat(job.id(), " ", ShortStateName(job.state()), " shards ",
                      p.shards_done(), "/", p.shards_total(), " samples ", Samples(p),
                      " tokens ", p.tokens_done(), " tok/s ", Rate(f), " elapsed ",
                      FormatElapsed(f.elapsed));
}

std::string FormatFinalLine(const v1::Job& job, const ProgressFigures& f) {
  const v1::JobProgress& p = job.progress();
  const std::string head = absl::StrCat(job.id(), " ", ShortStateName(job.state()));
  switch (job.state()) {
    case v1::JOB_CALIBRATED:
      return absl::StrCat(head, ": ", p.samples_done(), " samples, ", p.tokens_done(),
                          " tokens in ", FormatElapsed(f.elapsed), " (", Rate(f),
                          " tok/s)");
    case v1::JOB_FAILED: {
      std::string why = job.error();
      if (why.empty() && job.failure_reasons_size() > 0) {
        why = job.failure_reasons(job.failure_reasons_size() - 1);
      }
      if (why.empty()) why = "no reason given";
      return absl::StrCat(head, " after ", FormatElapsed(f.elapsed), ": ", OneLine(why));
    }
    case v1::JOB_CANCELLED:
      return absl::StrCat(head, " after ", FormatElapsed(f.elapsed), " (",
                          p.shards_done(), "/", p.shards_total(), " shards done)");
    default:
      return FormatPlainLine(job, f);
  }
}

JobDisplay::JobDisplay(std::ostream* out, DisplayMode mode) : line_(out, mode) {}

ProgressFigures JobDisplay::Figures(const v1::Job& job, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  return FiguresLocked(job, now);
}

ProgressFigures JobDisplay::FiguresLocked(const v1::Job& job, absl::Time now) const {
  ProgressFigures f;
  const bool final_state = v1::IsFinalJobState(job.state());
  const bool has_span = HasTime(job.create_time()) && HasTime(job.update_time());
  if (HasTime(job.create_time())) {
    const absl::Time end = final_state && has_span ? ToTime(job.update_time()) : now;
    f.elapsed = std::max(absl::ZeroDuration(), end - ToTime(job.create_time()));
  } else {
    f.elapsed = std::max(absl::ZeroDuration(), now - first_seen_);
  }
  const int64_t tokens = job.progress().tokens_done();
  const double watched = absl::ToDoubleSeconds(now - first_seen_);
  if (final_state && has_span) {
    const double span =
        absl::ToDoubleSeconds(ToTime(job.update_time()) - ToTime(job.create_time()));
    if (span > 0) f.tokens_per_second = tokens / span;
  } else if (watched >= 1.0 && tokens > first_tokens_) {
    f.tokens_per_second = (tokens - first_tokens_) / watched;
  }
  return f;
}

DisplayLines JobDisplay::LinesLocked(const v1::Job& job, absl::Time now) const {
  DisplayLines lines;
  if (line_.mode() == DisplayMode::kJson) {
    auto json = MessageToJsonLine(job);
    lines.json = json.ok() ? *json : std::string("{}");
    return lines;
  }
  const ProgressFigures f = FiguresLocked(job, now);
  const v1::JobProgress& p = job.progress();
  lines.terminal = FormatProgressLine(job, f);
  lines.plain = FormatPlainLine(job, f);
  lines.plain_key = absl::StrCat(job.state(), ":", p.shards_done(), "/", p.shards_total(),
                                 ":", p.samples_done(), "/", p.samples_total(), ":",
                                 p.tokens_done());
  if (v1::IsFinalJobState(job.state())) lines.final = FormatFinalLine(job, f);
  return lines;
}

void JobDisplay::Update(const v1::Job& job, absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (line_.finished()) return;
  if (!job_.has_value()) {
    first_seen_ = now;
    first_tokens_ = job.progress().tokens_done();
  }
  job_ = job;
  line_.Show(LinesLocked(job, now), now);
}

void JobDisplay::Tick(absl::Time now) {
  absl::MutexLock lock(&mu_);
  // Rendering only for the terminal: the other modes never redraw.
  if (!job_.has_value() || line_.mode() != DisplayMode::kTerminal) return;
  line_.Tick(LinesLocked(*job_, now), now);
}

void JobDisplay::Finish(absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (!job_.has_value()) return line_.Finish(nullptr, now);
  const DisplayLines last = LinesLocked(*job_, now);
  line_.Finish(&last, now);
}

}  // namespace qcal::client
