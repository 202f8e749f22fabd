package embedded

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"

	"lifeboat.dev/services/dns-updater/provider"
	"lifeboat.dev/services/dns-updater/provider/rfc2136/bindtest"
)

// BenchmarkQueries measures the queries per second a server answers over
// UDP (miekg/dns client, one connection per client goroutine): the
// embedded server, and BIND's named serving the same zone on this machine
// in the same run, as the peer to compare with.
func BenchmarkQueries(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		s := start(b, openDB(b), zoneFile)
		benchQueries(b, s.Addr())
	})
	b.Run("bind", func(b *testing.B) {
		named := bindtest.StartZone(b, zone, zoneFile)
		benchQueries(b, named.Addr)
	})
}

func benchQueries(b *testing.B, addr string) {
	m := query("www.example.test.", dns.TypeA)
	b.SetParallelism(8) // clients wait on the network; keep the server busy
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &dns.Client{Net: "udp"}
		conn, err := c.Dial(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		for pb.Next() {
			r, _, err := c.ExchangeWithConn(m, conn)
			if err != nil {
				b.Error(err)
				return
			}
			if len(r.Answer) != 1 {
				b.Errorf("answer %v", r.Answer)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// BenchmarkSetVerify measures a change as the service makes it: Set, then
// Verify against the server until it answers the new address.
func BenchmarkSetVerify(b *testing.B) {
	s := start(b, openDB(b), zoneFile)
	opts := provider.NewVerifyOptions()
	ctx := b.Context()
	i := 0
	for b.Loop() {
		i++
		v := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		if err := s.Set(ctx, []provider.Record{{Name: "www.example.test.", Type: "A", Value: v, TTL: 30}}); err != nil {
			b.Fatal(err)
		}
		if _, err := provider.Verify(ctx, s.Authoritative(), "www.example.test.", "A", v, opts); err != nil {
			b.Fatal(err)
		}
	}
}
