// Graceful stop on SIGTERM / SIGINT: the first signal only raises a flag that the training loop polls
// (finish the step, write a checkpoint, exit); a second signal exits the process at once. Writes in
// progress are atomic (temporary names, renamed when complete), so an immediate exit loses nothing.
#pragma once

namespace cifar::signals {

// Installs the handlers (idempotent).
void install_stop_handlers();
// What the first signal prints on stderr (a string literal; the default speaks of training checkpoints).
void set_stop_message(const char* message);
bool stop_requested();
// The signal that asked to stop (SIGTERM, SIGINT), 0 if none.
int stop_signal();
// For tests and for in-process use: ask to stop as if `sig` had arrived.
void request_stop(int sig);
void clear();
// "SIGTERM", "SIGINT", ...
const char* name(int sig);

}  // namespace cifar::signals
