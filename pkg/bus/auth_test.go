package bus

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestRefusedCredentialsAreLoggedSayingWhichAndWhatToDo: nats-server's
// lines about refused credentials become lifeboat's own, naming the
// credential and the fix, once per peer within the rate limit.
func TestRefusedCredentialsAreLoggedSayingWhichAndWhatToDo(t *testing.T) {
	var out bytes.Buffer
	n := newNATSLogger(slog.New(slog.NewTextHandler(&out, nil)), "lifeboat", []string{"127.0.0.1:22622"})
	n.Errorf("%s", "127.0.0.1:22622 - rid:12 - Route Error 'Authorization Violation'")
	n.Errorf("%s", "127.0.0.1:22622 - rid:13 - Route Error 'Authorization Violation'")
	n.Errorf("%s", `127.0.0.1:41134 - rid:9 - authentication error - User "route"`)
	n.Errorf("%s", `127.0.0.1:50000 - cid:7 - authentication error - User "UABC"`)
	n.Errorf("%s", "127.0.0.1:22622 - rid:33 - Error flushing: writev tcp: broken pipe")
	log := out.String()
	for _, want := range []string{
		"cluster peer 127.0.0.1:22622 refused this node's route credential",
		"refused a route from 127.0.0.1:22622: wrong or missing route credential",
		"refused a client from 127.0.0.1: wrong or missing credential",
	} {
		if strings.Count(log, want) != 1 {
			t.Errorf("log has %q %d times, want once:\n%s", want, strings.Count(log, want), log)
		}
	}
	if strings.Contains(log, "level=ERROR msg=\"127.0.0.1") {
		t.Errorf("a raw nats-server line was logged as an error:\n%s", log)
	}
}

func TestExposureNeedsAuthOrInsecure(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Listen: "127.0.0.1:4222"}, ""},
		{Options{Listen: "localhost:4222", Cluster: ClusterOptions{Listen: "[::1]:6222"}}, ""},
		{Options{Listen: "0.0.0.0:4222"}, "0.0.0.0:4222 (--nats-listen)"},
		{Options{Listen: ":4222"}, ":4222 (--nats-listen)"},
		{Options{Listen: "127.0.0.1:4222", Cluster: ClusterOptions{Listen: "10.0.0.1:6222"}}, "10.0.0.1:6222 (--cluster-listen)"},
		{Options{Listen: "0.0.0.0:4222", Insecure: true}, ""},
		{Options{Listen: "0.0.0.0:4222", Auth: &ServerAuth{}}, ""},
	} {
		err := checkExposure(tc.o)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("checkExposure(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}
