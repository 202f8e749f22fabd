package schedule

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"
)

// now is the fixed "now" of the retention tests.
var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// aged is a backup of the given age at now, named by its age.
func aged(age time.Duration, verified bool) Backup {
	return Backup{Name: FormatDuration(age), Time: now.Add(-age), Verified: verified}
}

func TestRetain(t *testing.T) {
	t.Parallel()
	const (
		h = time.Hour
		m = time.Minute
	)
	type want struct {
		keep bool
		rule string
	}
	tests := []struct {
		name    string
		spec    string
		backups []Backup
		minKeep int
		want    map[string]want // by backup name
	}{
		{name: "nothing", spec: "1h,1d/7d", want: map[string]want{}},
		{
			name:    "one per hourly slot",
			spec:    "1h,1d/7d",
			backups: []Backup{aged(0, true), aged(h, true), aged(2*h+30*m, true)},
			want: map[string]want{
				"0s":    {true, "band 1 (1h) slot 0: oldest in slot"},
				"1h":    {true, "band 1 (1h) slot 1: oldest in slot"},
				"2h30m": {true, "band 1 (1h) slot 2: oldest in slot"},
			},
		},
		{
			name:    "two in one slot keeps the older",
			spec:    "1h,1d/7d",
			backups: []Backup{aged(10*m, true), aged(50*m, true)},
			want: map[string]want{
				"10m": {false, "band 1 (1h) slot 0: newer than the kept oldest"},
				"50m": {true, "band 1 (1h) slot 0: oldest in slot"},
			},
		},
		{
			name:    "band edges",
			spec:    "1h,1d/7d",
			backups: []Backup{aged(24*h-time.Second, true), aged(24*h, true), aged(7*24*h-time.Second, true), aged(7*24*h, true)},
			want: map[string]want{
				"23h59m59s":   {true, "band 1 (1h) slot 23: oldest in slot"},
				"1d":          {true, "band 2 (1d) slot 0: oldest in slot"},
				"6d23h59m59s": {true, "band 2 (1d) slot 5: oldest in slot"},
				"7d":          {false, "T (7d) old or older"},
			},
		},
		{
			name:    "daily slot counted from the band's start",
			spec:    "1h,1d/7d",
			backups: []Backup{aged(24*h, true), aged(25*h, true), aged(47*h, true), aged(48*h, true)},
			want: map[string]want{
				"1d":    {false, "band 2 (1d) slot 0: newer than the kept oldest"},
				"1d1h":  {false, "band 2 (1d) slot 0: newer than the kept oldest"},
				"1d23h": {true, "band 2 (1d) slot 0: oldest in slot"},
				"2d":    {true, "band 2 (1d) slot 1: oldest in slot"},
			},
		},
		{
			name: "every band of a long schedule",
			spec: "5m,15m,1h/1d",
			backups: []Backup{
				aged(0, true), aged(4*m, true), aged(5*m, true), aged(14*m, true),
				aged(15*m, true), aged(29*m, true), aged(30*m, true), aged(59*m, true),
				aged(h, true), aged(h+59*m, true), aged(2*h, true), aged(23*h+59*m, true), aged(24*h, true),
			},
			want: map[string]want{
				"0s":     {false, "band 1 (5m) slot 0: newer than the kept oldest"},
				"4m":     {true, "band 1 (5m) slot 0: oldest in slot"},
				"5m":     {true, "band 1 (5m) slot 1: oldest in slot"},
				"14m":    {true, "band 1 (5m) slot 2: oldest in slot"},
				"15m":    {false, "band 2 (15m) slot 0: newer than the kept oldest"},
				"29m":    {true, "band 2 (15m) slot 0: oldest in slot"},
				"30m":    {true, "band 2 (15m) slot 1: oldest in slot"},
				"59m":    {true, "band 2 (15m) slot 2: oldest in slot"},
				"1h":     {false, "band 3 (1h) slot 0: newer than the kept oldest"},
				"1h59m":  {true, "band 3 (1h) slot 0: oldest in slot"},
				"2h":     {true, "band 3 (1h) slot 1: oldest in slot"},
				"23h59m": {true, "band 3 (1h) slot 22: oldest in slot"},
				"1d":     {false, "T (1d) old or older"},
			},
		},
		{
			name:    "in the future",
			spec:    "1h,1d/7d",
			backups: []Backup{aged(-5*m, true), aged(-10*m, true), aged(0, true)},
			want: map[string]want{
				"-5m":  {true, "in the future (clock skew?)"},
				"-10m": {true, "in the future (clock skew?)"},
				"0s":   {true, "band 1 (1h) slot 0: oldest in slot"},
			},
		},
		{
			name:    "same time: the smaller name is older",
			spec:    "1h,1d/7d",
			backups: []Backup{{Name: "b", Time: now.Add(-m)}, {Name: "a", Time: now.Add(-m)}},
			want: map[string]want{
				"a": {true, "band 1 (1h) slot 0: oldest in slot"},
				"b": {false, "band 1 (1h) slot 0: newer than the kept oldest"},
			},
		},
		{
			name:    "min_keep keeps the last good one past T",
			spec:    "1h,1d/7d",
			backups: []Backup{aged(8*24*h, true), aged(9*24*h, true), aged(10*24*h, true)},
			minKeep: 1,
			want: map[string]want{
				"8d":  {true, "min_keep: one of the newest 1 verified"},
				"9d":  {false, "T (7d) old or older"},
				"10d": {false, "T (7d) old or older"},
			},
		},
		{
			name:    "min_keep counts only verified backups",
			spec:    "1h,1d/7d",
			backups: []Backup{aged(8*24*h, false), aged(9*24*h, true), aged(10*24*h, true)},
			minKeep: 1,
			want: map[string]want{
				"8d":  {false, "T (7d) old or older"},
				"9d":  {true, "min_keep: one of the newest 1 verified"},
				"10d": {false, "T (7d) old or older"},
			},
		},
		{
			name:    "min_keep leaves the rule's own keeps alone",
			spec:    "1h,1d/7d",
			backups: []Backup{aged(0, true), aged(10*m, true), aged(50*m, true), aged(8*24*h, true)},
			minKeep: 2,
			want: map[string]want{
				"0s":  {true, "min_keep: one of the newest 2 verified"},
				"10m": {true, "min_keep: one of the newest 2 verified"},
				"50m": {true, "band 1 (1h) slot 0: oldest in slot"},
				"8d":  {false, "T (7d) old or older"},
			},
		},
		{
			name:    "min_keep 0 deletes everything past T",
			spec:    "1h/1d",
			backups: []Backup{aged(2*24*h, true)},
			want:    map[string]want{"2d": {false, "T (1d) old or older"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := MustParse(tt.spec).Retain(now, tt.backups, tt.minKeep)
			if len(got) != len(tt.backups) {
				t.Fatalf("%d decisions for %d backups", len(got), len(tt.backups))
			}
			for i, d := range got {
				if d.Backup != tt.backups[i] {
					t.Errorf("decision %d is for %q, want %q (input order)", i, d.Backup.Name, tt.backups[i].Name)
				}
				w, ok := tt.want[d.Backup.Name]
				if !ok {
					t.Fatalf("no expectation for %q", d.Backup.Name)
				}
				if d.Keep != w.keep || d.Rule != w.rule {
					t.Errorf("%s: keep=%v %q, want keep=%v %q", d.Backup.Name, d.Keep, d.Rule, w.keep, w.rule)
				}
			}
		})
	}
}

// The zero Spec is no schedule, and deletes nothing.
func TestRetainZeroSpec(t *testing.T) {
	t.Parallel()
	for _, d := range (Spec{}).Retain(now, []Backup{aged(0, true), aged(1000*24*time.Hour, false)}, 0) {
		if !d.Keep {
			t.Errorf("zero Spec deleted %s (%s)", d.Backup.Name, d.Rule)
		}
	}
}

// TestSeedNarrative is CycleCloud's description of "1h,1d/7d" with one
// backup an hour, step by step.
func TestSeedNarrative(t *testing.T) {
	t.Parallel()
	s := MustParse("1h,1d/7d")
	start := time.Date(2015, 12, 23, 12, 19, 17, 0, time.FixedZone("", -5*3600))
	first := Backup{Name: "first", Time: start, Verified: true}
	var kept []Backup
	byName := func(ds []Decision, name string) Decision {
		for _, d := range ds {
			if d.Backup.Name == name {
				return d
			}
		}
		t.Fatalf("no decision for %q", name)
		return Decision{}
	}
	for k := 0; k < 5*7*24; k++ {
		clock := start.Add(time.Duration(k) * time.Hour)
		b := Backup{Name: fmt.Sprintf("backup-%d", k+1), Time: clock, Verified: true}
		if k == 0 {
			b = first
		}
		kept = append(kept, b)
		ds := s.Retain(clock, kept, 1)
		kept = kept[:0]
		for _, d := range ds {
			if d.Keep {
				kept = append(kept, d.Backup)
			}
		}
		n := k + 1 // this is the n-th backup
		switch {
		case n <= 24:
			// Hourly backups for one full day: all kept.
			if len(kept) != n {
				t.Fatalf("after backup %d: %d kept, want all %d", n, len(kept), n)
			}
		case n == 25:
			// "When the 25th is taken, the oldest backup will be preserved
			// as the first daily backup."
			if d := byName(ds, "first"); !d.Keep || d.Rule != "band 2 (1d) slot 0: oldest in slot" {
				t.Fatalf("25th backup: the oldest is %+v, want kept as the first daily", d)
			}
			if len(kept) != 25 {
				t.Fatalf("after the 25th backup %d kept, want 25", len(kept))
			}
		case n <= 48:
			// "Subsequent hourly backups will be deleted until another day
			// elapses": the one that just turned a day old goes, the first stays.
			gone := byName(ds, fmt.Sprintf("backup-%d", n-24))
			if gone.Keep || gone.Rule != "band 2 (1d) slot 0: newer than the kept oldest" {
				t.Fatalf("backup %d: backup-%d (1d old) is %+v, want deleted", n, n-24, gone)
			}
			if !byName(ds, "first").Keep || len(kept) != 25 {
				t.Fatalf("backup %d: first kept=%v, %d kept; want the first kept and 25", n, byName(ds, "first").Keep, len(kept))
			}
		case n == 49:
			// "...at which time the oldest backup becomes the second daily
			// backup and the day-old backup becomes the first daily backup."
			if d := byName(ds, "first"); !d.Keep || d.Rule != "band 2 (1d) slot 1: oldest in slot" {
				t.Fatalf("49th backup: the first is %+v, want the second daily", d)
			}
			if d := byName(ds, "backup-25"); !d.Keep || d.Rule != "band 2 (1d) slot 0: oldest in slot" {
				t.Fatalf("49th backup: the day-old one is %+v, want the first daily", d)
			}
			if len(kept) != 26 {
				t.Fatalf("after the 49th backup %d kept, want 26", len(kept))
			}
		case n < 7*24:
			if len(kept) > 30 {
				t.Fatalf("after backup %d: %d kept, more than 30", n, len(kept))
			}
		case n == 7*24:
			// The first is 167h old: 24 hourly and 6 daily, 30 in all.
			if !byName(ds, "first").Keep || len(kept) != 30 {
				t.Fatalf("after backup %d: %d kept (first kept=%v), want 30 with the first", n, len(kept), byName(ds, "first").Keep)
			}
		case n == 7*24+1:
			// "When the oldest backup is over a week old, it will be removed."
			if d := byName(ds, "first"); d.Keep || d.Rule != "T (7d) old or older" {
				t.Fatalf("backup %d: the week-old first backup is %+v, want deleted", n, d)
			}
			fallthrough
		default:
			// Steady state: exactly 30, never more.
			if len(kept) != 30 {
				t.Fatalf("after backup %d (%v in): %d kept, want exactly 30", n, clock.Sub(start), len(kept))
			}
		}
	}
}

// reference is the retention rule written straight from its definition,
// one backup at a time, with no sorting or cleverness: O(n^2).
func reference(s Spec, now time.Time, bs []Backup, minKeep int) []Decision {
	d := append(s.Intervals(), s.Total()) // d[i] is d_{i+1}; d[n] is T
	n := len(d) - 1
	// place returns the band (0-based) and slot of an age in [0, T).
	place := func(age time.Duration) (int, int64) {
		for i := 0; i < n; i++ {
			start := d[i] // s_i = d_i for i > 1
			if i == 0 {
				start = 0 // s_1 = 0
			}
			if start <= age && age < d[i+1] {
				return i, int64((age - start) / d[i])
			}
		}
		panic(fmt.Sprintf("age %v in no band of %v", age, s))
	}
	olderThan := func(i, j int) bool { // bs[i] is strictly older than bs[j]
		if !bs[i].Time.Equal(bs[j].Time) {
			return bs[i].Time.Before(bs[j].Time)
		}
		if bs[i].Name != bs[j].Name {
			return bs[i].Name < bs[j].Name
		}
		return i < j
	}
	out := make([]Decision, len(bs))
	for i, b := range bs {
		out[i].Backup = b
		age := now.Sub(b.Time)
		switch {
		case age < 0:
			out[i].Keep, out[i].Rule = true, "in the future (clock skew?)"
		case age >= s.Total():
			out[i].Rule = "T (" + formatUnit(s.Total()) + ") old or older"
		default:
			band, slot := place(age)
			oldest := true
			for j, c := range bs {
				ca := now.Sub(c.Time)
				if j == i || ca < 0 || ca >= s.Total() {
					continue
				}
				if cb, cs := place(ca); cb == band && cs == slot && olderThan(j, i) {
					oldest = false
				}
			}
			what := "newer than the kept oldest"
			if oldest {
				what = "oldest in slot"
			}
			out[i].Keep = oldest
			out[i].Rule = fmt.Sprintf("band %d (%s) slot %d: %s", band+1, formatUnit(d[band]), slot, what)
		}
	}
	for i, b := range bs {
		if !b.Verified || out[i].Keep {
			continue
		}
		newer := 0 // verified backups newer than this one
		for j, c := range bs {
			if j != i && c.Verified && olderThan(i, j) {
				newer++
			}
		}
		if newer < minKeep {
			out[i].Keep, out[i].Rule = true, fmt.Sprintf("min_keep: one of the newest %d verified", minKeep)
		}
	}
	return out
}

// randomSpec is a random valid schedule, written as text.
func randomSpec(r *rand.Rand) string {
	units := []string{"s", "m", "h"}
	unit := units[r.Intn(len(units))]
	v := 1 + r.Intn(10)
	parts := []string{fmt.Sprintf("%d%s", v, unit)}
	for n := r.Intn(5); n > 0; n-- {
		v *= 2 + r.Intn(3)
		parts = append(parts, fmt.Sprintf("%d%s", v, unit))
	}
	return fmt.Sprintf("%s/%d%s", strings.Join(parts, ","), v*(2+r.Intn(5)), unit)
}

// randomBackups are n irregular backups around now for s: random ages from
// a little in the future to past T, ages right on and next to every band
// and slot edge, and repeated times and names.
func randomBackups(r *rand.Rand, s Spec, now time.Time, n int) []Backup {
	edges := []time.Duration{0, s.Total()}
	for _, b := range s.Bands() {
		edges = append(edges, b.From, b.To, b.From+b.Spacing)
	}
	bs := make([]Backup, 0, n)
	for len(bs) < n {
		var age time.Duration
		switch r.Intn(4) {
		case 0, 1:
			age = time.Duration(r.Int63n(int64(s.Total()+s.Total()/4+s.Every()))) - s.Every()
		case 2:
			age = edges[r.Intn(len(edges))] + []time.Duration{-time.Second, -1, 0, 1, time.Second}[r.Intn(5)]
		case 3:
			if len(bs) > 0 {
				age = now.Sub(bs[r.Intn(len(bs))].Time)
			}
		}
		bs = append(bs, Backup{
			Name:     fmt.Sprintf("b%d", r.Intn(2*n)),
			Time:     now.Add(-age),
			Verified: r.Intn(4) != 0,
		})
	}
	return bs
}

// TestRetainMatchesReference checks Retain against the reference model
// over random schedules and random, irregular backup times.
func TestRetainMatchesReference(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 4; seed++ {
		r := rand.New(rand.NewSource(seed))
		for it := 0; it < 1000; it++ {
			spec := randomSpec(r)
			s := MustParse(spec)
			bs := randomBackups(r, s, now, r.Intn(60))
			minKeep := r.Intn(4)
			got := s.Retain(now, bs, minKeep)
			want := reference(s, now, bs, minKeep)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("seed %d iteration %d, %s, min_keep %d: backup %d %q (age %v):\n got keep=%v %q\nwant keep=%v %q",
						seed, it, spec, minKeep, i, bs[i].Name, now.Sub(bs[i].Time), got[i].Keep, got[i].Rule, want[i].Keep, want[i].Rule)
				}
			}
			// Pruning again at the same moment changes nothing.
			var kept []Backup
			for _, d := range got {
				if d.Keep {
					kept = append(kept, d.Backup)
				}
			}
			for _, d := range s.Retain(now, kept, minKeep) {
				if !d.Keep {
					t.Fatalf("seed %d iteration %d, %s: second pass deletes %q (%s)", seed, it, spec, d.Backup.Name, d.Rule)
				}
			}
		}
	}
}

// TestScheduleChangeKeepsBackups: after any schedule change, a backup alone
// in its slot of the new schedule is kept, and every slot that held a
// backup still holds one, so a change never wipes the backups.
func TestScheduleChangeKeepsBackups(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(7))
	for it := 0; it < 500; it++ {
		from, to := MustParse(randomSpec(r)), MustParse(randomSpec(r))
		// Backups taken irregularly under the old schedule, pruned as they go.
		var kept []Backup
		clock := now
		for k := 0; k < 200; k++ {
			clock = clock.Add(time.Duration(1 + r.Int63n(int64(2*from.Every()))))
			kept = append(kept, Backup{Name: fmt.Sprint(k), Time: clock, Verified: true})
			var next []Backup
			for _, d := range from.Retain(clock, kept, 1) {
				if d.Keep {
					next = append(next, d.Backup)
				}
			}
			kept = next
		}
		ds := to.Retain(clock, kept, 0)
		type slot struct {
			band int
			slot int64
		}
		held, keptIn := map[slot]int{}, map[slot]int{}
		where := func(b Backup) (slot, bool) {
			age := clock.Sub(b.Time)
			if age < 0 || age >= to.Total() {
				return slot{}, false
			}
			for i, band := range to.Bands() {
				if age >= band.From && age < band.To {
					return slot{i, int64((age - band.From) / band.Spacing)}, true
				}
			}
			return slot{}, false
		}
		for _, d := range ds {
			if sl, ok := where(d.Backup); ok {
				held[sl]++
				if d.Keep {
					keptIn[sl]++
				}
			}
		}
		for _, d := range ds {
			sl, ok := where(d.Backup)
			if ok && held[sl] == 1 && !d.Keep {
				t.Fatalf("%v -> %v: deleted %q, alone in its slot (%s)", from, to, d.Backup.Name, d.Rule)
			}
		}
		for sl, n := range held {
			if keptIn[sl] != 1 {
				t.Fatalf("%v -> %v: slot %+v held %d backups and keeps %d, want 1", from, to, sl, n, keptIn[sl])
			}
		}
	}
}

// A concrete change: from hourly-then-daily to daily-only keeps every daily
// backup and the oldest hourly one.
func TestScheduleChangeExample(t *testing.T) {
	t.Parallel()
	before, err := Simulate(MustParse("1h,1d/7d"), time.Hour, 3*Week, 1)
	if err != nil {
		t.Fatal(err)
	}
	var bs []Backup
	for _, age := range before {
		bs = append(bs, aged(age, true))
	}
	var got []string
	for _, d := range MustParse("1d/30d").Retain(now, bs, 1) {
		if d.Keep {
			got = append(got, d.Backup.Name)
		}
	}
	want := []string{"0s", "23h", "1d23h", "2d23h", "3d23h", "4d23h", "5d23h", "6d23h"}
	if !slices.Equal(got, want) {
		t.Errorf("after changing to 1d/30d kept %v, want %v", got, want)
	}
}

// TestMinKeepPastT: a plan whose backups all failed for longer than T
// keeps its newest min_keep verified backups, and only those.
func TestMinKeepPastT(t *testing.T) {
	t.Parallel()
	s := MustParse("1h,1d/7d")
	var bs []Backup
	for k := 0; k < 20; k++ {
		bs = append(bs, aged(8*Day+time.Duration(k)*time.Hour, k%3 != 0)) // every third unverified
	}
	for minKeep := 0; minKeep <= 5; minKeep++ {
		var got []string
		for _, d := range s.Retain(now, bs, minKeep) {
			if d.Keep {
				got = append(got, d.Backup.Name)
			}
		}
		want := []string{"8d1h", "8d2h", "8d4h", "8d5h", "8d7h"}[:minKeep]
		if !slices.Equal(got, want) {
			t.Errorf("min_keep %d kept %v, want %v", minKeep, got, want)
		}
	}
}

func BenchmarkRetain100k(b *testing.B) {
	s := MustParse("5m,15m,1h,2h,4h,8h,1d/7d")
	r := rand.New(rand.NewSource(1))
	bs := make([]Backup, 100_000)
	for i := range bs {
		age := time.Duration(r.Int63n(int64(2 * s.Total())))
		bs[i] = Backup{Name: fmt.Sprintf("backup-%06d", i), Time: now.Add(-age), Verified: true}
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Retain(now, bs, 1)
	}
}
