package schedule

import (
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBands(t *testing.T) {
	t.Parallel()
	const (
		m = time.Minute
		h = time.Hour
	)
	tests := []struct {
		spec   string
		bands  []Band
		steady int
	}{
		{"1h,1d/7d", []Band{{0, Day, h, 24}, {Day, 7 * Day, Day, 6}}, 30},
		{"5m,15m,1h,2h,4h,8h,1d/7d", []Band{
			{0, 15 * m, 5 * m, 3},
			{15 * m, h, 15 * m, 3},
			{h, 2 * h, h, 1},
			{2 * h, 4 * h, 2 * h, 1},
			{4 * h, 8 * h, 4 * h, 1},
			{8 * h, Day, 8 * h, 2},
			{Day, 7 * Day, Day, 6},
		}, 17}, // the seed's prose says 14; its rule gives 17
		{"1h/1d", []Band{{0, Day, h, 24}}, 24},
		{"30s/1m", []Band{{0, m, 30 * time.Second, 2}}, 2},
		{"1d,1w/4w", []Band{{0, Week, Day, 7}, {Week, 4 * Week, Week, 3}}, 10},
	}
	for _, tt := range tests {
		s := MustParse(tt.spec)
		if got := s.Bands(); !slices.Equal(got, tt.bands) {
			t.Errorf("%s: Bands() = %v, want %v", tt.spec, got, tt.bands)
		}
		if got := s.SteadyState(); got != tt.steady {
			t.Errorf("%s: SteadyState() = %d, want %d", tt.spec, got, tt.steady)
		}
		if e := Explain(s); e.SteadyState != tt.steady || !slices.Equal(e.Bands, tt.bands) || e.Spec.String() != s.String() {
			t.Errorf("%s: Explain() = %+v", tt.spec, e)
		}
	}
}

func TestSimulateNarrative(t *testing.T) {
	t.Parallel()
	s := MustParse("1h,1d/7d")
	hours := func(hs ...int) []time.Duration {
		var ds []time.Duration
		for _, h := range hs {
			ds = append(ds, time.Duration(h)*time.Hour)
		}
		return ds
	}
	upTo := func(n int) []int {
		var hs []int
		for h := 0; h < n; h++ {
			hs = append(hs, h)
		}
		return hs
	}
	tests := []struct {
		span time.Duration
		want []time.Duration
	}{
		{time.Hour, hours(0)},
		{24 * time.Hour, hours(upTo(24)...)},
		{25 * time.Hour, hours(append(upTo(24), 24)...)},                    // the 25th: the oldest is the first daily
		{26 * time.Hour, hours(append(upTo(24), 25)...)},                    // the hourly that turns a day old goes
		{48 * time.Hour, hours(append(upTo(24), 47)...)},                    // ...until a day has passed
		{49 * time.Hour, hours(append(upTo(24), 24, 48)...)},                // first and second daily
		{48*time.Hour + 30*time.Minute, hours(append(upTo(24), 24, 48)...)}, // a backup at 48h, not at 48h30m
		{3 * Week, hours(append(upTo(24), 47, 71, 95, 119, 143, 167)...)},
	}
	for _, tt := range tests {
		got, err := Simulate(s, time.Hour, tt.span, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("for %s: kept ages %v, want %v", FormatDuration(tt.span), got, tt.want)
		}
	}
}

// TestSteadyState: taking one backup every d1, a schedule never keeps more
// than its steady-state count, and from T on keeps exactly that many —
// for the seed's two examples and for random schedules.
func TestSteadyState(t *testing.T) {
	t.Parallel()
	specs := []string{"1h,1d/7d", "5m,15m,1h,2h,4h,8h,1d/7d"}
	r := rand.New(rand.NewSource(3))
	for len(specs) < 300 {
		spec := randomSpec(r)
		if s := MustParse(spec); s.Total()/s.Every() <= 2000 {
			specs = append(specs, spec)
		}
	}
	for _, spec := range specs {
		s := MustParse(spec)
		want := s.SteadyState()
		steps := 0
		err := simulate(s, s.Every(), 4*s.Total(), 1, func(clock time.Time, kept []Backup) {
			steps++
			if len(kept) > want {
				t.Fatalf("%s after %s: %d kept, more than the steady state %d", spec, FormatDuration(clock.Sub(simStart)), len(kept), want)
			}
			if clock.Sub(simStart) >= s.Total() && len(kept) != want {
				t.Fatalf("%s after %s: %d kept, want exactly %d", spec, FormatDuration(clock.Sub(simStart)), len(kept), want)
			}
		})
		if err != nil || steps != int(4*s.Total()/s.Every()) {
			t.Fatalf("%s: %d steps, %v", spec, steps, err)
		}
	}
	// The seed's second example, over five simulated weeks.
	got, err := Simulate(MustParse("5m,15m,1h,2h,4h,8h,1d/7d"), 5*time.Minute, 5*Week, 1)
	if err != nil || len(got) != 17 {
		t.Fatalf("5m,15m,1h,2h,4h,8h,1d/7d after 5 weeks keeps %d (%v), want 17", len(got), err)
	}
}

// Taking backups less often than d1 never keeps more than the steady
// state either; min_keep keeps one even when backups come less often than T.
func TestSimulateOtherRates(t *testing.T) {
	t.Parallel()
	s := MustParse("1h,1d/7d")
	for _, every := range []time.Duration{90 * time.Minute, 5 * time.Hour, 25 * time.Hour} {
		got, err := Simulate(s, every, 4*Week, 1)
		if err != nil || len(got) == 0 || len(got) > 30 || got[0] != 0 {
			t.Errorf("every %s: kept %v, %v", FormatDuration(every), got, err)
		}
	}
	for minKeep, want := range []int{1, 1, 2} { // min_keep 0: only the new one (age 0) survives
		got, err := Simulate(s, 8*Day, 8*Week, minKeep)
		if err != nil || len(got) != want {
			t.Errorf("every 8d, min_keep %d: kept %v, %v; want %d", minKeep, got, err, want)
		}
	}
}

func TestSimulateErrors(t *testing.T) {
	t.Parallel()
	s := MustParse("1h,1d/7d")
	tests := []struct {
		spec        Spec
		every, span time.Duration
		want        string
	}{
		{Spec{}, time.Hour, Day, "simulate: no schedule"},
		{s, 0, Day, "simulate: every is 0s; it must be longer than zero"},
		{s, -time.Hour, Day, "simulate: every is -1h0m0s; it must be longer than zero"},
		{s, time.Hour, 0, "simulate: span is 0s; it must be longer than zero"},
		{s, time.Second, 52 * Week, "simulate: a backup every 1s for 364d is 31449600 backups; at most 1000000"},
	}
	for _, tt := range tests {
		_, err := Simulate(tt.spec, tt.every, tt.span, 1)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Simulate(%v, %v, %v): error %v, want %q", tt.spec, tt.every, tt.span, err, tt.want)
		}
	}
}
