package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/events/api"
)

func TestPlanCommands(t *testing.T) {
	url, _ := startUpWithBackups(t)
	out, err := runCLI(t, "plan", "list", "--json", "--nats", url)
	var plans []api.PlanView
	if err != nil || json.Unmarshal([]byte(out), &plans) != nil || len(plans) != 2 {
		t.Fatalf("plan list --json: %v\n%s", err, out)
	}
	if plans[0].Name != api.SelfPlan || plans[0].Disabled || plans[1].Name != "site" || plans[1].SteadyState != 30 || plans[1].Origin != "config" {
		t.Errorf("plans %+v", plans)
	}
	if out, err := runCLI(t, "plan", "list", "--nats", url); err != nil || !strings.Contains(out, "site") || !strings.Contains(out, "1h,1d/7d") {
		t.Errorf("plan list: %v\n%s", err, out)
	}

	if out, err := runCLI(t, "plan", "set", "site", "--schedule", "5m,15m,1h,2h,4h,8h,1d/7d", "--nats", url); err != nil || !strings.Contains(out, "5m,15m,1h,2h,4h,8h,1d/7d") {
		t.Errorf("plan set: %v\n%s", err, out)
	}
	out, err = runCLI(t, "plan", "show", "site", "--nats", url)
	if err != nil || !strings.Contains(out, "at most 17 kept") || !strings.Contains(out, "BAND") {
		t.Errorf("plan show: %v\n%s", err, out)
	}
	var d api.PlanDetail
	out, err = runCLI(t, "plan", "show", "site", "--json", "--nats", url)
	if err != nil || json.Unmarshal([]byte(out), &d) != nil || len(d.Bands) != 7 || d.Store.Exclude[0] != "data/" {
		t.Errorf("plan show --json: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "plan", "disable", "site", "--nats", url); err != nil || !strings.Contains(out, "disabled") {
		t.Errorf("plan disable: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "backup", "take", "site", "--nats", url); err == nil || !strings.Contains(out, "lifeboat plan enable site") {
		t.Errorf("take of a disabled plan: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "plan", "enable", "site", "--nats", url); err != nil || !strings.Contains(out, "enabled") {
		t.Errorf("plan enable: %v\n%s", err, out)
	}

	// A plan created at run time: a command store.
	dir := t.TempDir()
	out, err = runCLI(t, "plan", "set", "dump", "--schedule", "1h,1d/7d", "--dir", filepath.Join(dir, "b"),
		"--store-kind", "command", "--dump", `["sh", "-c", "echo dumped"]`, "--load", "cat", "--json", "--nats", url)
	var v api.PlanView
	if err != nil || json.Unmarshal([]byte(out), &v) != nil || v.Origin != "api" || v.Store.Dump[2] != "echo dumped" {
		t.Fatalf("plan set of a new plan: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "backup", "take", "dump", "--nats", url); err != nil {
		t.Errorf("backup take of the new plan: %v\n%s", err, out)
	}

	// Refused by the service, naming the key.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "set", "new", "--schedule", "1h,1d/7d", "--dir", filepath.Join(dir, "n")}, "store.kind: missing"},
		{[]string{"plan", "set", "site", "--dir", filepath.Join(dir, "b")}, "two plans cannot share"},
		{[]string{"plan", "show", "nope"}, `no plan named "nope"`},
		{[]string{"plan", "enable", "nope"}, `no plan named "nope"`},
	} {
		out, err := runCLI(t, append(tc.args, "--nats", url)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("lifeboat %s: %v\n%s\nwant it to say %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}
}

func TestPlanBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"plan", "set"},
		{"plan", "set", "x", "--schedule", "5m,7m/1d"},
		{"plan", "set", "x", "--dump", `["unclosed"`, "--store-kind", "command"},
		{"plan", "set", "x", "--min-keep", "-1"},
		{"plan", "show"},
		{"plan", "disable", "a", "b"},
	} {
		var out bytes.Buffer
		if code := run(args, &out, &out); code != 2 || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("lifeboat %s: exit %d, want 2 with usage:\n%s", strings.Join(args, " "), code, out.String())
		}
	}
}

// TestUpRefusesBadBackupConfig: the backup section is validated at start,
// naming the key and its line.
func TestUpRefusesBadBackupConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lifeboat.yaml")
	yaml := `backup:
  plans:
    - name: a
      schedule: 1h,1d/7d
      directory: /b/shared
      store: {kind: sqlite, path: /a.db}
    - name: b
      schedule: 1h,1d/7d
      directory: /b/shared
      store: {kind: sqlite, path: /b.db}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	code := run([]string{"up", "--config", path, "--data", t.TempDir()}, &out, &out)
	if want := "lifeboat.yaml:9: backup.plans[1].directory: /b/shared is also the directory of plans[0] (a)"; code == 0 || !strings.Contains(out.String(), want) {
		t.Fatalf("exit %d:\n%s\nwant %q", code, out.String(), want)
	}
}

func TestWhen(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	for _, tc := range []struct {
		t    *time.Time
		want string
	}{
		{nil, "-"},
		{at(0), "now"},
		{at(400 * time.Millisecond), "now"}, // a backup just taken, clocks a little apart
		{at(-900 * time.Millisecond), "now"},
		{at(90 * time.Second), "in 1m30s"},
		{at(-2 * time.Hour), "2h ago"},
	} {
		if got := when(tc.t, now); got != tc.want {
			t.Errorf("when(%v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}
