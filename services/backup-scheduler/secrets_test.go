package backupscheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/testtool"
)

// TestAPlantedSecretShowsNowhere: a dump command's password (env) appears
// in no log line, no event and no API answer, through a backup that
// succeeds and one that fails.
func TestAPlantedSecretShowsNowhere(t *testing.T) {
	const secret = "planted-Secret-7f3a9c"
	_, b := bustest.Embedded(t)
	var logs testtool.LockedBuffer
	dir := t.TempDir()
	cfg := Config{Plans: []Plan{
		{Name: "pg", Schedule: "1h,1d/7d", Directory: dir + "/pg",
			Store: Store{Kind: StoreCommand, Dump: []string{"sh", "-c", "echo dump"}, Load: []string{"sh", "-c", "cat >/dev/null"}, Env: []string{"PGPASSWORD=" + secret}}},
		{Name: "broken", Schedule: "1h,1d/7d", Directory: dir + "/broken",
			Store: Store{Kind: StoreCommand, Dump: []string{"sh", "-c", "exit 3"}, Load: []string{"sh", "-c", "cat >/dev/null"}, Env: []string{"PGPASSWORD=" + secret}}},
	}}
	spec, err := Spec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deps := servicetest.Deps(b, t.TempDir())
	deps.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, _ = servicetest.Start(t, spec, deps)
	rec := record(t, b)
	take(t, b, "pg", events.BackupManual)
	take(t, b, "broken", events.BackupManual)
	testtool.WaitFor(t, 60*time.Second, rec.atLeast("broken", 1, "failures", isFailed))
	testtool.WaitFor(t, 60*time.Second, rec.atLeast("pg", 1, "backups", isTaken))

	var answers []string
	for _, c := range []struct {
		endpoint string
		req      any
	}{{api.PlanList, nil}, {api.PlanShow, api.PlanRequest{Name: "pg"}}, {api.PlanShow, api.PlanRequest{Name: "broken"}}, {api.Status, nil}} {
		var out any
		mustCall(t, b.NC, c.endpoint, c.req, &out)
		answers = append(answers, strings.TrimSpace(jsonOf(t, out)))
	}
	if !strings.Contains(answers[1], "PGPASSWORD="+api.Redacted) {
		t.Errorf("plan show does not name the env variable: %s", answers[1])
	}
	var evs []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := b.JS.OrderedConsumer(ctx, events.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := c.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			break
		}
		evs = append(evs, string(m.Data())+" "+jsonOf(t, m.Headers()))
	}
	if len(evs) == 0 {
		t.Fatal("no events read")
	}
	for what, text := range map[string]string{"the log": logs.String(), "the events": strings.Join(evs, "\n"), "the API answers": strings.Join(answers, "\n")} {
		if strings.Contains(text, secret) {
			t.Errorf("the planted secret shows in %s:\n%s", what, text)
		}
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
