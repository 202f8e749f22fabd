package api

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/events"
)

func TestDurationTravelsAsGoWritesIt(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(Hook{Command: []string{"true"}, Timeout: Duration(90 * time.Second)})
	if err != nil || string(b) != `{"command":["true"],"timeout":"1m30s"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	if b, _ := json.Marshal(Hook{Command: []string{"true"}}); string(b) != `{"command":["true"]}` {
		t.Errorf("a zero timeout is sent: %s", b)
	}
	var h Hook
	if err := json.Unmarshal([]byte(`{"command":["x"],"timeout":"5m"}`), &h); err != nil || time.Duration(h.Timeout) != 5*time.Minute {
		t.Errorf("Unmarshal = %+v, %v", h, err)
	}
	for body, want := range map[string]string{
		`{"timeout":"soon"}`: `"soon" is not a duration (use e.g. 30s, 5m, 2h)`,
		`{"timeout":"-1s"}`:  `"-1s" is negative`,
	} {
		if err := json.Unmarshal([]byte(body), &h); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Unmarshal(%s) = %v, want %q", body, err, want)
		}
	}
}

func TestEndpointsAreServicesAndUnique(t *testing.T) {
	t.Parallel()
	for svc, eps := range Endpoints {
		if !slices.Contains(events.Services, svc) {
			t.Errorf("Endpoints lists %q, not a service", svc)
		}
		seen := map[string]bool{Status: true}
		for _, ep := range eps {
			if seen[ep] || ep == "" || strings.ContainsAny(ep, ". *>") {
				t.Errorf("%s: endpoint %q is repeated, the status endpoint, or not one subject token", svc, ep)
			}
			seen[ep] = true
		}
	}
}
