/* log.h — one line per event, text or JSON, to stderr.
 *
 * om_log() takes printf-style text; om_log_kv() takes key/value pairs so the
 * JSON format gets fields, not a sentence:
 *   om_log_kv(OM_LOG_INFO, "request", "method", "GET", "path", p, "status",
 *             "200", NULL);
 * Values are escaped for JSON; in text format they print as key=value with
 * quoting when they contain spaces.  Thread-safe (one write(2) per line).
 * Secrets must never be passed in.
 */
#ifndef OM_LOG_H
#define OM_LOG_H

#include "core/config.h"

void om_log_setup(om_log_level level, om_log_format format);
bool om_log_enabled(om_log_level level);
void om_log(om_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* msg then NULL-terminated key, value pairs (values as strings). */
void om_log_kv(om_log_level level, const char *msg, ...) __attribute__((sentinel));

#endif
