// Ctrl-C handling for the commands that wait (watch, submit --wait, run): while a
// ScopedInterruptHandler lives, SIGINT, SIGTERM and SIGHUP only count (an
// async-signal-safe atomic increment) instead of ending the process; the waiting
// code polls InterruptCount() and winds down cleanly (cancels its stream, stops its
// child processes) and the command exits with 130.
//
// Not reentrant: create at most one at a time, from the main thread.
#ifndef QCAL_CLIENT_INTERRUPT_H_
#define QCAL_CLIENT_INTERRUPT_H_

#include <csignal>

namespace qcal::client {

class ScopedInterruptHandler {
 public:
  // Installs the handlers and resets the count to 0.
  ScopedInterruptHandler();
  // Restores the previous handlers.
  ~ScopedInterruptHandler();

  ScopedInterruptHandler(const ScopedInterruptHandler&) = delete;
  ScopedInterruptHandler& operator=(const ScopedInterruptHandler&) = delete;

 private:
  struct sigaction old_int_, old_term_, old_hup_;
};

// Signals received since the current handler was installed (0 without one).
int InterruptCount();

}  // namespace qcal::client

#endif  // QCAL_CLIENT_INTERRUPT_H_
