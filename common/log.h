// Structured logging: one line per event, `level=… event=… key=value …`, to stderr.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace slacker::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Parses "debug|info|warn|error"; false if unknown.
bool ParseLevel(std::string_view name, Level* out);
void SetLevel(Level level);
bool Enabled(Level level);

using Field = std::pair<std::string_view, std::string>;
// Values containing spaces, quotes or '=' are quoted.
void Emit(Level level, std::string_view event, std::initializer_list<Field> fields);

inline void Debug(std::string_view e, std::initializer_list<Field> f = {}) { Emit(Level::kDebug, e, f); }
inline void Info(std::string_view e, std::initializer_list<Field> f = {}) { Emit(Level::kInfo, e, f); }
inline void Warn(std::string_view e, std::initializer_list<Field> f = {}) { Emit(Level::kWarn, e, f); }
inline void Error(std::string_view e, std::initializer_list<Field> f = {}) { Emit(Level::kError, e, f); }

}  // namespace slacker::log
