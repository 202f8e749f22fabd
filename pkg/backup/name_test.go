package backup_test

import (
	"errors"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
)

func TestParseName(t *testing.T) {
	est := time.FixedZone("", -5*3600)
	for _, tc := range []struct {
		name string
		want time.Time // zero: not a backup name
	}{
		{"backup-2015-12-23_12-19-17-0500", time.Date(2015, 12, 23, 12, 19, 17, 0, est)},
		{"backup-2026-01-01_00-00-00+0000", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"backup-2024-02-29_23-59-59+0530", time.Date(2024, 2, 29, 23, 59, 59, 0, time.FixedZone("", 5*3600+1800))},
		{"backup-2023-02-29_12-00-00+0000", time.Time{}},  // no such day
		{"backup-2015-12-23_12-19-17", time.Time{}},       // no zone
		{"backup-2015-12-23_12-19-17Z", time.Time{}},      // not %z
		{"backup-2015-12-23_12-19-17-05:00", time.Time{}}, // not %z
		{"backup-2015-12-23_12-19-17-0500.tmp", time.Time{}},
		{"backup-2015-12-23_12-19-17-0500/", time.Time{}},
		{"backup-2015-12-23 12-19-17-0500", time.Time{}},
		{"backup-2015-12-23_12-19-17+0060", time.Time{}}, // parses in Go, but is not what %z prints
		{"backup-15-12-23_12-19-17-0500", time.Time{}},
		{"Backup-2015-12-23_12-19-17-0500", time.Time{}},
		{".tmp-backup-2015-12-23_12-19-17-0500", time.Time{}},
		{"", time.Time{}},
	} {
		got, err := backup.ParseName(tc.name)
		if tc.want.IsZero() {
			if err == nil || !errors.Is(err, backup.ErrNotName) || backup.IsName(tc.name) {
				t.Errorf("ParseName(%q) = %v, %v; want ErrNotName", tc.name, got, err)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) || !backup.IsName(tc.name) {
			t.Errorf("ParseName(%q) = %v, %v; want %v", tc.name, got, err, tc.want)
		}
		if back := backup.FormatName(got); back != tc.name {
			t.Errorf("FormatName(ParseName(%q)) = %q", tc.name, back)
		}
	}
}

func TestFormatName(t *testing.T) {
	at := time.Date(2015, 12, 23, 12, 19, 17, 999_000_000, time.FixedZone("EST", -5*3600))
	if got, want := backup.FormatName(at), "backup-2015-12-23_12-19-17-0500"; got != want {
		t.Fatalf("FormatName = %q, want %q", got, want)
	}
}

// FuzzParseName: whatever ParseName accepts, FormatName prints back
// exactly, so a name of the backup form has exactly one spelling.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"backup-2015-12-23_12-19-17-0500", "backup-0000-01-01_00-00-00+2400",
		"backup-2015-12-23_12-19-17+0060", "backup-9999-12-31_23-59-59-2359", "backup-", "x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := backup.ParseName(s)
		if err != nil {
			if backup.IsName(s) {
				t.Fatalf("IsName(%q) but ParseName failed: %v", s, err)
			}
			return
		}
		if back := backup.FormatName(got); back != s {
			t.Fatalf("ParseName(%q) = %v, which formats as %q", s, got, back)
		}
		if !backup.IsName(s) {
			t.Fatalf("ParseName(%q) succeeded but IsName is false", s)
		}
	})
}
