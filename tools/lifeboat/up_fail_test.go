package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/testtool"
)

// TestUpExitsNonZeroWhenAServiceFails: a service whose work fails after
// start takes the whole process down, logged with its error, with exit 1
// (a supervisor restarts the process; see the README).
func TestUpExitsNonZeroWhenAServiceFails(t *testing.T) {
	name := events.ServiceVolumeMonitor
	orig := specs[name]
	t.Cleanup(func() { specs[name] = orig })
	specs[name] = func(cfg Config) (service.Spec, error) {
		spec, err := orig(cfg)
		spec.Run = func(ctx context.Context) error { return errors.New("disk sampler broke") }
		return spec, err
	}
	var out bytes.Buffer
	code := run([]string{"up", "--data", t.TempDir(), "--nats-listen", testtool.FreeAddr(t), "--http", testtool.FreeAddr(t), "--host", "test-host"}, &out, &out)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out.String())
	}
	for _, want := range []string{"a service failed; stopping the others and exiting", "volume-monitor: disk sampler broke"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
