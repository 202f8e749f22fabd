package provider

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// authServer is a real DNS server on loopback whose answer the test
// changes: the value it holds for www, whether it sets AA, the response
// code, whether UDP answers are truncated.
type authServer struct {
	addr string

	mu        sync.Mutex
	value     string
	notAA     bool
	rcode     int
	truncate  bool
	asked     int
	changeAt  int    // after this many questions, value becomes changeTo
	changeTo  string // (0: never)
	transport map[string]int
}

func startAuth(t *testing.T, value string) *authServer {
	t.Helper()
	a := &authServer{value: value, transport: map[string]int{}}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	a.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: a}, {Listener: ln, Handler: a}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return a
}

func (a *authServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked++
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	if udp {
		a.transport["udp"]++
	} else {
		a.transport["tcp"]++
	}
	if a.changeAt > 0 && a.asked >= a.changeAt {
		a.value = a.changeTo
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = !a.notAA
	m.Rcode = a.rcode
	if req.RecursionDesired {
		m.Rcode = dns.RcodeFormatError // Verify must not ask for recursion
	}
	if a.value != "" && m.Rcode == dns.RcodeSuccess {
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(a.value)})
	}
	if a.truncate && udp {
		m.Answer, m.Truncated = nil, true
	}
	w.WriteMsg(m)
}

func (a *authServer) set(f func(a *authServer)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// count returns how often the server was asked, over which transport.
func (a *authServer) count(transport string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if transport == "" {
		return a.asked
	}
	return a.transport[transport]
}

func fastVerify() VerifyOptions {
	o := NewVerifyOptions()
	o.FirstBackoff = time.Millisecond
	o.MaxBackoff = 10 * time.Millisecond
	return o
}

func TestVerifyWaitsForTheNewValue(t *testing.T) {
	a := startAuth(t, "192.0.2.1")
	a.set(func(a *authServer) { a.changeAt, a.changeTo = 4, "192.0.2.2" })
	took, err := Verify(t.Context(), []string{a.addr}, "www.example.test", "A", "192.0.2.2", fastVerify())
	if err != nil {
		t.Fatal(err)
	}
	if took <= 0 {
		t.Fatalf("took %v", took)
	}
	if a.count("") < 4 {
		t.Fatalf("verified after %d questions, before the server changed", a.count(""))
	}
}

func TestVerifyWaitsForEveryServer(t *testing.T) {
	primary := startAuth(t, "192.0.2.2")
	secondary := startAuth(t, "192.0.2.1")
	secondary.set(func(a *authServer) { a.changeAt, a.changeTo = 3, "192.0.2.2" })
	if _, err := Verify(t.Context(), []string{primary.addr, secondary.addr}, "www.example.test", "A", "192.0.2.2", fastVerify()); err != nil {
		t.Fatal(err)
	}
	if secondary.count("") < 3 {
		t.Fatalf("verified before the secondary had the change (asked %d times)", secondary.count(""))
	}
	if primary.count("") != 1 {
		t.Fatalf("asked the primary %d times after it had answered", primary.count(""))
	}
}

func TestVerifyGivesUp(t *testing.T) {
	a := startAuth(t, "192.0.2.1")
	opts := fastVerify()
	opts.Timeout = 500 * time.Millisecond
	_, err := Verify(t.Context(), []string{a.addr}, "www.example.test", "A", "192.0.2.2", opts)
	if !errors.Is(err, ErrNotVerified) || !IsTemporary(err) {
		t.Fatalf("error %v, want a temporary ErrNotVerified", err)
	}
	for _, want := range []string{a.addr, "[192.0.2.1]", "192.0.2.2"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	if Reason(err) != "NOT_VERIFIED" {
		t.Fatalf("Reason %q", Reason(err))
	}
}

func TestVerifyIgnoresNonAuthoritativeAnswers(t *testing.T) {
	a := startAuth(t, "192.0.2.2")
	a.set(func(a *authServer) { a.notAA = true })
	opts := fastVerify()
	opts.Timeout = 500 * time.Millisecond
	_, err := Verify(t.Context(), []string{a.addr}, "www.example.test", "A", "192.0.2.2", opts)
	if !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "AA") {
		t.Fatalf("error %v, want not verified for lack of AA", err)
	}
}

func TestVerifyStopsOnRefusal(t *testing.T) {
	a := startAuth(t, "192.0.2.2")
	a.set(func(a *authServer) { a.rcode = dns.RcodeRefused })
	_, err := Verify(t.Context(), []string{a.addr}, "www.example.test", "A", "192.0.2.2", fastVerify())
	if Reason(err) != "REFUSED" || IsTemporary(err) {
		t.Fatalf("error %v, want a permanent REFUSED", err)
	}
	if a.count("") != 1 {
		t.Fatalf("asked %d times after a refusal", a.count(""))
	}
}

func TestVerifyRetriesServerFailure(t *testing.T) {
	a := startAuth(t, "192.0.2.2")
	a.set(func(a *authServer) { a.rcode = dns.RcodeServerFailure })
	opts := fastVerify()
	opts.Timeout = 500 * time.Millisecond
	_, err := Verify(t.Context(), []string{a.addr}, "www.example.test", "A", "192.0.2.2", opts)
	if !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Fatalf("error %v, want not verified, last answer SERVFAIL", err)
	}
	if a.count("") < 2 {
		t.Fatalf("SERVFAIL was not asked again (asked %d)", a.count(""))
	}
}

func TestVerifyFallsBackToTCP(t *testing.T) {
	a := startAuth(t, "192.0.2.2")
	a.set(func(a *authServer) { a.truncate = true })
	if _, err := Verify(t.Context(), []string{a.addr}, "www.example.test", "A", "192.0.2.2", fastVerify()); err != nil {
		t.Fatal(err)
	}
	if a.count("tcp") != 1 {
		t.Fatalf("transports %v, want one TCP retry", a.transport)
	}
}

func TestVerifyChecksItsInput(t *testing.T) {
	if _, err := Verify(t.Context(), nil, "www.example.test", "A", "192.0.2.2", fastVerify()); !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("no servers: %v", err)
	}
	if _, err := Verify(t.Context(), []string{"127.0.0.1:1"}, "www.example.test", "A", "nope", fastVerify()); !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("bad want: %v", err)
	}
}
