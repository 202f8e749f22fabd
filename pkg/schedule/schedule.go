// Package schedule is the backup schedule grammar and retention rule of a
// backup plan, after CycleCloud's rolling "Backup Plan" schedule (DESIGN §3
// "backup-scheduler"). It is pure: no clock, no I/O.
//
// A schedule is written d1,d2,...,dn/T, for example "1h,1d/7d": a backup is
// taken every d1, and each interval is a multiple of the one before it and
// strictly longer; T, how long backups are kept, is a multiple of dn and
// longer than it. Durations are a whole number and one unit: s, m, h, d (24h)
// or w (7d).
//
// Retention, with d_{n+1} = T: band i (i = 1..n) holds the backups whose age
// is in [s_i, d_{i+1}), where s_1 = 0 and s_i = d_i for i > 1. A band is cut
// into slots d_i long counted from the band's start (slot = floor((age -
// s_i) / d_i)). In each slot of each band the oldest backup is kept and the
// others are deleted; backups T old or older are deleted. A backup's age is
// measured from the time in its name. See [Spec.Retain].
//
// So "1h,1d/7d" keeps at most 24 hourly and 6 daily backups, 30 in all, as
// CycleCloud's documentation says. For "5m,15m,1h,2h,4h,8h,1d/7d" the
// documentation's prose says 14 backups, but its own rule gives
// 3+3+1+1+1+2+6 = 17 (3 of 5m in the first 15m, 3 of 15m up to the hour,
// one each in [1h,2h), [2h,4h) and [4h,8h), 2 of 8h up to a day, 6 daily):
// this package follows the rule, and [Spec.SteadyState] says 17.
//
// Pruning deletes only where a slot holds more than one backup (or a backup
// is T old), so changing a schedule never wipes the backups: each occupied
// slot of the new schedule keeps one.
package schedule

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Day and Week are the units d and w of the grammar.
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

// Spec is a parsed schedule. The zero Spec is no schedule: Parse never
// returns it, and [Spec.Retain] on it keeps everything.
type Spec struct {
	intervals []time.Duration // d1..dn, each a multiple of the one before
	total     time.Duration   // T
}

// Parse parses a schedule d1,d2,...,dn/T (e.g. "1h,1d/7d"). Whitespace
// around each part is ignored. The error, a *ParseError, names the part
// that is wrong and why.
func Parse(spec string) (Spec, error) {
	fail := func(format string, args ...any) (Spec, error) {
		return Spec{}, &ParseError{Spec: spec, Reason: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(spec) == "" {
		return fail(`empty; want intervals and a total, e.g. "1h,1d/7d"`)
	}
	list, totalPart, ok := strings.Cut(spec, "/")
	if !ok {
		return fail(`missing "/T", how long backups are kept (e.g. "1h,1d/7d")`)
	}
	if strings.Contains(totalPart, "/") {
		return fail(`more than one "/"; want d1,d2,...,dn/T`)
	}
	parts := strings.Split(list, ",")
	s := Spec{intervals: make([]time.Duration, 0, len(parts))}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return fail("interval %d is empty", i+1)
		}
		d, err := parseDuration(p)
		if err != nil {
			return fail("%v", err)
		}
		if i > 0 {
			prev := strings.TrimSpace(parts[i-1])
			if d <= s.intervals[i-1] {
				return fail("%q must be longer than %q before it (intervals grow)", p, prev)
			}
			if d%s.intervals[i-1] != 0 {
				return fail("%q is not a multiple of %q", p, prev)
			}
		}
		s.intervals = append(s.intervals, d)
	}
	totalPart = strings.TrimSpace(totalPart)
	if totalPart == "" {
		return fail(`the total after "/" is empty`)
	}
	t, err := parseDuration(totalPart)
	if err != nil {
		return fail("%v", err)
	}
	last, lastPart := s.intervals[len(s.intervals)-1], strings.TrimSpace(parts[len(parts)-1])
	if t <= last {
		return fail("total %q must be longer than the last interval %q", totalPart, lastPart)
	}
	if t%last != 0 {
		return fail("total %q is not a multiple of %q", totalPart, lastPart)
	}
	s.total = t
	return s, nil
}

// MustParse is Parse for specs known to be good (constants, tests); it
// panics on a bad one.
func MustParse(spec string) Spec {
	s, err := Parse(spec)
	if err != nil {
		panic(err)
	}
	return s
}

// ParseError is a schedule that does not parse.
type ParseError struct {
	Spec   string // the schedule as given
	Reason string // what is wrong, naming the offending part
}

func (e *ParseError) Error() string { return fmt.Sprintf("schedule %q: %s", e.Spec, e.Reason) }

// ParseDuration parses one duration of the grammar: a positive whole number
// and a unit, s, m, h, d or w (e.g. "90m", "1d"). Unlike time.ParseDuration
// it knows days and weeks, which schedules are written in.
func ParseDuration(s string) (time.Duration, error) {
	return parseDuration(strings.TrimSpace(s))
}

const unitHelp = "(use s, m, h, d or w)"

func parseDuration(p string) (time.Duration, error) {
	digits := p
	if strings.HasPrefix(p, "-") {
		digits = p[1:]
	}
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf(`%q: want a whole number and a unit, e.g. "5m"`, p)
	}
	num, unitStr := digits[:n], digits[n:]
	var unit time.Duration
	switch unitStr {
	case "s":
		unit = time.Second
	case "m":
		unit = time.Minute
	case "h":
		unit = time.Hour
	case "d":
		unit = Day
	case "w":
		unit = Week
	case "":
		return 0, fmt.Errorf("%q: missing unit %s", p, unitHelp)
	default:
		if strings.ContainsAny(unitStr, "0123456789.,") {
			return 0, fmt.Errorf(`%q: want a whole number and one unit, e.g. "90m"`, p)
		}
		return 0, fmt.Errorf("%q: unknown unit %q %s", p, unitStr, unitHelp)
	}
	if len(digits) != len(p) || strings.Trim(num, "0") == "" {
		return 0, fmt.Errorf("%q: must be longer than zero", p)
	}
	v, err := strconv.ParseUint(num, 10, 63)
	if err != nil || v > uint64(math.MaxInt64/int64(unit)) {
		return 0, fmt.Errorf("%q: too long (at most %d%s)", p, math.MaxInt64/int64(unit), unitStr)
	}
	return time.Duration(v) * unit, nil
}

// String is the canonical form, which Parse reads back to the same Spec:
// no spaces, each duration in the largest of d, h, m and s that divides it
// (weeks are written as days, "7d", as the seed writes them).
func (s Spec) String() string {
	if len(s.intervals) == 0 {
		return ""
	}
	var b strings.Builder
	for i, d := range s.intervals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(formatUnit(d))
	}
	b.WriteByte('/')
	b.WriteString(formatUnit(s.total))
	return b.String()
}

// MarshalText writes the canonical form, so a Spec can sit in a config
// struct or a JSON document.
func (s Spec) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a schedule (see Parse).
func (s *Spec) UnmarshalText(b []byte) error {
	p, err := Parse(string(b))
	if err != nil {
		return err
	}
	*s = p
	return nil
}

// Every is the first interval d1: how often a backup is taken.
func (s Spec) Every() time.Duration {
	if len(s.intervals) == 0 {
		return 0
	}
	return s.intervals[0]
}

// Intervals returns d1..dn (a copy).
func (s Spec) Intervals() []time.Duration {
	return append([]time.Duration(nil), s.intervals...)
}

// Total is T: backups this old or older are deleted.
func (s Spec) Total() time.Duration { return s.total }

// formatUnit writes d as one whole number and the largest of d, h, m, s
// that divides it exactly, the grammar's own form; anything finer than a
// second falls back to Go's notation.
func formatUnit(d time.Duration) string {
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{Day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d%u.unit == 0 {
			return strconv.FormatInt(int64(d/u.unit), 10) + u.name
		}
	}
	return d.String()
}

// FormatDuration writes d for people in days, hours, minutes and seconds,
// leaving out the zero ones: "0s", "45m", "6d23h", "1d30m". Ages of
// backups are shown this way.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		if d == math.MinInt64 {
			return d.String()
		}
		d = -d
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{Day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d >= u.unit {
			b.WriteString(strconv.FormatInt(int64(d/u.unit), 10))
			b.WriteString(u.name)
			d %= u.unit
		}
	}
	if d > 0 {
		b.WriteString(d.String())
	}
	return b.String()
}
