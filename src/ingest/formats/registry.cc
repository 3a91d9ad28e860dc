#include "ingest/formats/registry.h"

#include "ingest/formats/amplitude.h"
#include "ingest/formats/mixpanel.h"
#include "ingest/formats/native.h"
#include "ingest/formats/posthog.h"
#include "ingest/formats/segment.h"

namespace sluice {

std::vector<FormatPtr> AllFormats() {
  std::vector<FormatPtr> formats;
  formats.push_back(NewNativeFormat());
  // SDK formats; their routes do not overlap (Amplitude owns "/batch",
  // PostHog "/batch/", and hands PostHog bodies on "/batch" over).
  formats.push_back(NewSegmentFormat());  // Segment and RudderStack
  formats.push_back(NewAmplitudeFormat());
  formats.push_back(NewPostHogFormat());
  formats.push_back(NewMixpanelFormat());
  return formats;
}

}  // namespace sluice
