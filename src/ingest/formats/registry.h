// Every ingest wire format sluice speaks, in routing order.
#pragma once

#include <vector>

#include "ingest/formats/format.h"

namespace sluice {

// Native first, then the SDK formats (Segment, Amplitude, PostHog, Mixpanel...).
std::vector<FormatPtr> AllFormats();

}  // namespace sluice
