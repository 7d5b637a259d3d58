// weir's error log: one line per event on stderr, stamped with the UTC time (RFC 3339, ms), a
// level and the thread that wrote it (a worker's index, or "main" for the control thread).
// Text by default ("2026-12-07T12:00:00.123Z warn worker=1 weir: ..."), JSON lines with
// `[log] format = "json"`. Each line goes out in one write(2), so threads never interleave.
#pragma once

#include <string>
#include <string_view>

#include "config/config.h"

namespace weir::proxy {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
using LogFormat = config::LogSettings::Format;  // [log] format

// Process-wide; set when a configuration is loaded or reloaded (text until then).
void set_log_format(LogFormat format);
// The calling thread's worker index for its lines (-1: the control thread, the default).
void set_log_worker(int worker);

// printf-style; `fmt` is the message without the "weir: " prefix the text format adds.
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// One whole line (with its '\n'), as log() writes it; `time` is an RFC 3339 time stamp.
std::string format_log_line(LogFormat format, LogLevel level, int worker, std::string_view time,
                            std::string_view message);
const char* log_level_name(LogLevel level);

}  // namespace weir::proxy
