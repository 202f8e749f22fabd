package dnsupdater

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/events"
	"lifeboat.dev/services/dns-updater/provider/rfc2136/bindtest"
)

// BenchmarkActivationToVerified measures, per activation, the time from
// publishing InstanceActivated to DNSRecordUpdated arriving on the bus:
// consuming the event, queuing the change, setting the record, verifying
// it at the authoritative server and recording the outcome. The
// verified_after_ms metric is the verification alone, as the event
// reports it. make bench runs it as:
//
//	go test -run '^$' -bench BenchmarkActivationToVerified -benchtime 200x ./services/dns-updater
func BenchmarkActivationToVerified(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		benchActivations(b, start(b, testConfig(b)))
	})
	b.Run("bind", func(b *testing.B) {
		srv := bindtest.StartZone(b, bindtest.Zone, bindtest.DefaultZoneFile(bindtest.Zone)+"wr A 192.0.2.1\n")
		benchActivations(b, start(b, bindConfig(srv)))
	})
}

func benchActivations(b *testing.B, h *harness) {
	updates := make(chan *nats.Msg, 64)
	sub, err := h.b.NC.ChanSubscribe(events.SubjectOf[events.DNSRecordUpdated](), updates)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	var verified time.Duration
	b.ResetTimer()
	for i := range b.N {
		epoch := uint64(i + 1)
		addr := fmt.Sprintf("198.51.%d.%d", 100+(i/250)%100, 1+i%250)
		h.activate("wr", addr, epoch)
		for {
			var m *nats.Msg
			select {
			case m = <-updates:
			case <-time.After(30 * time.Second):
				b.Fatalf("no DNSRecordUpdated for epoch %d in 30s (failed: %+v)", epoch, h.failedEvents())
			}
			var u events.DNSRecordUpdated
			if err := json.Unmarshal(m.Data, &u); err != nil {
				b.Fatal(err)
			}
			if u.Epoch == epoch {
				if u.New != addr {
					b.Fatalf("epoch %d set %s, want %s", epoch, u.New, addr)
				}
				verified += u.VerifiedAfter.Duration()
				break
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(verified.Microseconds())/1000/float64(b.N), "verified_after_ms/op")
}
