// Switches read from the environment.
#pragma once

namespace tenpak {

// True when environment variable `name` is set, not empty and not "0"
// (TENPAK_TRACE_READS=1 turns tracing on; =0 or empty leaves it off).
bool env_flag(const char* name);

}  // namespace tenpak
