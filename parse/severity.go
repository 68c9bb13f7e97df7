package parse

import "github.com/berthlog/berth/logs"

// SeverityOf maps a level field's value to a SeverityNumber as the
// OpenTelemetry log data model does (its appendix B for syslog, log4j and
// zap names); 0 if berth does not know it.
//
// Text, in any case: trace; debug, dbug; info, information,
// informational; notice (INFO2); warn, warning; err, error, eror; crit,
// critical, dpanic (ERROR2); alert, panic (ERROR3); fatal, emerg,
// emergency (FATAL); and the data model's short names with a digit, trace2
// to fatal4.
//
// A number (or a string of digits): 0 to 7 are syslog's severities (0
// emergency FATAL, 1 alert ERROR3, 2 critical ERROR2, 3 error, 4 warning, 5
// notice INFO2, 6 informational INFO, 7 debug); 10 to 69 are bunyan's and
// pino's levels by tens (10 trace, 20 debug, 30 info, 40 warn, 50 error, 60
// fatal). Other numbers are unknown.
func SeverityOf(v []byte, kind logs.Kind) logs.Severity {
	if kind != logs.KindString && kind != logs.KindInt {
		return 0
	}
	if n, ok := smallInt(v); ok {
		switch {
		case n <= 7:
			return syslog[n]
		case n >= 10 && n < 70:
			return bunyan[n/10-1]
		}
		return 0
	}
	if kind != logs.KindString || len(v) > 16 {
		return 0
	}
	var low [16]byte
	for i, c := range v {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	name := low[:len(v)]
	var step logs.Severity
	if n := len(name); n > 1 && name[n-1] >= '2' && name[n-1] <= '4' {
		step = logs.Severity(name[n-1] - '1')
		name = name[:n-1]
	}
	var s logs.Severity
	switch string(name) {
	case "trace":
		s = logs.SeverityTrace
	case "debug":
		s = logs.SeverityDebug
	case "info":
		s = logs.SeverityInfo
	case "warn":
		s = logs.SeverityWarn
	case "error":
		s = logs.SeverityError
	case "fatal":
		s = logs.SeverityFatal
	}
	if s != 0 {
		return s + step
	}
	if step != 0 {
		return 0
	}
	switch string(name) {
	case "dbug":
		return logs.SeverityDebug
	case "information", "informational":
		return logs.SeverityInfo
	case "notice":
		return logs.SeverityInfo + 1
	case "warning":
		return logs.SeverityWarn
	case "err", "eror":
		return logs.SeverityError
	case "crit", "critical", "dpanic":
		return logs.SeverityError + 1
	case "alert", "panic":
		return logs.SeverityError + 2
	case "emerg", "emergency":
		return logs.SeverityFatal
	}
	return 0
}

// syslog maps syslog's severities 0 to 7.
var syslog = [8]logs.Severity{
	logs.SeverityFatal, logs.SeverityError + 2, logs.SeverityError + 1, logs.SeverityError,
	logs.SeverityWarn, logs.SeverityInfo + 1, logs.SeverityInfo, logs.SeverityDebug,
}

// bunyan maps bunyan's and pino's levels 10 to 60, by tens.
var bunyan = [6]logs.Severity{
	logs.SeverityTrace, logs.SeverityDebug, logs.SeverityInfo, logs.SeverityWarn, logs.SeverityError, logs.SeverityFatal,
}

// smallInt reads v as a non-negative decimal integer of at most 3 digits.
func smallInt(v []byte) (int, bool) {
	if len(v) == 0 || len(v) > 3 {
		return 0, false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
