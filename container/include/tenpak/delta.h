// Building, reading and rebuilding deltas: both halves, for the offline
// tools and tests. The mount includes tenpak/delta_reader.h only; building
// is tenpak/delta_builder.h.
#pragma once
#include "tenpak/delta_builder.h"
#include "tenpak/delta_reader.h"
