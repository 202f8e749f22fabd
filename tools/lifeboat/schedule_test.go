package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// runSchedule runs `lifeboat ARGS...` through the root command and returns
// what it printed.
func runSchedule(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.Execute()
	return out.String(), err
}

func TestScheduleExplain(t *testing.T) {
	t.Parallel()
	out, err := runSchedule(t, "schedule", "explain", "1h,1d/7d")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"schedule 1h,1d/7d: a backup every 1h, none kept past 7d",
		"BAND  AGES      SPACING     KEEPS\n",
		"1     0s to 1d  one per 1h  24\n",
		"2     1d to 7d  one per 1d  6\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(out, "steady state: 30 backups\n") {
		t.Errorf("explain output does not end with the steady state of 30:\n%s", out)
	}

	// The seed's second example: 17, not the prose's 14.
	out, err = runSchedule(t, "schedule", "explain", " 5m, 15m, 1h, 2h, 4h, 8h, 1d / 7d ")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out, "steady state: 17 backups\n") || !strings.Contains(out, "8h to 1d") {
		t.Errorf("explain of the long schedule:\n%s", out)
	}
}

func TestScheduleExplainJSON(t *testing.T) {
	t.Parallel()
	out, err := runSchedule(t, "schedule", "explain", "60m,1d/1w", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got jsonExplain
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("explain --json is not JSON: %v\n%s", err, out)
	}
	want := jsonExplain{
		Spec: "1h,1d/7d", Every: "1h", Total: "7d", SteadyState: 30,
		Bands: []jsonBand{
			{Band: 1, From: "0s", To: "1d", Spacing: "1h", Keeps: 24, FromSeconds: 0, ToSeconds: 86400, SpacingSeconds: 3600},
			{Band: 2, From: "1d", To: "7d", Spacing: "1d", Keeps: 6, FromSeconds: 86400, ToSeconds: 604800, SpacingSeconds: 86400},
		},
	}
	if got.Spec != want.Spec || got.Every != want.Every || got.Total != want.Total ||
		got.SteadyState != want.SteadyState || !slices.Equal(got.Bands, want.Bands) {
		t.Errorf("explain --json = %+v, want %+v", got, want)
	}
}

func TestScheduleSimulate(t *testing.T) {
	t.Parallel()
	// The seed: the 25th hourly backup keeps the oldest as the first daily.
	out, err := runSchedule(t, "schedule", "simulate", "1h,1d/7d", "--every", "1h", "--for", "25h")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "kept 25 backups (steady state 30)") || !strings.Contains(out, "  25  1d\n") || !strings.Contains(out, "   1  0s\n") {
		t.Errorf("simulate for 25h:\n%s", out)
	}

	out, err = runSchedule(t, "schedule", "simulate", "1h,1d/7d", "--for", "3w", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got jsonSimulate
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("simulate --json is not JSON: %v\n%s", err, out)
	}
	if got.Kept != 30 || len(got.Ages) != 30 || got.Every != "1h" || got.For != "21d" || got.MinKeep != 1 || got.SteadyState != 30 {
		t.Fatalf("simulate --json = %+v", got)
	}
	wantDaily := []string{"1d23h", "2d23h", "3d23h", "4d23h", "5d23h", "6d23h"}
	if !slices.Equal(got.Ages[24:], wantDaily) || got.Ages[0] != "0s" || got.AgeSeconds[29] != 6*86400+23*3600 {
		t.Errorf("simulate --json ages = %v (%v)", got.Ages, got.AgeSeconds)
	}

	// min_keep keeps the last backup even when backups come rarer than T.
	out, err = runSchedule(t, "schedule", "simulate", "1h/1d", "--every", "2d", "--for", "1w", "--min-keep", "2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	got = jsonSimulate{}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Ages, []string{"0s", "2d"}) {
		t.Errorf("simulate every 2d with min_keep 2: ages %v, want [0s 2d]", got.Ages)
	}
}

func TestScheduleBadArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"schedule", "explain", "5m,7m/1h"}, `SPEC: schedule "5m,7m/1h": "7m" is not a multiple of "5m"`},
		{[]string{"schedule", "explain", "1h,1d"}, `SPEC: schedule "1h,1d": missing "/T"`},
		{[]string{"schedule", "explain"}, "lifeboat schedule explain wants 1 argument(s) (SPEC), got 0"},
		{[]string{"schedule", "explain", "1h/1d", "extra"}, "wants 1 argument(s) (SPEC), got 2"},
		{[]string{"schedule", "simulate", "1x/1h", "--for", "1d"}, `SPEC: schedule "1x/1h": "1x": unknown unit "x" (use s, m, h, d or w)`},
		{[]string{"schedule", "simulate", "1h,1d/7d"}, "--for is required"},
		{[]string{"schedule", "simulate", "1h,1d/7d", "--for", "1y"}, `--for: "1y": unknown unit "y"`},
		{[]string{"schedule", "simulate", "1h,1d/7d", "--for", "1d", "--every", "0h"}, `--every: "0h": must be longer than zero`},
		{[]string{"schedule", "simulate", "1h,1d/7d", "--for", "1d", "--min-keep", "-1"}, "--min-keep is -1; want 0 or more"},
		{[]string{"schedule", "simulate", "1h,1d/7d", "--for", "52w", "--every", "1s"}, "--every 1s --for 364d is 31449600 backups"},
		{[]string{"schedule", "simulate", "1h,1d/7d", "--for", "1d", "--min-keep", "x"}, `invalid argument "x" for "--min-keep"`},
		{[]string{"schedule", "frobnicate"}, `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			out, err := runSchedule(t, tt.args...)
			if err == nil {
				t.Fatalf("no error; printed:\n%s", out)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Errorf("error %q is not a usage error (the root prints usage for those)", err)
			}
		})
	}
}
