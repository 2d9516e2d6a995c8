// What every progress display shares (jobs in client/progress.h, operations in
// client/operation_wait.h): on a terminal one line redrawn in place with '\r' (the
// remains of a longer previous line blanked), otherwise a plain line each time what
// it says changes, or JSON lines; then the closing line. The owner renders the lines
// of each version it sees; LiveLine decides what reaches the stream and when.
// Not thread-safe: an owner updated from several threads (a watcher and a timer)
// holds its own lock around every call.
#ifndef QCAL_CLIENT_LIVE_LINE_H_
#define QCAL_CLIENT_LIVE_LINE_H_

#include <cstddef>
#include <ostream>
#include <string>

#include "absl/time/time.h"

namespace qcal::client {

enum class DisplayMode { kTerminal, kPlain, kJson };

// The lines of one version of the thing shown (none ends with a newline).
struct DisplayLines {
  std::string terminal;   // the line redrawn in place
  std::string plain;      // the plain line
  std::string plain_key;  // plain mode prints `plain` only when this changed
  std::string json;       // JSON mode prints it when not empty
  std::string final;      // the closing line; empty while the thing is not final
};

// `text` with every line break turned into a space (messages shown on one line).
std::string OneLine(const std::string& text);

class LiveLine {
 public:
  // `out` must outlive the display.
  LiveLine(std::ostream* out, DisplayMode mode) : out_(out), mode_(mode) {}

  DisplayMode mode() const { return mode_; }
  bool finished() const { return finished_; }

  // A new version, received at `now`. Ignored once finished.
  void Show(const DisplayLines& lines, absl::Time now);
  // Terminal mode: redraws `lines` (the current version at `now`) so the clock
  // moves, at most once a second and only after something was shown.
  void Tick(const DisplayLines& lines, absl::Time now);
  // Ends the display: terminal mode redraws `last` and ends its line; terminal and
  // plain modes then print last->final when it is not empty. `last` is null when no
  // version was seen. Idempotent.
  void Finish(const DisplayLines* last, absl::Time now);

 private:
  void Redraw(const std::string& line, absl::Time now);

  std::ostream* const out_;
  const DisplayMode mode_;
  std::string last_plain_key_;
  absl::Time last_draw_ = absl::InfinitePast();
  size_t last_width_ = 0;
  bool shown_ = false;
  bool finished_ = false;
};

}  // namespace qcal::client

#endif  // QCAL_CLIENT_LIVE_LINE_H_
