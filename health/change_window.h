// Change windows ([service.rollout] windows): whether an instant lies inside one, and when the
// next one opens, in each window's own time zone (config::TimeZone; DST changes included).
// Pure: the instant is passed in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"

namespace weir::health {

// Whether the Unix time `unix_ms` is inside `w` (its local day and minute).
bool window_open(const config::ChangeWindow& w, uint64_t unix_ms);
// The first minute at or after `unix_ms` inside one of `windows` (Unix ms), 0 when none opens
// within eight days.
uint64_t next_window_open(const std::vector<config::ChangeWindow>& windows, uint64_t unix_ms);
// "" when `unix_ms` is inside one of `windows` (or there are none); else the hold's text:
// "a change window (Mon-Fri 09:00-16:00 Europe/Berlin; next opens 2026-12-08 09:00 CET)".
std::string closed_windows(const std::vector<config::ChangeWindow>& windows, uint64_t unix_ms);

}  // namespace weir::health
