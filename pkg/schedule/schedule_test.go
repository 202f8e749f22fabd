package schedule

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in        string
		canonical string
		intervals []time.Duration
		total     time.Duration
	}{
		{"1h,1d/7d", "1h,1d/7d", []time.Duration{time.Hour, Day}, 7 * Day},
		{" 1h , 1d / 7d ", "1h,1d/7d", []time.Duration{time.Hour, Day}, 7 * Day},
		{"\t1h,1d/7d\n", "1h,1d/7d", []time.Duration{time.Hour, Day}, 7 * Day},
		{"60m,24h/1w", "1h,1d/7d", []time.Duration{time.Hour, Day}, 7 * Day},
		{"5m,15m,1h,2h,4h,8h,1d/7d", "5m,15m,1h,2h,4h,8h,1d/7d",
			[]time.Duration{5 * time.Minute, 15 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, Day}, 7 * Day},
		{"1h/1d", "1h/1d", []time.Duration{time.Hour}, Day},
		{"30s/1m", "30s/1m", []time.Duration{30 * time.Second}, time.Minute},
		{"90m,3h/6h", "90m,3h/6h", []time.Duration{90 * time.Minute, 3 * time.Hour}, 6 * time.Hour},
		{"1w/4w", "7d/28d", []time.Duration{Week}, 4 * Week},
		{"007m/14m", "7m/14m", []time.Duration{7 * time.Minute}, 14 * time.Minute},
		{"1s/15250w", "1s/106750d", []time.Duration{time.Second}, 15250 * Week},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := s.String(); got != tt.canonical {
				t.Errorf("String() = %q, want %q", got, tt.canonical)
			}
			if got := s.Intervals(); !slices.Equal(got, tt.intervals) {
				t.Errorf("Intervals() = %v, want %v", got, tt.intervals)
			}
			if s.Total() != tt.total {
				t.Errorf("Total() = %v, want %v", s.Total(), tt.total)
			}
			if s.Every() != tt.intervals[0] {
				t.Errorf("Every() = %v, want %v", s.Every(), tt.intervals[0])
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", `schedule "": empty; want intervals and a total, e.g. "1h,1d/7d"`},
		{"   ", `schedule "   ": empty; want intervals and a total, e.g. "1h,1d/7d"`},
		{"1h,1d", `schedule "1h,1d": missing "/T", how long backups are kept (e.g. "1h,1d/7d")`},
		{"1h/1d/7d", `schedule "1h/1d/7d": more than one "/"; want d1,d2,...,dn/T`},
		{"5m,7m/1h", `schedule "5m,7m/1h": "7m" is not a multiple of "5m"`},
		{"1h,90m/1d", `schedule "1h,90m/1d": "90m" is not a multiple of "1h"`},
		{"1d,1h/7d", `schedule "1d,1h/7d": "1h" must be longer than "1d" before it (intervals grow)`},
		{"1h,60m/7d", `schedule "1h,60m/7d": "60m" must be longer than "1h" before it (intervals grow)`},
		{"1x/1h", `schedule "1x/1h": "1x": unknown unit "x" (use s, m, h, d or w)`},
		{"1h/1y", `schedule "1h/1y": "1y": unknown unit "y" (use s, m, h, d or w)`},
		{"1H/1d", `schedule "1H/1d": "1H": unknown unit "H" (use s, m, h, d or w)`},
		{"1ms/1s", `schedule "1ms/1s": "1ms": unknown unit "ms" (use s, m, h, d or w)`},
		{"1 h/1d", `schedule "1 h/1d": "1 h": unknown unit " h" (use s, m, h, d or w)`},
		{"5/1h", `schedule "5/1h": "5": missing unit (use s, m, h, d or w)`},
		{"h/1d", `schedule "h/1d": "h": want a whole number and a unit, e.g. "5m"`},
		{"+5m/1h", `schedule "+5m/1h": "+5m": want a whole number and a unit, e.g. "5m"`},
		{"1.5h/1d", `schedule "1.5h/1d": "1.5h": want a whole number and one unit, e.g. "90m"`},
		{"1h30m/1d", `schedule "1h30m/1d": "1h30m": want a whole number and one unit, e.g. "90m"`},
		{"0m/1h", `schedule "0m/1h": "0m": must be longer than zero`},
		{"-5m/1h", `schedule "-5m/1h": "-5m": must be longer than zero`},
		{"5m/-1h", `schedule "5m/-1h": "-1h": must be longer than zero`},
		{"1h,,1d/7d", `schedule "1h,,1d/7d": interval 2 is empty`},
		{",1h/1d", `schedule ",1h/1d": interval 1 is empty`},
		{"/7d", `schedule "/7d": interval 1 is empty`},
		{"1h,/7d", `schedule "1h,/7d": interval 2 is empty`},
		{"1h,1d/", `schedule "1h,1d/": the total after "/" is empty`},
		{"1h,1d/ ", `schedule "1h,1d/ ": the total after "/" is empty`},
		{"1h,1d/36h", `schedule "1h,1d/36h": total "36h" is not a multiple of "1d"`},
		{"1h,1d/1d", `schedule "1h,1d/1d": total "1d" must be longer than the last interval "1d"`},
		{"1h,1d/12h", `schedule "1h,1d/12h": total "12h" must be longer than the last interval "1d"`},
		{"1s/15251w", `schedule "1s/15251w": "15251w": too long (at most 15250w)`},
		{"1s/99999999999999999999999s", `schedule "1s/99999999999999999999999s": "99999999999999999999999s": too long (at most 9223372036s)`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error %q", tt.in, s, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse(%q) error\n got: %s\nwant: %s", tt.in, err, tt.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Spec != tt.in {
				t.Errorf("error %#v is not a *ParseError for %q", err, tt.in)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	good := map[string]time.Duration{"1s": time.Second, " 90m ": 90 * time.Minute, "2h": 2 * time.Hour, "1d": Day, "2w": 2 * Week}
	for in, want := range good {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":    `"": want a whole number and a unit, e.g. "5m"`,
		"1h5": `"1h5": want a whole number and one unit, e.g. "90m"`,
		"0s":  `"0s": must be longer than zero`,
		"3y":  `"3y": unknown unit "y" (use s, m, h, d or w)`,
	}
	for in, want := range bad {
		if _, err := ParseDuration(in); err == nil || err.Error() != want {
			t.Errorf("ParseDuration(%q) error = %v, want %s", in, err, want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{45 * time.Minute, "45m"},
		{167 * time.Hour, "6d23h"},
		{Day + 30*time.Minute, "1d30m"},
		{Week, "7d"},
		{90*time.Second + 500*time.Millisecond, "1m30s500ms"},
		{-2 * time.Hour, "-2h"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.d); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// A Spec travels in config and JSON as its canonical text.
func TestSpecText(t *testing.T) {
	t.Parallel()
	type plan struct {
		Schedule Spec `json:"schedule"`
	}
	var p plan
	if err := json.Unmarshal([]byte(`{"schedule":" 60m, 1d /1w"}`), &p); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"schedule":"1h,1d/7d"}` {
		t.Errorf("round trip = %s", b)
	}
	err = json.Unmarshal([]byte(`{"schedule":"5m,7m/1h"}`), &p)
	if err == nil || !errors.As(err, new(*ParseError)) {
		t.Errorf("bad schedule in JSON: error %v, want a *ParseError", err)
	}
}

func TestMustParsePanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("MustParse of a bad spec did not panic")
		}
	}()
	MustParse("1h")
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"1h,1d/7d", "5m,15m,1h,2h,4h,8h,1d/7d", " 1h , 1d / 7d ", "5m,7m/1h", "1x/1h",
		"1h,1d", "1h,,1d/7d", "0m/1h", "-5m/1h", "1s/15251w", "99999999999999999999d/1w",
		"1w/4w", "1h/1d/7d", "", "/", ",/", "1.5h/1d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Reason == "" {
				t.Fatalf("Parse(%q): error %v is not a *ParseError with a reason", in, err)
			}
			return
		}
		// The invariants the retention rule depends on.
		ds := s.Intervals()
		if len(ds) == 0 || ds[0] < time.Second {
			t.Fatalf("Parse(%q) = %v: bad first interval", in, ds)
		}
		for i := 1; i < len(ds); i++ {
			if ds[i] <= ds[i-1] || ds[i]%ds[i-1] != 0 {
				t.Fatalf("Parse(%q): %v does not follow %v", in, ds[i], ds[i-1])
			}
		}
		if last := ds[len(ds)-1]; s.Total() <= last || s.Total()%last != 0 {
			t.Fatalf("Parse(%q): total %v does not follow %v", in, s.Total(), last)
		}
		// The canonical form reads back to the same Spec and is a fixed point.
		canon := s.String()
		s2, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not re-parse: %v", in, canon, err)
		}
		if !slices.Equal(s2.Intervals(), ds) || s2.Total() != s.Total() {
			t.Fatalf("Parse(%q) = %q re-parses to %q", in, canon, s2)
		}
		if s2.String() != canon {
			t.Fatalf("String() not canonical: %q then %q", canon, s2.String())
		}
		if s.SteadyState() < len(ds) {
			t.Fatalf("Parse(%q): steady state %d below one per band", in, s.SteadyState())
		}
	})
}
