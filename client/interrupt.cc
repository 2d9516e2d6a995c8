#include "client/interrupt.h"

#include <atomic>

namespace qcal::client {
namespace {

std::atomic<int> g_interrupts{0};
static_assert(std::atomic<int>::is_always_lock_free, "needed in a signal handler");

extern "C" void OnInterrupt(int) { g_interrupts.fetch_add(1); }

void Install(int signo, struct sigaction* old) {
  struct sigaction action = {};
  action.sa_handler = OnInterrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(signo, &action, old);
}

}  // namespace

ScopedInterruptHandler::ScopedInterruptHandler() {
  g_interrupts.store(0);
  Install(SIGINT, &old_int_);
  Install(SIGTERM, &old_term_);
  Install(SIGHUP, &old_hup_);
}

ScopedInterruptHandler::~ScopedInterruptHandler() {
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGHUP, &old_hup_, nullptr);
  g_interrupts.store(0);
}

int InterruptCount() { return g_interrupts.load(); }

}  // namespace qcal::client
