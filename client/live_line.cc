#include "client/live_line.h"

#include "absl/strings/str_replace.h"

namespace qcal::client {

std::string OneLine(const std::string& text) {
  return absl::StrReplaceAll(text, {{"\r\n", " "}, {"\n", " "}, {"\r", " "}});
}

void LiveLine::Show(const DisplayLines& lines, absl::Time now) {
  if (finished_) return;
  shown_ = true;
  switch (mode_) {
    case DisplayMode::kJson:
      if (!lines.json.empty()) *out_ << lines.json << "\n" << std::flush;
      break;
    case DisplayMode::kPlain:
      if (lines.plain_key == last_plain_key_) break;
      last_plain_key_ = lines.plain_key;
      *out_ << lines.plain << "\n" << std::flush;
      break;
    case DisplayMode::kTerminal:
      Redraw(lines.terminal, now);
      break;
  }
}

void LiveLine::Tick(const DisplayLines& lines, absl::Time now) {
  if (finished_ || mode_ != DisplayMode::kTerminal || !shown_) return;
  if (now - last_draw_ < absl::Seconds(1)) return;
  Redraw(lines.terminal, now);
}

void LiveLine::Redraw(const std::string& line, absl::Time now) {
  std::string padded = line;
  if (line.size() < last_width_) padded.append(last_width_ - line.size(), ' ');
  last_width_ = line.size();
  *out_ << "\r" << padded << std::flush;
  last_draw_ = now;
}

void LiveLine::Finish(const DisplayLines* last, absl::Time now) {
  if (finished_) return;
  finished_ = true;
  if (mode_ == DisplayMode::kJson || last == nullptr) return;
  if (mode_ == DisplayMode::kTerminal) {
    Redraw(last->terminal, now);
    *out_ << "\n";
  }
  if (!last->final.empty()) *out_ << last->final << "\n";
  out_->flush();
}

}  // namespace qcal::client
